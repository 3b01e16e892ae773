"""Evaluation metrics (plain PyTorch): masked SSIM/PSNR, normal angle, seam metric, LPIPS / ST-LPIPS, detail band,
tables.

The names load on first use (PEP 562): the reconstruction path imports only `uhrtex.metrics.skin`, and importing
`uhrtex.metrics.evaluate` pulls in torchmetrics and scipy.signal (about 1 s of a user's command).
"""

from importlib import import_module

_HOME = {
    "detail": ["band_correlation", "band_psnr", "detail_metrics", "hf_energy_ratio", "radial_power_spectrum",
               "spectrum_figure"],
    "evaluate": ["Evaluator", "mean_std"],
    "image": ["angular_error", "masked_mean", "psnr", "ssim"],
    "perceptual": ["build_perceptual", "lpips_problem", "perceptual_distance"],
    "seam": ["seam_energies", "seam_metric"],
    "tables": ["Column", "Table", "read_csv"],
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
