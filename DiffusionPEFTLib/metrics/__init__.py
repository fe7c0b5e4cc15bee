"""Metrics on 3D volumes: MS-SSIM (with the size rule), SSIM, PSNR, NRMSE, diversity, MMD, held-out denoising loss."""

from .similarity import ms_ssim, ms_ssim_settings, ssim, psnr, nrmse, compare_volumes
from .diversity import pairwise_ms_ssim, cross_ms_ssim
from .distribution import mmd
from .denoising import denoising_loss

__all__ = ["ms_ssim", "ms_ssim_settings", "ssim", "psnr", "nrmse", "compare_volumes", "pairwise_ms_ssim", "cross_ms_ssim", "mmd",
           "denoising_loss"]
