"""Evaluation metrics (plain PyTorch): masked SSIM/PSNR, normal angle, seam metric, LPIPS / ST-LPIPS, detail band,
tables."""

from uhrtex.metrics.detail import (band_correlation, band_psnr, detail_metrics, hf_energy_ratio, radial_power_spectrum,
                                   spectrum_figure)
from uhrtex.metrics.evaluate import Evaluator, mean_std
from uhrtex.metrics.image import angular_error, masked_mean, psnr, ssim
from uhrtex.metrics.perceptual import build_perceptual, lpips_problem, perceptual_distance
from uhrtex.metrics.seam import seam_energies, seam_metric
from uhrtex.metrics.tables import Column, Table, read_csv

__all__ = ["Evaluator", "mean_std", "angular_error", "masked_mean", "psnr", "ssim", "build_perceptual", "lpips_problem",
           "perceptual_distance", "seam_energies", "seam_metric", "Column", "Table", "read_csv", "band_correlation",
           "band_psnr", "detail_metrics", "hf_energy_ratio", "radial_power_spectrum", "spectrum_figure"]
