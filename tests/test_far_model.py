"""FAR beyond the official fixtures: caches on long rollouts, training, checkpoints, presets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import SHARED
from far.cache import MultiLevelKVCache
from far.flow import (CLEAN_TIMESTEP, FlowLossConfig, condition_dropout, flow_matching_loss,
                      inference_schedule, sample_train_indices)
from far.long_context import sample_long_context_clip
from far.model import FAR, FARConfig, PRESETS, build_far, count_parameters
from far.official import (CheckpointError, load_far_checkpoint, load_official_state_dict,
                          official_state_dict, read_state_dict, sha256_file, verify_hash_prefix)
from far.sample import SamplerConfig, rollout

KEYS = SHARED / "fixtures" / "far_official" / "keys"


def tiny(**kw) -> FARConfig:
    base = dict(num_layers=2, num_heads=1, head_dim=64, in_channels=4, out_channels=4,
                short_term_ctx_winsize=4)
    base.update(kw)
    return FARConfig(**base)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the training init zeroes adaLN and outputs, hiding bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("cfg", [
    tiny(),
    tiny(condition="action", num_classes=3),
    tiny(context_patch_size=2, condition="action", num_classes=3),
    tiny(context_patch_size=4, short_term_ctx_winsize=3, condition="action", num_classes=3),
    tiny(patch_size=2, condition="label", num_classes=5),
    tiny(slope_scale=0.05),
], ids=["plain", "action", "long-p2", "long-p4-w3", "patch2-label", "slope"])
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_cached_rollout_matches_uncached(cfg: FARConfig, guidance: float):
    """Long rollouts (well past FAR-Long's window) agree with and without the (multi-level) cache."""
    model = randomize(FAR(cfg))
    b, ctx, new = 2, 2, 7
    g = torch.Generator().manual_seed(1)
    context = torch.randn(b, ctx, 4, 4, 4, generator=g)
    noise = torch.randn(b, new, 4, 4, 4, generator=g)
    cond = {}
    if cfg.condition == "action":
        cond["actions"] = torch.randint(0, cfg.num_classes, (b, ctx + new), generator=g)
    if cfg.condition == "label":
        cond["labels"] = torch.randint(0, cfg.num_classes, (b,), generator=g)
    outs = {}
    for use_cache in (True, False):
        sampler = SamplerConfig(num_steps=3, guidance_scale=guidance, use_cache=use_cache)
        outs[use_cache] = rollout(model, context, new, sampler, noise=noise, **cond)
    assert outs[True].shape == (b, ctx + new, 4, 4, 4)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs[True][:, :ctx], context)


def test_guidance_changes_output_and_one_is_no_guidance():
    model = randomize(FAR(tiny(condition="label", num_classes=3)))
    noise = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1])
    run = lambda s: rollout(model, None, 2, SamplerConfig(num_steps=2, guidance_scale=s), noise=noise, labels=labels)
    assert not torch.allclose(run(1.0), run(3.0))
    # A null-label rollout is what the unconditional half of guidance computes.
    null = rollout(model, None, 2, SamplerConfig(num_steps=2), noise=noise, labels=torch.tensor([3]))
    dropped = rollout(model, None, 2, SamplerConfig(num_steps=2, drop_conditions=True), noise=noise, labels=labels)
    torch.testing.assert_close(null, dropped)


def test_frame_causality():
    """Changing frame k never changes the outputs of frames before k (training forward)."""
    model = randomize(FAR(tiny(condition="action", num_classes=3)))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5, 4, 4, 4, generator=g)
    t = torch.rand(1, 5, generator=g) * 1000
    a = torch.randint(0, 3, (1, 5), generator=g)
    with torch.no_grad():
        base = model(x, t, actions=a)
        x2 = x.clone()
        x2[:, 3] += 1.0
        changed = model(x2, t, actions=a)
    torch.testing.assert_close(base[:, :3], changed[:, :3])
    assert (base[:, 3:] - changed[:, 3:]).abs().max() > 1e-3


def test_non_cache_step_without_cache_step_is_an_error():
    model = randomize(FAR(tiny()))
    cache = MultiLevelKVCache.empty(2)
    x, t = torch.randn(1, 3, 4, 4, 4), torch.tensor([[CLEAN_TIMESTEP, CLEAN_TIMESTEP, 500.0]])
    with pytest.raises(ValueError, match="run a cache step first"):
        model(x, t, cache=cache, cache_step=False)
    out = model(x, t, cache=cache, cache_step=True)
    assert out.shape == (1, 1, 4, 4, 4) and cache.window.num_frames == 2
    assert cache.nbytes() == 2 * 2 * (1 * 1 * 2 * 16 * 64) * 4  # layers x (k, v) x tokens x dim x fp32


def test_condition_errors_are_clear():
    model = FAR(tiny(condition="action", num_classes=3))
    x, t = torch.randn(1, 2, 4, 4, 4), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="actions of shape"):
        model(x, t)
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 2, 3, 4, 4), t, actions=torch.zeros(1, 2, dtype=torch.long))


# ------------------------------------------------------------------------------ flow matching

def test_logit_normal_timesteps_and_dropout():
    g = torch.Generator().manual_seed(0)
    idx = sample_train_indices((20000,), g)
    assert idx.min() >= 0 and idx.max() <= 999
    # sigmoid(N(0,1)) is symmetric around 0.5 and concentrated in the middle.
    assert abs(idx.float().mean().item() - 499.5) < 10
    assert ((idx > 250) & (idx < 750)).float().mean() > 0.6
    ids = torch.zeros(10000, dtype=torch.long)
    dropped = condition_dropout(ids, 7, 0.1, g)
    assert set(dropped.unique().tolist()) == {0, 7}
    assert abs((dropped == 7).float().mean().item() - 0.1) < 0.02


def test_loss_uses_only_noisy_window_frames():
    """Frames outside the window, and clean frames, carry no loss: the network's output there is free."""
    x0 = torch.randn(3, 6, 4, 4, 4)
    seen = {}

    def network(x_t, t, labels=None, actions=None):
        seen["t"] = t
        out = torch.zeros_like(x_t)
        out[:, :2] = 1e6  # frames before the window of 4
        out[t == CLEAN_TIMESTEP] = -1e6
        return out

    loss, _ = flow_matching_loss(network, x0, window=4, cfg=FlowLossConfig(clean_context_ratio=0.3),
                                 generator=torch.Generator().manual_seed(0))
    assert loss.item() < 100  # roughly E[(noise - x0)^2] = 2
    assert (seen["t"] == CLEAN_TIMESTEP).any()
    noisy = seen["t"][seen["t"] != CLEAN_TIMESTEP]
    assert noisy.min() >= 1 and noisy.max() <= 1000


def test_long_term_frames_are_clean_in_training():
    clip = sample_long_context_clip(num_frames=20, window=4, generator=torch.Generator().manual_seed(3))
    assert 4 <= clip.length < 20 and 0 <= clip.start <= 20 - clip.length
    seen = {}

    def network(x_t, t, labels=None, actions=None):
        seen["t"] = t
        return torch.zeros_like(x_t)

    flow_matching_loss(network, torch.randn(2, 9, 4, 4, 4), window=4, num_long_term=5,
                       generator=torch.Generator().manual_seed(0))
    assert (seen["t"][:, :5] == CLEAN_TIMESTEP).all()


@pytest.mark.parametrize("long", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_tiny_far_trains(long: bool, checkpointing: bool):
    """A tiny FAR fits a fixed latent video: the loss falls clearly within a few dozen AdamW steps."""
    torch.manual_seed(0)
    cfg = tiny(num_layers=2, head_dim=64, num_heads=1, condition="action", num_classes=3,
               context_patch_size=2 if long else None, short_term_ctx_winsize=4,
               gradient_checkpointing=checkpointing)
    model = FAR(cfg).train()
    g = torch.Generator().manual_seed(0)
    # A smooth, predictable latent video: a moving blob.
    xs = torch.linspace(-1, 1, 4)
    frames = [torch.exp(-((xs[None, :] - 0.4 * k + 1) ** 2 + xs[:, None] ** 2) * 3) for k in range(6)]
    video = torch.stack(frames)[None, :, None].expand(4, 6, 4, 4, 4).contiguous()
    actions = torch.randint(0, 3, (4, 6), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        loss, _ = flow_matching_loss(model, video, window=4, actions=actions, null_id=cfg.null_id,
                                     num_long_term=2 if long else 0, generator=g)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    grads = []
    for ckpt in (False, True):
        model = randomize(FAR(tiny(gradient_checkpointing=ckpt)), seed=1).train()
        x, t = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0)), torch.full((2, 3), 500.0)
        model(x, t).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


# ------------------------------------------------------------------------------ presets, checkpoints

@pytest.mark.parametrize("name,keys_file", [
    ("FAR-B", "FAR_B.json"), ("FAR-M", "FAR_M.json"), ("FAR-L", "FAR_L.json"), ("FAR-XL", "FAR_XL.json"),
    ("FAR-B-Long", "FAR_B_Long_action4.json"), ("FAR-M-Long", "FAR_M_Long_action4.json"),
])
def test_preset_parameter_counts(name: str, keys_file: str):
    spec = json.loads((KEYS / keys_file).read_text())
    cond = spec["constructor_kwargs"]["registry_kwargs"].get("condition_cfg")
    kw = {"condition": "action", "num_classes": cond["num_action_classes"]} if cond else {}
    with torch.device("meta"):
        model = build_far(name, **kw)
    assert count_parameters(model) == spec["num_parameters"]


def test_unknown_preset_suggests():
    with pytest.raises(KeyError, match="FAR-B"):
        build_far("FAR-b")


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = randomize(FAR(tiny(condition="label", num_classes=5)))
    sd = official_state_dict(model)
    assert "label_embedder.embedding_table.weight" in sd and "transformer_blocks.0.mlp.net.0.proj.weight" in sd
    path = tmp_path / "far_tiny.safetensors"
    save_file(sd, str(path))
    digest = sha256_file(path)
    named = tmp_path / f"far_tiny-{digest[:10]}.safetensors"
    path.rename(named)
    assert verify_hash_prefix(named) == digest[:10]
    loaded = load_far_checkpoint(named, model.cfg)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)

    bad_name = tmp_path / "far_tiny-0123456789.safetensors"
    bad_name.write_bytes(named.read_bytes())
    with pytest.raises(CheckpointError, match="0123456789"):
        read_state_dict(bad_name)

    broken = dict(sd)
    broken.pop("proj_out.bias")
    broken["extra.weight"] = torch.zeros(1)
    broken["x_embedder.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as err:
        load_official_state_dict(FAR(model.cfg), broken, source="broken.safetensors")
    msg = str(err.value)
    assert "broken.safetensors" in msg and "proj_out.bias" in msg and "extra.weight" in msg
    assert "x_embedder.weight: checkpoint (3, 3)" in msg

    # .pth with nesting, read without unpickling code
    nested = tmp_path / "ema.pth"
    torch.save({"ema": {f"module.{k}": v for k, v in sd.items()}, "step": 3}, nested)
    load_official_state_dict(FAR(model.cfg), read_state_dict(nested))


def test_presets_are_official_defaults():
    cfg = PRESETS["FAR-B-Long"]()
    assert (cfg.num_layers, cfg.num_heads, cfg.context_patch_size, cfg.short_term_ctx_winsize) == (12, 12, 4, 16)
    assert inference_schedule(4).timesteps.tolist() == [1000.0, 667.0, 334.0, 1.0]


def test_sliding_window_far_sees_only_its_window():
    """far_sliding: a frame's prediction does not depend on context older than the window."""
    import torch
    from bench.api import Prompt
    from bench.registry import get_model_factory, get_task
    task = get_task("dmlab_long").at_scale("quick")
    torch.manual_seed(0)
    model = get_model_factory("far_sliding")(task=task, scale="quick", num_layers=1, num_heads=1,
                                             short_term_ctx_winsize=4, num_steps=2)
    assert model.model_config.sliding_window and not model.net.cfg.is_long
    with torch.no_grad():  # adaLN-zero makes a fresh model ignore its input: perturb every weight
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    g = torch.Generator().manual_seed(0)
    ctx = torch.rand(1, 10, 3, 32, 32, generator=g)
    actions = torch.randint(0, 3, (1, 14), generator=g)
    changed = ctx.clone()
    changed[:, :6] = torch.rand(1, 6, 3, 32, 32, generator=g)  # outside the last window - chunk = 2 frames
    out = [model.sample(Prompt(context=c, actions=actions), 4, [torch.Generator().manual_seed(1)])
           for c in (ctx, changed)]
    assert out[0].shape == (1, 4, 3, 32, 32)
    assert torch.equal(out[0], out[1])
    changed[:, -1] = 0.0  # inside the window: matters
    assert not torch.equal(out[0], model.sample(Prompt(context=changed, actions=actions), 4,
                                                [torch.Generator().manual_seed(1)]))
