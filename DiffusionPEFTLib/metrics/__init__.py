"""Metrics on 3D volumes: MS-SSIM (with the size rule), SSIM, PSNR, NRMSE, diversity, MMD, held-out denoising
loss, and distribution metrics on the features of a 3D network (FID, feature MMD, precision/recall/density/
coverage, Vendi score)."""

from .similarity import ms_ssim, ms_ssim_settings, ssim, psnr, nrmse, compare_volumes, compare_in_mask
from .diversity import pairwise_ms_ssim, cross_ms_ssim, ms_ssim_matrix
from .distribution import mmd, feature_mmd, kernel_mmd
from .denoising import denoising_loss
from .features import volume_features
from .feature_net import load_feature_net
from .medicalnet import load_medicalnet
from .frechet import fid, frechet_distance
from .manifold import precision_recall, manifold_scores
from .vendi import vendi_score, feature_vendi, ms_ssim_vendi

__all__ = ["ms_ssim", "ms_ssim_settings", "ssim", "psnr", "nrmse", "compare_volumes", "compare_in_mask", "pairwise_ms_ssim",
           "cross_ms_ssim", "ms_ssim_matrix", "mmd", "feature_mmd", "kernel_mmd", "denoising_loss", "volume_features",
           "load_feature_net", "load_medicalnet", "fid", "frechet_distance", "precision_recall", "manifold_scores",
           "vendi_score", "feature_vendi", "ms_ssim_vendi"]
