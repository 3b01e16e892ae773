"""Render a planned set of captures (subjects x lightings x cameras) into a CaptureStore, resumably.

Store keys are planned before rendering (`s0003__l01__c00`; a loaded asset's: `<subject id>__l01__c00`), so a re-run skips finished captures
without rendering them again; the renderer's own descriptive ids (e.g. lighting `studio_r090`) are
kept in `meta["renderer_ids"]`. Renderers: `builtin` (uhrtex.captures.render), `blender`
(uhrtex.captures.blender), `placeholder` (smooth random maps: I/O benchmarks and smoke tests only).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from collections.abc import Callable, Sequence

from uhrtex.render.environments import resolve_lighting
from uhrtex.captures.format import Capture, capture_key, split_key
from uhrtex.captures.store import CaptureStore

log = logging.getLogger(__name__)
RENDERER_MODULES = {"builtin": "uhrtex.captures.render", "blender": "uhrtex.captures.blender",
                    "placeholder": "uhrtex.captures.placeholder"}


@dataclass(frozen=True)
class PlannedCapture:
    subject_seed: int | None
    lighting: int
    camera_seed: int
    subject: str | None = None  # a loaded asset's subject id (then subject_seed is None)

    @property
    def ids(self) -> tuple[str, str, str]:
        subject = self.subject if self.subject is not None else f"s{self.subject_seed:04d}"
        return subject, f"l{self.lighting:02d}", f"c{self.camera_seed:02d}"

    @property
    def key(self) -> str:
        return capture_key(*self.ids)


def plan(subjects: int, lightings: int, cameras: int = 1, first_subject: int = 0) -> list[PlannedCapture]:
    return [PlannedCapture(s, l, c) for s in range(first_subject, first_subject + subjects)
            for l in range(lightings) for c in range(cameras)]


def plan_assets(assets: Sequence, lightings: int, cameras: int = 1) -> list[PlannedCapture]:
    """Every asset x lighting x camera; keys `<asset subject id>__l<k>__c<k>` (split by subject as before)."""
    return [PlannedCapture(None, l, c, a.subject_id) for a in assets for l in range(lightings) for c in range(cameras)]


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n): this process renders the planned captures whose index % n == i. None -> (0, 1)."""
    if shard is None or str(shard).strip() in ("", "None", "null"):
        return 0, 1
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        i, n = -1, 0
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"captures.shard={shard!r} is not 'i/n' with 0 <= i < n; e.g. captures.shard=0/4 .. 3/4")
    return i, n


def shard_items(items: Sequence[PlannedCapture], shard: str | None) -> list[PlannedCapture]:
    i, n = parse_shard(shard)
    return [it for k, it in enumerate(items) if k % n == i]


def check_lightings(store: CaptureStore, done: set[str], todo: Sequence[PlannedCapture], environments=None) -> None:
    """A subject's lighting index names one environment (`environments.default_lightings`, seeded by the subject).
    A store extended with another folder of your own maps (`captures.environments`) or other code would silently
    give the same key another lighting: each planned subject's stored captures are compared with what their
    lighting indices resolve to here."""
    subjects = {it.subject_seed for it in todo if it.subject_seed is not None}
    for key in sorted(done):
        subject, lighting, _ = split_key(key)
        if not (subject.startswith("s") and subject[1:].isdigit() and int(subject[1:]) in subjects):
            continue
        have = store.meta(key).get("environment", {}).get("id")
        want = resolve_lighting(int(lighting[1:]), environments, int(subject[1:]))[0]
        if have and have != want:
            raise ValueError(f"capture store {store.url}: {key} was lit by {have}, but its lighting index resolves to "
                             f"{want} here; render into a new store (captures.store=...) or with the same "
                             "captures.environments as before")


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
                  global_sizes: Sequence[int] = (), progress: bool = True, assets: Sequence | None = None,
                  **render_kwargs) -> dict[str, list[str]]:
    """Render the missing `items` into `store`; returns {"written": keys, "skipped": keys}.

    `assets` (from `uhrtex.captures.assets.load_assets`, validated already): items with a `subject` render
    the asset of that subject id (built-in and Blender renderers).
    """
    render = renderer(renderer_name)
    by_subject = {a.subject_id: a for a in assets or ()}
    if by_subject and renderer_name not in ("builtin", "blender"):
        raise ValueError(f"captures.assets with captures.renderer={renderer_name} is not supported; use captures.renderer=builtin or blender")
    unknown = sorted({it.subject for it in items if it.subject is not None and it.subject not in by_subject})
    if unknown:
        raise ValueError(f"planned captures name assets {unknown[:3]} that were not loaded; pass assets=load_assets(DIR)")
    store.cleanup()
    done = set(store.keys(refresh=True))
    todo = [it for it in items if it.key not in done]
    if renderer_name != "placeholder":
        check_lightings(store, done, todo, render_kwargs.get("environments"))
    report = {"written": [], "skipped": [it.key for it in items if it.key in done]}
    if report["skipped"]:
        log.info("%d of %d captures already in %s; rendering %d", len(report["skipped"]), len(items), store.url, len(todo))
    from tqdm.auto import tqdm

    for it in tqdm(todo, desc=f"render {resolution}²", unit="capture", disable=not progress):
        extra = {"asset": by_subject[it.subject]} if it.subject is not None else {}
        capture = render(subject_seed=it.subject_seed, lighting=it.lighting, camera_seed=it.camera_seed,
                         resolution=resolution, **extra, **render_kwargs)
        capture = _with_planned_ids(capture, it)
        store.write(it.key, capture, global_sizes=global_sizes)
        report["written"].append(it.key)
    return report
