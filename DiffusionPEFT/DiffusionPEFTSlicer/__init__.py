"""Helpers of the DiffusionPEFT Slicer module: parameter node, Logic, job process, volume exchange,
scene outputs, panel.

Only ``widget.py`` and ``debounced_query.py`` use Qt; nothing here imports torch.
"""
