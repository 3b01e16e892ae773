"""The three stage networks (layer counts, channels, guide injection) and loading stage checkpoints."""

from pathlib import Path

import pytest
import torch

from lightning_modules.loading import load_stage
from uhrtex.checkpoint import CheckpointError
from tests.helpers.stage_ckpts import build_module, save_stage_checkpoint
from uhrtex import maps
from uhrtex.networks.budget import training_bytes
from uhrtex.networks.stages import build_gde, build_hfdr, build_uv_normal
from uhrtex.networks.unet import ConvBlock
from uhrtex.stage1.run import Stage1, gde_input, hfdr_input, split_uv_normal


def test_gde_has_12_hidden_layers_and_16_to_7_channels():
    net = build_gde(widths=(4, 8, 16), hash_channels=8)
    assert net.n_hidden == 12 == sum(isinstance(m, ConvBlock) for m in net.modules())
    assert (net.in_channels, net.out_channels) == (16, 7)
    assert net(torch.rand(1, 16, 16, 16)).shape == (1, 7, 16, 16)
    nohash = build_gde(widths=(4, 8, 16), hash_channels=0)
    assert (nohash.in_channels, nohash.n_hidden) == (8, 12)
    # same network apart from the first conv's input channels
    shapes = lambda n: [tuple(p.shape) for p in n.parameters()]  # noqa: E731
    assert shapes(net)[1:] == shapes(nohash)[1:] and shapes(net)[0] != shapes(nohash)[0]


def test_hfdr_injects_the_guide_after_hidden_layer_17():
    net = build_hfdr(widths=(4, 8, 16, 32))
    assert net.n_hidden == 17 and net.guide_layer == 17
    assert (net.in_channels, net.out_channels, net.guide_channels) == (8, 7, 7)
    assert net.head.in_channels == 4 + 7  # last hidden layer's width ⊕ the guide
    x, g = torch.rand(2, 8, 32, 32), torch.rand(2, 7, 8, 8)  # a low-res guide is resized to the patch
    torch.manual_seed(0)
    y = net(x, g)
    assert y.shape == (2, 7, 32, 32)
    assert not torch.allclose(y, net(x, torch.rand_like(g)))  # the guide changes the output
    with pytest.raises(ValueError, match="guide"):
        net(x)
    # with guide_passthrough (method=uhrtex), untrained, the head passes the guide through (clamped): HFDR learns the
    # residual detail; the paper's plain sigmoid head (the default) does not
    g_full = torch.rand(2, 7, 32, 32)
    assert torch.equal(build_hfdr(widths=(4, 8, 16, 32), guide_passthrough=True)(x, g_full), g_full)
    assert not torch.equal(net(x, g_full), g_full)


def test_hfdr_detail_skip_gives_the_head_the_image_detail_band():
    net = build_hfdr(widths=(4, 8, 16, 32), detail_skip=4, guide_passthrough=True)
    assert net.head.in_channels == 4 + 3 + 7  # features ⊕ image detail band ⊕ guide
    x, g = torch.rand(2, 8, 32, 32), torch.rand(2, 7, 32, 32)
    assert torch.equal(net(x, g), g)  # still a pass-through of the guide when untrained
    flat = torch.full_like(x, 0.5)
    assert net.detail_band(flat).abs().max() < 1e-6  # no detail in a flat image
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 8, 32, 32)
    assert net.detail_band(ramp)[..., 8:-8].abs().max() < 1e-5  # nor in a smooth one (away from the border)
    # A parameter-free path from the full-resolution pixels to the output: the band's head weights act at once.
    with torch.no_grad():
        net.head.weight[0, 4, 0, 0] = 1.0  # albedo R += image R's detail band
    fine = x.clone()
    fine[:, 0, ::2, ::2] += 0.1  # detail finer than the guide's 1/4 resolution
    assert (net(fine, g) - net(x, g))[:, 0].abs().mean() > 0.01
    with pytest.raises(ValueError, match="detail_skip"):
        build_hfdr(widths=(4, 8), detail_skip=-1)
    # detail_passthrough: untrained, albedo = guide + the image's detail band; the other maps stay the guide
    pt = build_hfdr(widths=(4, 8, 16, 32), detail_skip=4, detail_passthrough=True, guide_passthrough=True)
    g = torch.rand(2, 7, 32, 32) * 0.5 + 0.25
    y, band = pt(fine, g), pt.detail_band(fine)
    albedo = maps.TEXTURE.slice("albedo")
    assert torch.allclose(y[:, albedo], (g[:, albedo] + band).clamp(0, 1), atol=1e-6)
    assert torch.equal(y[:, albedo.stop:], g[:, albedo.stop:])
    with pytest.raises(ValueError, match="detail_passthrough"):
        build_hfdr(widths=(4, 8), detail_passthrough=True)


def test_hfdr_detail_branch_starts_silent_and_sees_only_the_band():
    plain = build_hfdr(widths=(4, 8, 16, 32), detail_skip=4, detail_passthrough=True, guide_passthrough=True)
    torch.manual_seed(0)
    net = build_hfdr(widths=(4, 8, 16, 32), detail_skip=4, detail_passthrough=True, guide_passthrough=True, detail_branch=8)
    net.load_state_dict({**net.state_dict(), **plain.state_dict()})
    x, g = torch.rand(2, 8, 32, 32), torch.rand(2, 7, 32, 32) * 0.5 + 0.25
    assert torch.equal(net(x, g), plain(x, g))  # its last layer starts at zero
    net(x, g).sum().backward()
    assert net.detail_branch[-1].weight.grad.abs().sum() > 0  # and learns from the first step
    with torch.no_grad():
        net.detail_branch[-1].weight.normal_()
    smooth = x.clone()
    smooth[:, 3:] = torch.rand(2, 5, 32, 32)  # uv and normal change, the image does not
    branch = lambda inp: net.detail_branch(net.detail_band(inp))  # noqa: E731
    assert torch.equal(branch(smooth), branch(x)) and branch(x).abs().mean() > 0
    with pytest.raises(ValueError, match="detail_branch needs detail_skip"):
        build_hfdr(widths=(4, 8), detail_branch=8)


def test_uv_normal_predicts_uv_normal_and_mask():
    net = build_uv_normal(widths=(4, 8, 8, 8, 8))
    out = net(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 6, 32, 32)
    parts = split_uv_normal(out)
    assert parts["uv_pred"].shape[1] == 2 and parts["normal_pred"].shape[1] == 3 and parts["mask_pred"].shape[1] == 1
    assert torch.allclose(parts["uv_pred"], out[:, :2] * out[:, 5:6])  # geometry is masked by the predicted mask
    assert build_uv_normal(widths=(4, 8), predict_mask=False).out_channels == 5


def test_input_builders_follow_the_layouts():
    img, uv, nrm = torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)
    x = hfdr_input(img, uv, nrm)
    assert torch.equal(x, torch.cat([img, uv, nrm], 1))
    enc = lambda u: torch.full((u.shape[0], 8, *u.shape[-2:]), 7.0)  # noqa: E731
    assert gde_input(img, uv, nrm, enc).shape[1] == 16 and torch.equal(gde_input(img, uv, nrm, None), x)


def test_stage1_chains_the_networks_at_the_global_size():
    torch.manual_seed(0)
    from uhrtex.networks.hash_encoding import HashGridEncoding

    s1 = Stage1(build_uv_normal(widths=(4, 8, 8, 8, 8)), build_gde(widths=(4, 8, 8)), HashGridEncoding(backend="torch"),
                global_size=32)
    out = s1(torch.rand(2, 3, 128, 128))
    assert set(out) == {"uv_pred", "normal_pred", "mask_pred", "guide"}
    assert all(v.shape[-2:] == (32, 32) for v in out.values()) and out["guide"].shape[1] == 7
    assert not any(p.requires_grad for p in s1.parameters())
    # a given face mask (a photo's landmark hull) replaces the predicted one for uv/normal and the guide
    s1.gde.mask_output = True
    half = torch.zeros(2, 1, 128, 128)
    half[..., :64] = 1.0
    given = s1(torch.rand(2, 3, 128, 128), mask=half)
    assert torch.equal(given["mask_pred"], half[..., ::4, ::4])
    assert given["uv_pred"][..., 16:].abs().max() == 0 and given["guide"][..., 20:].abs().max() == 0
    assert given["uv_pred"][..., :14].abs().max() > 0


def test_gde_mask_output_zeroes_the_guide_off_the_face_and_survives_a_checkpoint(tmp_path):
    """`mask_output`: the guide is 0 off the (widened) face mask and the plain guide on it, in the network, in Stage 1
    and after a checkpoint round trip; without the option the mask changes nothing (old checkpoints keep their guides)."""
    torch.manual_seed(0)
    x, mask = torch.rand(1, 16, 16, 16), torch.full((1, 1, 16, 16), 0.4)
    mask[..., 6:10, 6:10] = 0.9  # a soft mask: the face is where it is > 0.5, here rows and columns 6-9
    plain, masked = build_gde(widths=(4, 8, 8)), build_gde(widths=(4, 8, 8), mask_output=True)
    masked.load_state_dict(plain.state_dict())
    assert torch.equal(plain(x, mask), plain(x))
    face = torch.zeros(1, 7, 16, 16, dtype=torch.bool)
    face[..., 4:12, 4:12] = True  # widened by GUIDE_MASK_DILATION = 2 px
    assert torch.equal(masked(x, mask)[face], plain(x)[face]) and masked(x, mask)[~face].abs().max() == 0
    with pytest.raises(ValueError, match="pass the face mask"):
        masked(x)

    ckpt = save_stage_checkpoint("gde", tmp_path / "gde.ckpt", ["model.net.mask_output=true", "model.hash_encoding.backend=torch"])
    gde = load_stage(ckpt, "gde")
    assert gde["net"].mask_output
    s1 = Stage1(build_uv_normal(widths=(4, 8, 8, 8, 8)), gde["net"], gde["hash_encoder"], global_size=32)
    image = torch.rand(1, 3, 32, 32)  # at the global size: Stage 1 does not resample it
    out = s1(image)
    x = gde_input(image, out["uv_pred"], out["normal_pred"], gde["hash_encoder"])
    unmasked = gde["net"](x, torch.ones_like(out["mask_pred"]))
    assert torch.allclose(out["guide"], gde["net"](x, out["mask_pred"]), atol=1e-6)  # Stage 1 passes its mask
    off = out["guide"].abs().amax(1) == 0
    assert 0 < off.float().mean() < 1 and not off[(out["mask_pred"] > 0.5)[:, 0]].any()
    assert not torch.allclose(out["guide"], unmasked, atol=1e-3)


def test_gde_albedo_from_image_is_the_image_times_a_gain_and_survives_a_checkpoint(tmp_path):
    """`albedo_from_image`: albedo = image · exp(head), clipped to [0, 1] in value but not in gradient; micronormal and
    specular through the sigmoid as before. `start_from` makes the untrained gain mean albedo / mean image."""
    from uhrtex.networks.unet import UNet

    torch.manual_seed(0)
    net = build_gde(widths=(4, 8, 8), albedo_from_image=True)
    x = torch.rand(1, 16, 16, 16)
    raw = UNet.forward(net, x)  # the head's output before any output function
    out = net(x)
    albedo, rest = maps.TEXTURE.slice("albedo"), slice(3, 7)
    assert torch.allclose(out[:, albedo], (x[:, :3] * raw[:, albedo].exp()).clamp(0, 1), atol=1e-6)
    assert torch.allclose(out[:, rest], torch.sigmoid(raw[:, rest]), atol=1e-6)
    # an overshooting gain still gets a gradient back toward the target
    with torch.no_grad():
        net.head.bias[albedo] = 5.0
    y = net(x)[:, albedo]
    assert y.max() == 1.0
    y.sum().backward()
    assert net.head.bias.grad[albedo].abs().min() > 0

    texture_mean, image_mean = torch.tensor([0.6, 0.4, 0.3, 0.5, 0.5, 0.9, 0.2]), torch.tensor([0.3, 0.2, 0.6])
    with torch.no_grad():
        net.head.weight.zero_()
    net.start_from(texture_mean, image_mean)
    out = net(x)
    assert torch.allclose(out[:, albedo], (x[:, :3] * (texture_mean[:3] / image_mean)[:, None, None]).clamp(0, 1), atol=1e-6)
    assert torch.allclose(out[:, rest], texture_mean[3:, None, None].expand_as(out[:, rest]), atol=1e-6)
    with pytest.raises(ValueError, match="out_activation='identity'"):
        from uhrtex.networks.stages import GDENet
        GDENet(16, 7, (4, 8, 8), albedo_from_image=True)

    ckpt = save_stage_checkpoint("gde", tmp_path / "gde.ckpt", ["model.net.albedo_from_image=true",
                                                                 "model.hash_encoding.backend=torch"])
    assert load_stage(ckpt, "gde")["net"].albedo_from_image


def test_paper_preset_fits_a_24gb_gpu_with_the_documented_batches():
    """docs/training.md: width 32; global batch 4 (uv_normal, gde at 1024²), patch batch 16 (hfdr at 512²)."""
    G = 2**30
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    uvn = training_bytes(build_uv_normal(), meta(4, 3, 1024, 1024))["total"]
    gde = training_bytes(build_gde(), meta(4, 16, 1024, 1024))["total"]
    hfdr = training_bytes(build_hfdr(), meta(16, 8, 512, 512), meta(16, 7, 512, 512))["total"]
    for name, b in (("uv_normal", uvn), ("gde", gde), ("hfdr", hfdr)):
        assert b < 0.75 * 24 * G, f"{name} needs ~{b / G:.1f} GiB for a training step"


# --- stage checkpoints ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {name: save_stage_checkpoint(stage, root / f"{name}.ckpt", overrides)
            for name, stage, overrides in (("uv_normal", "uv_normal", []), ("gde", "gde", []),
                                           ("gde_nohash", "gde", ["model.hash_encoding.enabled=false"]))}


def test_load_stage_rebuilds_a_module_from_its_file_alone(ckpts):
    gde = load_stage(ckpts["gde"], "gde", hash_enabled=True)
    ref = torch.load(ckpts["gde"], weights_only=True)["state_dict"]
    for name, module in gde.items():
        assert all(torch.equal(v, ref[f"{name}.{k}"]) for k, v in module.state_dict().items() if torch.is_tensor(v))
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert set(gde) == {"net", "hash_encoder"}
    assert set(load_stage(ckpts["gde_nohash"], "gde")) == {"net"}


class _Payload:
    """Stands for any code a malicious checkpoint could smuggle in."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_in_one_line(ckpts, tmp_path):
    ckpt = torch.load(ckpts["gde"], weights_only=True)
    ckpt["uhrtex"]["model_config"]["payload"] = _Payload()
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError) as e:
        load_stage(tmp_path / "evil.ckpt", "gde")
    assert "carries pickled code (builtins.print)" in _one_line(e)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_wrong_stage_is_a_one_line_error(ckpts):
    with pytest.raises(CheckpointError) as e:
        load_stage(ckpts["uv_normal"], "gde")
    assert "written by stage 'uv_normal', expected 'gde'" in _one_line(e)


def test_hash_mismatch_is_a_one_line_error_both_ways(ckpts):
    with pytest.raises(CheckpointError) as e:
        load_stage(ckpts["gde_nohash"], "gde", hash_enabled=True)
    assert "has no hash encoder" in _one_line(e) and "model.hash_encoding.enabled=false" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        load_stage(ckpts["gde"], "gde", hash_enabled=False)
    assert "has a hash encoder" in _one_line(e)


def test_resuming_a_gde_with_the_other_hash_setting_fails_in_one_line(ckpts):
    module = build_module("gde", ["model.hash_encoding.enabled=true"])
    ckpt = torch.load(ckpts["gde_nohash"], weights_only=True)
    with pytest.raises(CheckpointError) as e:
        module.on_load_checkpoint(ckpt)
    assert "has no hash encoder" in _one_line(e)
    with pytest.raises(ValueError) as e:  # the base class' wrong-stage check on resume
        module.on_load_checkpoint(torch.load(ckpts["uv_normal"], weights_only=True))
    assert "stage 'uv_normal'" in _one_line(e)


def test_missing_or_foreign_files_are_one_line_errors(ckpts, tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_stage(tmp_path / "nope.ckpt", "uv_normal")
    assert "no checkpoint file" in _one_line(e)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as e:
        load_stage(tmp_path / "junk.ckpt", "uv_normal")
    assert "not a readable torch checkpoint" in _one_line(e)
    torch.save({"state_dict": {}}, tmp_path / "untagged.ckpt")
    with pytest.raises(CheckpointError) as e:
        load_stage(tmp_path / "untagged.ckpt", "gde")
    assert "no uhrtex stage tag" in _one_line(e)


def test_validation_panel_is_a_uint8_grid_wandb_can_show():
    import numpy as np
    import wandb

    from uhrtex.viz.panels import grid as panel

    p = panel({"image": torch.full((2, 3, 8, 8), 0.5), "uv": torch.ones(2, 2, 4, 4), "mask": torch.zeros(2, 1, 8, 8)})
    assert p.shape == (3, 16, 24) and p.dtype == torch.uint8
    assert p[:, :, :8].eq(128).all() and p[0, :, 8:16].eq(255).all() and p[2, :, 8:16].eq(0).all()
    assert np.array(wandb.Image(p).image).max() == 255  # a float panel would come out black (max 1)


def contract_batch(b: int, size: int, stage1: bool = False, guide: bool = False) -> dict:
    """A batch as docs/contracts.md describes it (CaptureDataModule, optionally with Stage-1 outputs)."""
    g = torch.Generator().manual_seed(0)
    batch = {n: torch.rand(b, c, size, size, generator=g) for n, c in maps.CAPTURE.groups}
    batch["mask"] = (batch["mask"] > 0.5).float()
    if stage1:
        batch.update(uv_pred=torch.rand(b, 2, size, size), normal_pred=torch.rand(b, 3, size, size),
                     mask_pred=torch.rand(b, 1, size, size))
    if guide:
        batch["guide"] = torch.rand(b, 7, size, size)
    batch.update(capture=[f"s{i}__l0__c0" for i in range(b)], subject=[f"s{i}" for i in range(b)])
    return batch


def test_uv_normal_loss_ignores_geometry_off_the_face():
    module = build_module("uv_normal")
    batch = contract_batch(2, 32)
    perfect = torch.cat([batch["uv"], batch["normal"], batch["mask"]], 1)
    off_face = perfect.clone()
    off_face[:, :5] = torch.where(batch["mask"].bool(), perfect[:, :5], torch.rand_like(perfect[:, :5]))
    t0, t1 = module.loss_terms(perfect, batch), module.loss_terms(off_face, batch)
    assert t0["geometry_l1"].item() == pytest.approx(0.0, abs=1e-7) and t1["geometry_l1"].item() == pytest.approx(0.0, abs=1e-7)
    assert t0["mask_bce"].item() < 1e-4  # a (clamped) perfect mask
    flipped = perfect.clone()
    flipped[:, 5:] = 1 - batch["mask"]
    assert module.loss_terms(flipped, batch)["loss"] > 10  # BCE of a wrong mask: -log(1e-6) ≈ 13.8


@pytest.mark.parametrize("gt", [False, True])
def test_gde_and_hfdr_modules_step_on_contract_batches(gt):
    gde = build_module("gde", [f"model.use_gt_geometry={str(gt).lower()}"])
    batch = contract_batch(2, 32, stage1=True)
    pred = gde.predict_batch(batch)
    terms = gde.loss_terms(pred, batch)
    assert pred.shape == (2, 7, 32, 32) and set(terms) == {"loss", "l1", "laplacian"}
    terms["loss"].backward()
    assert gde.hash_encoder.grid.params.grad.abs().sum() > 0  # the hash table trains jointly with the GDE
    geo = "uv" if gt else "uv_pred"
    changed = dict(batch, **{geo: torch.rand_like(batch[geo])})
    assert not torch.allclose(gde.predict_batch(changed), pred.detach())  # the chosen geometry is what it reads
    hfdr = build_module("hfdr", ["model.gde_ckpt=unused", f"model.use_gt_geometry={str(gt).lower()}"])
    batch = contract_batch(4, 32, stage1=True, guide=True)
    # untrained: the guide passes through, plus the image's detail band on the albedo (detail_passthrough)
    out, albedo = hfdr.predict_batch(batch), maps.TEXTURE.slice("albedo")
    band = hfdr.net.detail_band(batch["image"])
    assert torch.equal(out[:, albedo.stop:], batch["guide"][:, albedo.stop:])
    assert torch.allclose(out[:, albedo], (batch["guide"][:, albedo] + band).clamp(0, 1), atol=1e-6)
    assert hfdr.loss_terms(hfdr.predict_batch(batch), batch)["loss"] > 0
    with pytest.raises(KeyError, match="uv_normal_ckpt"):
        gde.hparams.use_gt_geometry = False
        gde.predict_batch(contract_batch(1, 32))


def test_hfdr_defaults_to_the_uv_normal_checkpoint_the_gde_was_trained_on(ckpts, tmp_path):
    from lightning_modules.hfdr import gde_upstream_uv_normal
    from uhrtex.checkpoint import CHECKPOINT_KEY, upstream_record

    uvn = tmp_path / "uvn.ckpt"
    uvn.write_bytes(Path(ckpts["uv_normal"]).read_bytes())
    ckpt = torch.load(ckpts["gde"], weights_only=True)
    ckpt[CHECKPOINT_KEY]["upstream"] = {"uv_normal": upstream_record(uvn)}
    torch.save(ckpt, tmp_path / "gde.ckpt")
    assert gde_upstream_uv_normal(str(tmp_path / "gde.ckpt")) == str(uvn.resolve())
    assert gde_upstream_uv_normal(ckpts["gde"]) is None  # trained on GT geometry: nothing recorded
    uvn.unlink()
    with pytest.raises(CheckpointError) as e:
        gde_upstream_uv_normal(str(tmp_path / "gde.ckpt"))
    assert "which is gone" in _one_line(e)


def test_gde_start_from_mean_sets_the_head_to_the_training_mean():
    """`start_from_mean`: a fresh GDE run starts with the training subjects' mean face texture as its output bias,
    not sigmoid(0) = 0.5 grey (docs/results.md, fifth round); off, the head's bias stays at its zero init."""
    import lightning as L

    from lightning_modules.gde import face_means

    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        b = {name: torch.rand(1, n, 32, 32, generator=gen) for name, n in maps.CAPTURE.groups}
        b["mask"] = (torch.rand(1, 1, 32, 32, generator=gen) > 0.5).float()
        batches.append(b)
    target = torch.cat([maps.TEXTURE.cat(b) for b in batches])
    mask = torch.cat([b["mask"] for b in batches])
    expected = (target * mask).sum((0, 2, 3)) / mask.sum()
    texture_mean, image_mean = face_means(batches)
    assert torch.allclose(texture_mean, expected, atol=1e-6)
    images = torch.cat([b["image"] for b in batches])
    assert torch.allclose(image_mean, (images * mask).sum((0, 2, 3)) / mask.sum(), atol=1e-6)

    class FirstBias(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.bias = module.net.head.bias.detach().clone()

    for start, gain in ((True, False), (False, False), (True, True)):
        module = build_module("gde", ["model.use_gt_geometry=true", f"model.start_from_mean={start}",
                                      f"model.net.albedo_from_image={gain}", "model.hash_encoding.backend=torch"])
        seen = FirstBias()
        L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0, callbacks=[seen]).fit(
            module, torch.utils.data.DataLoader(batches, batch_size=None))
        want = expected.clamp(0.02, 0.98) if start else torch.full_like(expected, 0.5)
        if gain:  # the albedo's gain starts at mean albedo / mean image
            assert torch.allclose(seen.bias[:3].exp(), expected[:3] / image_mean, atol=1e-5)
            seen.bias, want = seen.bias[3:], want[3:]
        assert torch.allclose(torch.sigmoid(seen.bias), want, atol=1e-5)
    with pytest.raises(ValueError, match="no face pixels"):
        face_means([{**batches[0], "mask": torch.zeros(1, 1, 32, 32)}])
