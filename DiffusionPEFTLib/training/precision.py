"""Numeric precision of a training run: which ``torch.autocast`` dtype it uses, if any.

- ``auto`` (default): on a CUDA GPU bf16 where the GPU supports it, else fp16; on the CPU fp32.
- ``fp32``: no autocast.
- ``bf16``: autocast to bfloat16 on the CPU or a CUDA GPU (no loss scaling needed).
- ``fp16``: autocast to float16 with a ``GradScaler``; CUDA only.

Weights, gradients and optimizer state stay float32 in every case (autocast changes the activations).
A checkpoint records the precision it was made with; a resume with another one is refused.
"""

from __future__ import annotations

import torch

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str, bf16_supported: bool | None = None) -> str:
    """``precision`` for ``device`` as one of fp32, bf16, fp16; InputError where the device cannot run it.

    ``bf16_supported``: whether the CUDA GPU has bf16 (None: ask torch; a what-if plan passes True)."""
    kind = torch.device(device).type
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'.", hint=f"Use one of {', '.join(PRECISIONS)}.")
    if kind == "cuda" and bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_supported else "fp16") if kind == "cuda" else "fp32"
    if precision == "fp16" and kind != "cuda":
        raise InputError("fp16 training needs a CUDA GPU (it relies on its gradient scaler).",
                         hint="Use --precision bf16 (or fp32) on the CPU.")
    if precision == "bf16" and kind == "cuda" and not bf16_supported:
        raise InputError("This GPU does not support bf16.", hint="Use --precision fp16 (or fp32).")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: fp32, no autocast)."""
    return AUTOCAST_DTYPES[precision]
