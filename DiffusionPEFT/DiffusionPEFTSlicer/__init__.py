"""Helpers of the DiffusionPEFT Slicer module: job process, volume exchange, scene outputs, panel.

Everything here but ``widget.py`` is free of Qt; nothing here imports torch.
"""
