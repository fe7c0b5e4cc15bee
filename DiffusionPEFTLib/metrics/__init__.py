"""Metrics on 3D volumes: MS-SSIM (with the size rule), SSIM, PSNR, NRMSE, diversity, MMD, held-out denoising loss."""

from .similarity import ms_ssim, ms_ssim_settings, ssim, psnr, nrmse, compare_volumes, compare_in_mask
from .diversity import pairwise_ms_ssim, cross_ms_ssim
from .distribution import mmd
from .denoising import denoising_loss

__all__ = ["ms_ssim", "ms_ssim_settings", "ssim", "psnr", "nrmse", "compare_volumes", "compare_in_mask", "pairwise_ms_ssim", "cross_ms_ssim", "mmd",
           "denoising_loss"]
