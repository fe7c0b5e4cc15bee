"""A backend query that the panel asks again whenever its inputs change, without ever waiting for it.

:meth:`DebouncedQuery.request` (re)arms a single-shot timer; when no further request came for the
delay, ``start()`` launches a :class:`~.backend_queries.BackgroundQuery` that a second timer polls
until it answers. A new request cancels the query under way, so a stale answer is never delivered.
"""

import qt

POLL_INTERVAL_MS = 100


class DebouncedQuery:
    """``start()`` returns the started BackgroundQuery, or None when there is nothing to ask."""

    def __init__(self, start, delayMs: int):
        self._start = start
        self._query = None
        self._delayTimer = qt.QTimer()
        self._delayTimer.setSingleShot(True)
        self._delayTimer.setInterval(delayMs)
        self._delayTimer.connect("timeout()", self._onDelayElapsed)
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPoll)

    def request(self) -> None:
        """Drop the query under way (its answer is stale) and ask again once the inputs have settled."""
        self.cancel()
        self._delayTimer.start()

    def cancel(self) -> None:
        self._delayTimer.stop()
        self._pollTimer.stop()
        if self._query is not None:
            self._query.cancel()
            self._query = None

    def _onDelayElapsed(self) -> None:
        self._query = self._start()
        if self._query is not None:
            self._pollTimer.start()

    def _onPoll(self) -> None:
        query = self._query
        if query is not None and not query.poll() and query is self._query:
            self._pollTimer.stop()
            self._query = None
