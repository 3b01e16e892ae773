"""Your own environment maps (issue 13): `captures.environments=DIR` adds equirect EXR/HDR maps as lightings.

Ids come from file names; both renderers take the file the built-in one shades with; every bad folder or map is a
one-line error naming the file and the fix, raised before the store is opened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import open_dict

from uhrtex.render.envdir import env_name, environment_files
from uhrtex.render.environments import VENDORED, resolve_lighting
from uhrtex.render.environments import parse_lighting
from uhrtex.captures.format import check_id
from uhrtex.captures.render import render_capture, reshade
from uhrtex.captures.store import CaptureStore
from uhrtex.common.io import write_exr, write_png

pytestmark = pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend")
RES = 64


def _side_light(H: int = 16) -> torch.Tensor:
    """Dim everywhere, bright around world +x (Blender +x: the middle column of the equator)."""
    x = torch.full((3, H, 2 * H), 0.05)
    x[:, H // 2 - 3 : H // 2 + 3, H - 3 : H + 3] = 40.0
    return x


def _write_hdr(path: Path, x: torch.Tensor) -> None:
    ok, buf = cv2.imencode(".hdr", np.ascontiguousarray(x.permute(1, 2, 0).numpy()[..., ::-1]))
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture
def env_dir(tmp_path) -> Path:
    d = tmp_path / "envs"
    d.mkdir()
    write_exr(d / "Side Light.exr", _side_light(), half=False)
    _write_hdr(d / "overcast_02.hdr", torch.full((3, 8, 16), 0.7))
    (d / "LICENSE.txt").write_text("CC0")  # other files are ignored
    return d


def test_ids_from_file_names(env_dir):
    files = environment_files(env_dir)
    assert list(files) == ["env-side-light", "env-overcast-02"]  # sorted by file name ("S" < "o")
    for name in files:
        check_id("lighting", f"{name}_r090")
        assert parse_lighting(f"{name}_r090") == (name, 90)
    assert env_name("Studio Small_02.EXR") == "env-studio-small-02"
    # A subject's lightings draw every environment once (the vendored HDRIs and your maps), then start again.
    n = len(VENDORED) + len(files)
    ids = [resolve_lighting(i, env_dir, subject_seed=4)[0] for i in range(n + 1)]
    assert {i.split("_r")[0] for i in ids[:n]} == set(VENDORED) | set(files)
    user = next(i for i in ids if i.startswith("env-"))
    assert resolve_lighting(user, env_dir)[1] == str(files[user.split("_r")[0]])


def test_side_light_and_rotation_render_and_reshade(env_dir, one_torch_thread):
    """A light at world +x brightens the head's +x side (image right); rotated 180 degrees, the left side."""
    caps = {r: render_capture(3, f"env-side-light_r{r:03d}", 0, RES, texture_resolution=64, camera_jitter=False,
                              environments=env_dir) for r in (0, 180)}
    for r, cap in caps.items():
        m = cap.maps["mask"][0] > 0
        lum = cap.maps["image"].mean(0)
        right, left = lum[:, RES // 2 :][m[:, RES // 2 :]].mean(), lum[:, : RES // 2][m[:, : RES // 2]].mean()
        assert (right > 1.5 * left) if r == 0 else (left > 1.5 * right), (r, float(right), float(left))
        assert cap.meta["environment"]["source"] == str((env_dir / "Side Light.exr").absolute())
        assert (reshade(cap) - cap.maps["image"]).abs().max() < 1e-5  # meta's source file suffices
    hdr = render_capture(3, "env-overcast-02_r000", 0, RES, texture_resolution=64, environments=env_dir)
    assert hdr.meta["environment"]["source"].endswith("overcast_02.hdr") and hdr.maps["image"].std() > 0


def test_blender_job_gets_the_user_file(env_dir, tmp_path, monkeypatch):
    """The Blender path hands Cycles the very file (and exposure, rotation) the built-in renderer shades with."""
    from uhrtex.captures.blender import launch
    from uhrtex.render.environments import load_environment

    jobs = []

    def fake_run_scene(job, job_path, timeout=None):
        jobs.append(job)
        raise launch.BlenderError("stop here")

    monkeypatch.setattr(launch, "run_scene", fake_run_scene)
    with pytest.raises(launch.BlenderError, match="stop here"):
        launch.render_capture(0, 8, 0, 32, texture_resolution=32, workdir=tmp_path / "work", environments=env_dir)
    name, source = resolve_lighting(8, env_dir, 0)
    source = source or load_environment(name).source  # a vendored HDRI: its file
    env = load_environment(name, source=source)
    assert jobs[0]["environment"] == {"image": source, "rotation_deg": env.rotation_deg, "strength": env.exposure}


@pytest.fixture(scope="module")
def captures_cfg(tmp_path_factory):
    from tests.helpers.hydra_run import CPU_OVERRIDES, compose

    root = tmp_path_factory.mktemp("run")
    return compose(["+exp=make_captures", "preset=cpu", *CPU_OVERRIDES, f"captures.resolution={RES}", "captures.subjects=1",
                    "captures.global_sizes=[16]", "captures.progress=false", f"data.store={root / 'store'}"], root)


def test_make_captures_renders_a_user_lighting(env_dir, tmp_path, captures_cfg, one_torch_thread):
    """Subject 0's first lighting index that picks one of your maps, alone (a shard of k + 1 lightings)."""
    from experiments.make_captures import make_captures

    k = next(i for i in range(40) if resolve_lighting(i, env_dir, 0)[0].startswith("env-"))
    store = tmp_path / "store"
    with open_dict(captures_cfg):
        captures_cfg.captures.update(environments=str(env_dir), store=str(store), lightings=k + 1, shard=f"{k}/{k + 1}")
    metrics = make_captures(captures_cfg)
    s = CaptureStore(store)
    key = f"s0000__l{k:02d}__c00"
    assert metrics["captures/written"] == 1 and s.keys() == [key]
    meta = s.meta(key)
    assert meta["renderer_ids"]["lighting"] == resolve_lighting(k, env_dir, 0)[0]
    assert meta["environment"]["source"] == resolve_lighting(k, env_dir, 0)[1]


def _non_finite(d: Path, value: float) -> None:
    import OpenEXR

    x = _side_light().numpy()
    x[1, 2, 3] = value
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {c: x[i].copy() for i, c in enumerate("RGB")}).write(str(d / "bad.exr"))


def _neg(d: Path) -> None:
    x = _side_light()
    x[0, 1, 1] = -0.5
    write_exr(d / "bad.exr", x, half=False)


BROKEN = {  # fault -> (break the folder, words the message must contain)
    "unreadable": (lambda d: (d / "bad.exr").write_bytes(b"v/1\x01 not an exr"), ["bad.exr", "unreadable", "re-export"]),
    "unreadable_hdr": (lambda d: (d / "bad.hdr").write_bytes(b"#?RADIANCE\n garbage"), ["bad.hdr", "unreadable"]),
    "not_2to1": (lambda d: write_exr(d / "bad.exr", torch.ones(3, 16, 16)), ["bad.exr", "16x16", "2:1 equirectangular", "width = 2 x height"]),
    "nan": (lambda d: _non_finite(d, np.nan), ["bad.exr", "NaN/Inf", "re-export"]),
    "inf": (lambda d: _non_finite(d, np.inf), ["bad.exr", "NaN/Inf"]),
    "negative": (_neg, ["bad.exr", "negative", "clamp"]),
    "black": (lambda d: write_exr(d / "bad.exr", torch.zeros(3, 8, 16)), ["bad.exr", "black"]),
    "ldr": (lambda d: write_png(d / "bad.png", torch.rand(3, 8, 16)), ["bad.png", "not a high-dynamic-range", ".exr"]),
    "same_id": (lambda d: write_exr(d / "side-light.exr", _side_light()), ["side-light.exr", "Side Light.exr", "env-side-light", "rename"]),
    "empty": (lambda d: [p.unlink() for p in d.iterdir()], ["envs", "no .exr/.hdr maps", "drop captures.environments"]),
    "missing": (shutil.rmtree, ["envs", "does not exist"]),
}


@pytest.mark.parametrize("fault", list(BROKEN))
def test_bad_environment_is_one_line_and_writes_nothing(fault, env_dir, tmp_path, captures_cfg):
    from experiments.make_captures import make_captures

    breaker, words = BROKEN[fault]
    breaker(env_dir)
    store = tmp_path / "store"
    with open_dict(captures_cfg):
        captures_cfg.captures.update(environments=str(env_dir), store=str(store), lightings=1, shard=None)
    with pytest.raises(ValueError) as e:
        make_captures(captures_cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("environment"), msg
    assert all(w in msg for w in words), (words, msg)
    assert not store.exists()


def test_library_refuses_a_user_id_without_its_folder():
    from uhrtex.render.environments import LightingError, load_environment

    with pytest.raises(LightingError, match="captures.environments=DIR"):
        load_environment("env-side-light_r000")


def test_prefiltered_environment_is_cached_by_content(tmp_path, monkeypatch):
    """The GGX-prefiltered map goes through the cache folder, keyed by the radiance's bytes: the same numbers as
    computing it, one entry per distinct map, and a changed map is never served a stale entry."""
    from uhrtex.render import environments as envs

    monkeypatch.setenv("UHRTEX_CACHE_DIR", str(tmp_path))
    rad = torch.rand(3, 16, 32, generator=torch.Generator().manual_seed(0))
    first = envs._prefilter_cached(rad)
    assert torch.equal(first, envs._prefilter(rad)) and len(list(tmp_path.glob("prefilter_*.pt"))) == 1
    assert torch.equal(envs._prefilter_cached(rad.clone()), first)  # read back: still one entry
    assert len(list(tmp_path.glob("prefilter_*.pt"))) == 1
    other = rad.clone()
    other[0, 0, 0] += 1.0
    assert not torch.equal(envs._prefilter_cached(other), first) and len(list(tmp_path.glob("prefilter_*.pt"))) == 2
