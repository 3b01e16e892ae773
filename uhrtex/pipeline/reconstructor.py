"""`Reconstructor`: portrait -> Stage 1 at the global size -> HFDR over all patches -> assemble -> seam smoothing.

    rec = Reconstructor.from_checkpoints("ckpts/")      # uv_normal.ckpt gde.ckpt hfdr.ckpt (or run folders)
    rec = Reconstructor.from_bundle("uhrtex.bundle")    # one file, plain torch (export_bundle writes it)
    out = rec(image)          # image: 3×H×W float in [0, 1] (or uint8 / uint16), sRGB
    out["albedo"], out["micronormal"], out["specular"]  # 3/3/1 × H × W, same size as the input

Sizes: Stage 1 always runs at the preset's `global_size` on the whole frame; HFDR at `patch_size`. An input
of any size is padded (edge replicate) to a square whose side is a multiple of the patch size, *centred*
so the face stays where the networks expect it, and the outputs are cropped back: 4096² at the paper
preset is 8×8 patches, 8192² is 16×16, 4096×3072 runs as 4096² (non-square inputs are handled by padding,
not rejected). Inputs smaller than half the preset's input size on either side are rejected: the detail
HFDR adds must be in the pixels (the default face crop resizes the face to the input, or use a smaller preset).

Memory is bounded by the patch batch: the full-resolution input is never converted to float as a whole
(patches and the global view are made band by band), and the guide/uv/normal are resampled per patch with
`patches.sample_global`; only the 7-channel float32 output is image-sized.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from uhrtex import maps

from uhrtex.common import precision as _precision
from uhrtex.common.memory import keep_freed_memory
from uhrtex.bundle import load_bundle, save_bundle, shipped_bundle
from uhrtex.checkpoint import STAGES, CheckpointError, StageRecord, build_stage, find_checkpoints, read_stage
from uhrtex.hfdr.patches import Box
from uhrtex.hfdr.seams import PAPER_BAND, PAPER_KERNEL, PAPER_SIGMA, smooth_seams
from uhrtex.stage1.run import GUIDE_KEY, Stage1, hfdr_input, uv_prior_of

if TYPE_CHECKING:
    from uhrtex.face.landmarker import Face

__all__ = ["Reconstructor", "SeamOptions", "InputError"]


class InputError(ValueError):
    """An input image the method cannot use; one line."""


@dataclass
class SeamOptions:
    enabled: bool = True
    band: int = PAPER_BAND
    kernel: tuple[int, int] = PAPER_KERNEL
    sigma: float = PAPER_SIGMA
    feather: float = 0.0
    # Not in the paper (method=uhrtex sets it): smooth only the low-frequency jump between patches, keep the ±8 px
    # bands' detail (the paper's blur leaves a 16-px stripe without pores along every seam).
    keep_detail: bool = False


@dataclass
class Geometry:
    """Where the input sits in the padded square that the networks see."""

    height: int
    width: int
    side: int  # padded square side, a multiple of the patch size
    top: int
    left: int
    patch: int

    @property
    def grid(self) -> int:
        return self.side // self.patch

    def boxes(self) -> list[Box]:
        return [Box(y, x, self.patch, self.patch) for y in range(0, self.side, self.patch)
                for x in range(0, self.side, self.patch)]


def sample_scale(dtype: torch.dtype) -> float:
    """The value of full scale for an image dtype (uint8: 255, uint16 and int32: 65535, floats: 1)."""
    return {torch.uint8: 255.0, torch.uint16: 65535.0, torch.int32: 65535.0}.get(dtype, 1.0)


class Reconstructor:
    def __init__(self, uv_normal: nn.Module, gde: nn.Module, hfdr: nn.Module, hash_encoder: nn.Module | None, *,
                 input_size: int, global_size: int | None = None, patch_size: int | None = None,
                 patch_batch: int = 8, device: str | torch.device = "cpu", seams: SeamOptions | None = None,
                 channels_last: bool = True, records: Mapping[str, StageRecord] | None = None,
                 precision: str = "auto", uv_prior: str = "none"):
        self.input_size = int(input_size)
        self.global_size = int(global_size or self.input_size // 4)
        self.patch_size = int(patch_size or self.input_size // 8)
        self.patch_batch = int(patch_batch)
        self.device = torch.device(device)
        self.seams = seams or SeamOptions()
        self.channels_last = channels_last
        self.records = dict(records or {})
        self.precision = _precision.resolve(precision, self.device)  # "bf16" | "fp32"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.stage1 = Stage1(uv_normal, gde, hash_encoder, self.global_size, uv_prior).to(self.device)
        self.hfdr = hfdr.requires_grad_(False).eval().to(self.device, memory_format=fmt)
        self.stage1.uv_normal.to(memory_format=fmt)
        self.stage1.gde.to(memory_format=fmt)
        for net in (self.stage1.uv_normal, self.stage1.gde, self.hfdr):
            for m in net.modules():  # inference only: activations overwrite their (fresh) inputs, less memory traffic
                if isinstance(m, (nn.SiLU, nn.ReLU, nn.LeakyReLU)):
                    m.inplace = True
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def from_records(cls, records: Mapping[str, StageRecord], sizes: Mapping[str, int] | None = None,
                     input_size: int | None = None, **kwargs) -> Reconstructor:
        sizes = dict(sizes or {})
        for stage in ("hfdr", "gde", "uv_normal"):  # sizes the stages were trained at, from their datamodules
            for k, v in records[stage].sizes.items():
                sizes.setdefault(k, v)
        if input_size is not None:
            sizes = {"input_size": int(input_size)} | ({k: sizes[k] for k in ("global_size", "patch_size") if k in sizes}
                                                       if sizes.get("input_size") == input_size else {})
        if "input_size" not in sizes:
            raise CheckpointError("the checkpoints do not record the preset's sizes (no datamodule hyper-parameters); "
                                  "pass input_size (--input-size) of the preset they were trained at")
        hf_up = records["hfdr"].upstream.get("gde") or {}
        if hf_up.get("sha256") and records["gde"].sha256 and hf_up["sha256"] != records["gde"].sha256:
            warnings.warn(f"the HFDR checkpoint was trained with a different GDE ({hf_up.get('path')}) than "
                          f"{records['gde'].source}; its guides may not match", stacklevel=2)
        built = {s: build_stage(records[s]) for s in STAGES}
        return cls(built["uv_normal"]["net"], built["gde"]["net"], built["hfdr"]["net"], built["gde"].get("hash_encoder"),
                   input_size=sizes["input_size"], global_size=sizes.get("global_size"),
                   patch_size=sizes.get("patch_size"), records=records, uv_prior=uv_prior_of(records["gde"].model_config),
                   **kwargs)

    @classmethod
    def from_checkpoints(cls, directory: str | os.PathLike, **kwargs) -> Reconstructor:
        files = find_checkpoints(directory)
        return cls.from_records({s: read_stage(p, s) for s, p in files.items()}, **kwargs)

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, **kwargs) -> Reconstructor:
        records, sizes = load_bundle(path)
        return cls.from_records(records, sizes, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **kwargs) -> Reconstructor:
        """A checkpoint directory or a bundle file; None: the model that ships with uhrtex (`bundle.shipped_bundle`)."""
        path = shipped_bundle() if path is None else path
        return cls.from_bundle(path, **kwargs) if os.path.isfile(path) else cls.from_checkpoints(path, **kwargs)

    def export_bundle(self, path: str | os.PathLike, half: bool = False, meta: Mapping | None = None) -> None:
        if set(self.records) != set(STAGES):
            raise CheckpointError("export_bundle needs a Reconstructor built from checkpoints or a bundle")
        save_bundle(path, self.records, self.sizes, half, meta)

    @property
    def sizes(self) -> dict[str, int]:
        return {"input_size": self.input_size, "global_size": self.global_size, "patch_size": self.patch_size}

    # ------------------------------------------------------------------------------------ geometry

    def check_image(self, image: torch.Tensor, name: str = "image", check_size: bool = True) -> torch.Tensor:
        """3×H×W (or 1×3×H×W) float in [0, 1] or uint8/uint16 -> 3×H×W; one-line InputError otherwise.
        `check_size=False`: the values only (before a face crop resizes the image to the model's input)."""
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"{name}: expected an RGB image 3×H×W, got shape {list(image.shape)}")
        h, w = image.shape[-2:]
        need = self.input_size // 2
        if check_size and min(h, w) < need:
            raise InputError(f"{name}: {w}x{h} is too small for a model trained at {self.input_size}² (each side must "
                             f"be ≥ {need} px); drop --no-crop (the face crop is resized to the model's input) or use a "
                             "model of a smaller preset")
        if image.is_floating_point():
            lo, hi = (float(v) for v in torch.aminmax(image))  # one pass; NaN propagates into both, ±Inf shows
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise InputError(f"{name}: contains NaN/Inf values; fix the image")
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise InputError(f"{name}: values in [{lo:.3g}, {hi:.3g}] are outside [0, 1]; pass sRGB-encoded colour "
                                 "(tonemap and clamp linear radiance first)")
        elif image.dtype not in (torch.uint8, torch.uint16, torch.int32):
            raise InputError(f"{name}: unsupported dtype {image.dtype}; pass float in [0, 1], uint8 or uint16")
        return image

    def geometry(self, h: int, w: int) -> Geometry:
        p = self.patch_size
        side = math.ceil(max(h, w) / p) * p
        return Geometry(h, w, side, (side - h) // 2, (side - w) // 2, p)

    def _rows_cols(self, g: Geometry, y: int, n: int, x: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source indices of padded rows y..y+n and columns x..x+m (edge replicate)."""
        rows = (torch.arange(y, y + n) - g.top).clamp_(0, g.height - 1)
        cols = (torch.arange(x, x + m) - g.left).clamp_(0, g.width - 1)
        return rows, cols

    def _crop(self, image: torch.Tensor, g: Geometry, y: int, n: int, x: int, m: int) -> torch.Tensor:
        """Padded-square window [y:y+n, x:x+m] of the source as float 3×n×m."""
        if g.top <= y and y + n <= g.top + g.height and g.left <= x and x + m <= g.left + g.width:
            win = image[:, y - g.top:y - g.top + n, x - g.left:x - g.left + m]  # interior: a view, no gather
        else:
            rows, cols = self._rows_cols(g, y, n, x, m)
            win = image.index_select(1, rows.to(image.device)).index_select(2, cols.to(image.device))
        return win.float().div_(sample_scale(image.dtype)) if not image.is_floating_point() else win.float()

    def global_view(self, image: torch.Tensor, g: Geometry) -> torch.Tensor:
        """Area-downsample the padded square to global_size², band by band (1×3×gs×gs float)."""
        gs = self.global_size
        if g.side % gs:
            full = self._crop(image, g, 0, g.side, 0, g.side)[None]
            return F.interpolate(full, size=(gs, gs), mode="area")
        f = g.side // gs
        band = max(1, (1 << 22) // (g.side * f))  # output rows per band (~16 MB of float input)
        out = torch.empty(1, image.shape[0], gs, gs)
        for r0 in range(0, gs, band):
            r1 = min(gs, r0 + band)
            win = self._crop(image, g, r0 * f, (r1 - r0) * f, 0, g.side)
            out[0, :, r0:r1] = F.avg_pool2d(win[None], f)[0] if f > 1 else win
        return out

    # ------------------------------------------------------------------------------------ inference

    def _autocast(self):
        return _precision.autocast(self.precision, self.device)

    @property
    def _guide_at_head(self) -> bool:
        """Under bf16 the HFDR's 1×1 head reads a guide that joins there channels-first (`UNet._head`): no
        channels-last copy. (In float32 the head is the concatenated one, which keeps its bits with the copy.)"""
        return self.precision == "bf16" and getattr(self.hfdr, "guide_layer", None) == getattr(self.hfdr, "n_hidden", -1)

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def uv_prior(self, view: torch.Tensor, g: Geometry, face: Face | None, name: str = "image") -> torch.Tensor | None:
        """The landmark uv prior at the global size (1×3×gs×gs) for a Stage 1 trained with one, else None. `face`:
        landmarks in the image's pixels; None finds them on `view` (the padded square at the global size, as the
        training cache does). With no face found Stage 1 falls back to the predictor's uv."""
        if self.stage1.uv_prior == "none":
            return None
        from uhrtex.face.geometry import find_landmark_uv_prior, landmark_uv_prior

        if face is not None:
            return landmark_uv_prior(face, g.top, g.left, g.side, self.global_size)[None]
        prior = find_landmark_uv_prior(view[0])
        if prior is None:
            warnings.warn(f"{name}: no face found for the landmark uv prior this model was trained with; its uv "
                          "inside the face is the UV&Normal predictor's (much less accurate)", stacklevel=3)
            return None
        return prior[None]

    @torch.inference_mode()
    def run_stage1(self, image: torch.Tensor, g: Geometry, face_mask: torch.Tensor | None = None,
                   face: Face | None = None, name: str = "image") -> dict[str, torch.Tensor]:
        view = self.global_view(image, g)
        prior = self.uv_prior(view, g, face, name)
        x = self._fmt(view)
        mask = None if face_mask is None else self._fmt(self.global_view(face_mask.reshape(1, *image.shape[-2:]).float(), g))
        # The GDE stays fp32 under every precision: the guide it makes carries every map's overall values, which
        # bf16 would round to ~39 dB. The UV&Normal predictor (59 % of Stage 1's FLOPs at the paper preset) runs in
        # the reconstruction's precision: its outputs only place the guide (docs/reconstruction.md, Precision).
        out = self.stage1(x, mask=mask, uv_prior=None if prior is None else prior.to(self.device),
                          predictor_precision=self._autocast)
        return {k: v.float().contiguous() for k, v in out.items()}

    @torch.inference_mode()
    def run_hfdr(self, image: torch.Tensor, g: Geometry, s1: Mapping[str, torch.Tensor], out: torch.Tensor,
                 progress: Callable[[int], None] | None = None) -> None:
        """HFDR over every patch of the padded square, writing the cropped results into `out` (7×H×W)."""
        p = self.patch_size
        # uv, normal and guide resampled in one grid_sample per patch (a 12-channel global stack).
        stack = torch.cat([s1["uv_pred"], s1["normal_pred"], s1[GUIDE_KEY]], 1)
        nuv, nn_ = s1["uv_pred"].shape[1], s1["normal_pred"].shape[1]
        base = torch.arange(p, dtype=torch.float32, device=stack.device) + 0.5
        boxes = g.boxes()
        for b0 in range(0, len(boxes), self.patch_batch):
            batch = boxes[b0:b0 + self.patch_batch]
            img = torch.stack([self._crop(image, g, y, p, x, p) for y, x, _, _ in batch])
            # Patch pixel centres in the global map's normalised coordinates (align_corners=False).
            ys = torch.stack([(base + y) / g.side * 2 - 1 for y, _, _, _ in batch])
            xs = torch.stack([(base + x) / g.side * 2 - 1 for _, x, _, _ in batch])
            grid = torch.stack([xs[:, None, :].expand(-1, p, -1), ys[:, :, None].expand(-1, -1, p)], -1)
            glob = F.grid_sample(stack.expand(len(batch), -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                                 align_corners=False)
            uv, normal, guide = glob[:, :nuv], glob[:, nuv:nuv + nn_], glob[:, nuv + nn_:]
            x_in = self._fmt(hfdr_input(img.to(glob.device), uv, normal))
            with self._autocast():
                pred = self.hfdr(x_in, guide if self._guide_at_head else self._fmt(guide)).float()
            pred = pred.cpu() if pred.device != out.device else pred
            for (y, x, _, _), tile in zip(batch, pred):
                # Intersect the padded-square tile with the source frame.
                y0, y1 = max(y, g.top), min(y + p, g.top + g.height)
                x0, x1 = max(x, g.left), min(x + p, g.left + g.width)
                if y0 < y1 and x0 < x1:
                    out[:, y0 - g.top:y1 - g.top, x0 - g.left:x1 - g.left] = tile[:, y0 - y:y1 - y, x0 - x:x1 - x]
            if progress is not None:
                progress(len(batch))

    def __call__(self, image: torch.Tensor, progress: bool | Callable[[int], None] = False,
                 name: str = "image", face_mask: torch.Tensor | None = None,
                 face: Face | None = None) -> dict[str, torch.Tensor]:
        """Reconstruct the texture maps; see the module doc. Returns TEXTURE maps at the input size (views of
        one 7×H×W tensor) + `uv_pred normal_pred mask_pred guide` at the global size (1 sample, C×gs×gs).
        `face_mask` (H×W, e.g. the face landmarks' hull on a photo): Stage 1's face mask instead of the predicted one
        (`Stage1.forward`). `face`: the image's landmarks, for a model with the landmark uv prior (found here if
        not given)."""
        image = self.check_image(image, name)
        with keep_freed_memory() if self.device.type == "cpu" else contextlib.nullcontext():
            return self._reconstruct(image, progress, face_mask, face, name)

    def _reconstruct(self, image: torch.Tensor, progress: bool | Callable[[int], None],
                     face_mask: torch.Tensor | None = None, face: Face | None = None,
                     name: str = "image") -> dict[str, torch.Tensor]:
        g = self.geometry(*image.shape[-2:])
        t0 = time.perf_counter()
        s1 = self.run_stage1(image, g, face_mask, face, name)
        t1 = time.perf_counter()
        out = torch.empty(maps.TEXTURE.channels, g.height, g.width)
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=g.grid ** 2, desc="HFDR patches", unit="patch", leave=False)
            progress = bar.update
        try:
            self.run_hfdr(image, g, s1, out, progress or None)
        finally:
            if bar is not None:
                bar.close()
        t2 = time.perf_counter()
        if self.seams.enabled:
            smooth_seams(out, g.patch, band=self.seams.band, kernel=tuple(self.seams.kernel), sigma=self.seams.sigma,
                         feather=self.seams.feather, inplace=True, offset=(g.top, g.left),
                         keep_detail=self.seams.keep_detail)
        t3 = time.perf_counter()
        self.timings = {"stage1": t1 - t0, "hfdr": t2 - t1, "seams": t3 - t2}
        result = dict(maps.TEXTURE.split(out[None]).items())
        result = {k: v[0] for k, v in result.items()}
        result.update({k: v[0] for k, v in s1.items()})
        result["geometry"] = g  # type: ignore[assignment]
        return result

    def full_res(self, result: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """A global-size Stage-1 map resampled to the input's pixels (C×H×W), e.g. the mask for unwrapping."""
        g: Geometry = result["geometry"]  # type: ignore[assignment]
        m = result[name][None].float()
        box = Box(g.top, g.left, g.height, g.width)
        from uhrtex.hfdr.patches import sample_global

        return sample_global(m, box, (g.side, g.side))[0]
