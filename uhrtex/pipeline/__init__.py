"""Portrait -> maps: `Reconstructor` (the networks and the patch grid) and `reconstruct_portrait` (the whole flow
that `python -m experiments.reconstruct` wraps: face crop, maps, unwrap, files)."""

from uhrtex.pipeline.reconstructor import InputError, Reconstructor, SeamOptions

__all__ = ["InputError", "Reconstructor", "SeamOptions"]
