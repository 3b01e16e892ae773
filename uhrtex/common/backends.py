"""Choose between a native CUDA accelerator and the pure-torch reference.

`resolve(kind, requested, device)`:
  * kind: "hashgrid" (tinycudann) or "raster" (nvdiffrast)
  * requested: "auto" | native name ("tcnn" / "nvdiffrast") | "torch"
  * "auto" picks the native library only if it imports, CUDA is available and the device is CUDA;
    otherwise "torch", with one warning per kind.
  * An explicit native request raises a one-line error naming the fix when unavailable.
  * Env overrides: UHRTEX_HASHGRID_BACKEND, UHRTEX_RASTER_BACKEND.

Native libraries are imported lazily, so a broken CUDA build never breaks `import uhrtex`.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings

import torch

_NATIVE = {"hashgrid": "tcnn", "raster": "nvdiffrast"}
_MODULE = {"tcnn": "tinycudann", "nvdiffrast": "nvdiffrast.torch"}
_ENV = {"hashgrid": "UHRTEX_HASHGRID_BACKEND", "raster": "UHRTEX_RASTER_BACKEND"}
_FIX = {
    "tcnn": "install it with `pip install --no-build-isolation git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch` "
    "(needs CUDA torch and TCNN_CUDA_ARCHITECTURES), or use backend=torch",
    "nvdiffrast": "install it with `pip install --no-build-isolation git+https://github.com/NVlabs/nvdiffrast` "
    "(needs CUDA torch), or use backend=torch",
}
_warned: set[str] = set()


class BackendUnavailable(RuntimeError):
    pass


def choices(kind: str) -> tuple[str, ...]:
    if kind not in _NATIVE:
        raise ValueError(f"unknown backend kind '{kind}'; valid: {sorted(_NATIVE)}")
    return ("auto", _NATIVE[kind], "torch")


@functools.cache
def native_status(name: str) -> str | None:
    """None if the native library is usable, else the reason it is not."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        module = importlib.import_module(_MODULE[name])
    except (ImportError, OSError) as e:  # tcnn raises OSError when it finds no usable GPU
        return f"{_MODULE[name]} failed to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if name == "nvdiffrast":
        try:
            module.RasterizeCudaContext()
        except Exception as e:  # noqa: BLE001 - any failure to make a context means unusable
            return f"nvdiffrast could not create a CUDA context ({type(e).__name__}: {e})"
    return None


def resolve(kind: str, requested: str = "auto", device: torch.device | str | None = None) -> str:
    valid = choices(kind)
    requested = os.environ.get(_ENV[kind], requested) or "auto"
    requested = requested.lower()
    if requested not in valid:
        raise ValueError(f"unknown {kind} backend '{requested}'; valid choices: {', '.join(valid)}")
    native = _NATIVE[kind]
    if requested == "torch":
        return "torch"
    on_cuda = device is not None and torch.device(device).type == "cuda"
    reason = native_status(native) if (on_cuda or requested == native) else "the device is not CUDA"
    if requested == native:
        if reason is not None or not on_cuda:
            why = reason or "the tensors are not on a CUDA device"
            raise BackendUnavailable(f"{kind} backend '{native}' was requested but {why}; {_FIX[native]}")
        return native
    # auto
    if reason is None:
        return native
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(
            f"{kind}: using the pure-torch backend ({reason}); it gives the same numbers as {native}, more slowly",
            stacklevel=2,
        )
    return "torch"
