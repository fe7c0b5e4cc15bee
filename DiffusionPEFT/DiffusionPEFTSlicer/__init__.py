"""Helpers of the DiffusionPEFT Slicer module: parameter node, Logic, job process, volume exchange,
scene outputs, panel.

Only ``widget.py``, ``debounced_query.py`` and ``condition_fields.py`` use Qt; nothing here imports torch.
"""
