"""Differentiable rasterization with nvdiffrast's API: native on CUDA, pure torch anywhere.

    r = Renderer(backend="auto", device="cuda")   # "auto" | "nvdiffrast" | "torch"
    rast, rast_db = r.rasterize(pos, tri, (H, W))
    uv, uv_da = r.interpolate(uv_attr, rast, tri_uv, rast_db, diff_attrs="all")
    color = r.texture(tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    color = r.antialias(color, rast, pos, tri)

The methods take exactly nvdiffrast.torch's arguments minus the context, which the Renderer
holds. Conventions are nvdiffrast's: row 0 of every image is the bottom (flip top-down images
along rows), uv[..., 0] indexes texture columns. The backend is chosen by
`uhrtex.common.backends.resolve("raster", ...)`; nvdiffrast is imported only when it is chosen.
"""

from __future__ import annotations

import torch

from uhrtex.common.backends import resolve
from uhrtex.raster import torch_backend

__all__ = ["Renderer", "torch_backend"]


class Renderer:
    """Holds the backend choice (and nvdiffrast's CUDA context when native)."""

    def __init__(self, backend: str = "auto", device: torch.device | str | None = None):
        self.device = None if device is None else torch.device(device)
        self.backend = resolve("raster", backend, self.device)
        self._dr = self._ctx = None
        if self.backend == "nvdiffrast":
            import nvdiffrast.torch as dr  # lazy: a broken CUDA build must not break `import uhrtex`

            self._dr = dr
            self._ctx = dr.RasterizeCudaContext(device=self.device)

    def __repr__(self) -> str:
        return f"Renderer(backend={self.backend!r}, device={self.device})"

    @property
    def native(self) -> bool:
        return self._dr is not None

    def rasterize(self, pos, tri, resolution, ranges=None, grad_db=True):
        """-> (rast [B,H,W,4] = (u, v, z/w, triangle_id+1), rast_db [B,H,W,4] = (du/dX, du/dY, dv/dX, dv/dY))."""
        if self.native:
            return self._dr.rasterize(self._ctx, pos, tri.int(), resolution, ranges=ranges, grad_db=grad_db)
        return torch_backend.rasterize(pos, tri, resolution, ranges=ranges, grad_db=grad_db)

    def depth(self, pos, tri, resolution):
        """-> [B,H,W] z/w of the nearest surface, +inf where none (a depth buffer: no barycentrics needed)."""
        if self.native:
            rast, _ = self._dr.rasterize(self._ctx, pos, tri.int(), resolution, grad_db=False)
            return torch.where(rast[..., 3] > 0, rast[..., 2], torch.full_like(rast[..., 2], float("inf")))
        return torch_backend.nearest_depth(pos, tri, resolution)

    def interpolate(self, attr, rast, tri, rast_db=None, diff_attrs=None):
        """-> (out [B,H,W,C], out_da [B,H,W,2n]); out is 0 where rast id is 0."""
        if self.native:
            return self._dr.interpolate(attr, rast, tri.int(), rast_db=rast_db, diff_attrs=diff_attrs)
        return torch_backend.interpolate(attr, rast, tri, rast_db=rast_db, diff_attrs=diff_attrs)

    def texture(self, tex, uv, uv_da=None, mip_level_bias=None, mip=None, filter_mode="auto", boundary_mode="wrap", max_mip_level=None):
        """-> [B,h,w,C]. Background pixels still sample uv (0,0): mask the result with rast id > 0."""
        fn = self._dr.texture if self.native else torch_backend.texture
        return fn(
            tex, uv, uv_da=uv_da, mip_level_bias=mip_level_bias, mip=mip,
            filter_mode=filter_mode, boundary_mode=boundary_mode, max_mip_level=max_mip_level,
        )  # fmt: skip

    def antialias(self, color, rast, pos, tri, topology_hash=None, pos_gradient_boost=1.0):
        """-> color [B,H,W,C] blended across silhouette edges (gradients reach pos)."""
        if self.native:
            return self._dr.antialias(color, rast, pos, tri.int(), topology_hash=topology_hash, pos_gradient_boost=pos_gradient_boost)
        return torch_backend.antialias(color, rast, pos, tri, topology_hash=topology_hash, pos_gradient_boost=pos_gradient_boost)

    def antialias_construct_topology_hash(self, tri):
        """Precompute antialias's edge adjacency once per mesh (each backend's own format)."""
        if self.native:
            return self._dr.antialias_construct_topology_hash(tri.int())
        return torch_backend.construct_topology(tri)
