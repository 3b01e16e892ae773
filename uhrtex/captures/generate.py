"""Render a planned set of captures (subjects x lightings x cameras) into a CaptureStore, resumably.

Store keys are planned before rendering (`s0003__l01__c00`), so a re-run skips finished captures
without rendering them again; the renderer's own descriptive ids (e.g. lighting `studio_r090`) are
kept in `meta["renderer_ids"]`. Renderers: `builtin` (uhrtex.captures.render), `blender`
(uhrtex.captures.blender), `placeholder` (smooth random maps: I/O benchmarks and smoke tests only).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from collections.abc import Callable, Sequence

from uhrtex.captures.format import Capture, capture_key
from uhrtex.captures.store import CaptureStore

log = logging.getLogger(__name__)
RENDERER_MODULES = {"builtin": "uhrtex.captures.render", "blender": "uhrtex.captures.blender",
                    "placeholder": "uhrtex.captures.placeholder"}


@dataclass(frozen=True)
class PlannedCapture:
    subject_seed: int
    lighting: int
    camera_seed: int

    @property
    def ids(self) -> tuple[str, str, str]:
        return f"s{self.subject_seed:04d}", f"l{self.lighting:02d}", f"c{self.camera_seed:02d}"

    @property
    def key(self) -> str:
        return capture_key(*self.ids)


def plan(subjects: int, lightings: int, cameras: int = 1, first_subject: int = 0) -> list[PlannedCapture]:
    return [PlannedCapture(s, l, c) for s in range(first_subject, first_subject + subjects)
            for l in range(lightings) for c in range(cameras)]


def renderer(name: str) -> Callable[..., Capture]:
    """`render_capture(subject_seed, lighting, camera_seed, resolution, **kwargs) -> Capture` of a renderer."""
    if name not in RENDERER_MODULES:
        raise ValueError(f"unknown renderer '{name}'; choose one of {', '.join(RENDERER_MODULES)}")
    return importlib.import_module(RENDERER_MODULES[name]).render_capture


def _with_planned_ids(capture: Capture, item: PlannedCapture) -> Capture:
    """Use the planned ids in meta (so the key is known before rendering); keep the renderer's own ones."""
    subject, lighting, camera = item.ids
    meta = capture.meta
    own = {"subject": meta.get("subject"), "lighting": meta.get("lighting"), "camera": (meta.get("camera") or {}).get("id")}
    if own != {"subject": subject, "lighting": lighting, "camera": camera}:
        meta = {**meta, "subject": subject, "lighting": lighting, "camera": {**meta["camera"], "id": camera},
                "renderer_ids": own}
    return Capture(capture.maps, meta)


def make_captures(store: CaptureStore, items: Sequence[PlannedCapture], resolution: int, renderer_name: str = "builtin",
                  global_sizes: Sequence[int] = (), progress: bool = True, **render_kwargs) -> dict[str, list[str]]:
    """Render the missing `items` into `store`; returns {"written": keys, "skipped": keys}."""
    render = renderer(renderer_name)
    store.cleanup()
    done = set(store.keys(refresh=True))
    todo = [it for it in items if it.key not in done]
    report = {"written": [], "skipped": [it.key for it in items if it.key in done]}
    if report["skipped"]:
        log.info("%d of %d captures already in %s; rendering %d", len(report["skipped"]), len(items), store.url, len(todo))
    from tqdm.auto import tqdm

    for it in tqdm(todo, desc=f"render {resolution}²", unit="capture", disable=not progress):
        capture = render(subject_seed=it.subject_seed, lighting=it.lighting, camera_seed=it.camera_seed,
                         resolution=resolution, **render_kwargs)
        capture = _with_planned_ids(capture, it)
        store.write(it.key, capture, global_sizes=global_sizes)
        report["written"].append(it.key)
    return report
