"""One exception family for everything a user can get wrong or that can go wrong in a job.

Each error carries a user-facing ``message`` (what happened) and a ``hint`` (what to change).
The CLI turns it into an ``error`` event and the exit code below; the Slicer module shows
message + hint in its panel. Nothing here prints a traceback.
"""


class DiffusionPEFTError(Exception):
    """Base class: ``kind`` names the event kind, ``exit_code`` the process status."""

    kind = "internal"
    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_event(self) -> dict:
        return {"event": "error", "kind": self.kind, "message": self.message, "hint": self.hint}


class InputError(DiffusionPEFTError):
    """A volume, path, option or job file the user gave cannot be used."""

    kind = "input"
    exit_code = 2


class ModelError(DiffusionPEFTError):
    """A model package is missing, incomplete, corrupt or unsafe."""

    kind = "model"
    exit_code = 3


class AdapterError(DiffusionPEFTError):
    """An adapter cannot be built, trained, saved or applied to this base model."""

    kind = "adapter"
    exit_code = 4


class MemoryBudgetError(DiffusionPEFTError):
    """The job would need more memory than the configured budget."""

    kind = "memory"
    exit_code = 5


class JobCancelled(DiffusionPEFTError):
    """The user asked the job to stop (signal or stop file); state was saved where possible."""

    kind = "cancelled"
    exit_code = 130
