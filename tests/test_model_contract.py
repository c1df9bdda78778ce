"""The VideoModel contract, checked for every model in ``bench.registry.MODELS`` at a tiny size.

Each model is built by its registry factory at scale ``quick`` for one small task per conditioning
(``bair_pred``: none, ``dmlab_long``: actions, ``ucf101_cond128``: labels; all 64 px at quick scale)
with the tiny overrides of ``TINY`` (a model not listed there is built with its defaults). Checks:

- training: the loss is finite and back-propagates finite gradients into the trainable parameters;
- sampling: shape (B, T, C, H, W), float, in [0, 1] (``bench.api.check_sample``);
- determinism: the same seed gives the same sample, and per-sample generators make a sample
  independent of its batch;
- conditioning: different labels / actions give different samples (after randomizing the weights,
  since training inits zero the adaLN / output layers);
- cost: ``Cost.params`` equals the parameters of ``trainable_module()`` (what the harness trains and
  checkpoints). A frozen codec (FAR's and the DiT's DC-AE or pixel-unshuffle) is *not* counted; a
  tokenizer the model trains itself (token_ar) *is*, and ``Cost.notes`` gives the split. FLOPs are
  positive and sampling FLOPs grow with the number of frames.

Models with ``trainable = False`` (the dummy) accept conditions and ignore them, have no parameters
and no cost; only the checks that make sense for them run.
"""

from __future__ import annotations

import pytest
import torch

from bench.api import Clip, Prompt, VideoBatch, VideoModel, check_sample
from bench.registry import MODELS, get_task

# Tiny overrides per registered name, so that every check of a model runs in well under a second.
TINY: dict[str, dict[str, object]] = {
    "far": dict(num_layers=1, num_heads=1, num_steps=2, short_term_ctx_winsize=4),
    "far_sliding": dict(num_layers=1, num_heads=1, num_steps=2, short_term_ctx_winsize=4),
    "video_dit": dict(num_layers=2, num_heads=2, head_dim=16, num_steps=2, window=4),
    "video_dit_alt": dict(num_layers=2, num_heads=2, head_dim=16, num_steps=2, window=4),
    "token_ar": dict(num_layers=2, num_heads=2, head_dim=16, tokenizer="FSQ-tiny", max_frames=4,
                     tokenizer_steps=0),
}


FACTORIES = MODELS
TASK_FOR = {"none": "bair_pred", "action": "dmlab_long", "label": "ucf101_cond128"}
B, CONTEXT, NEW, FRAMES = 2, 2, 3, 6

cases = pytest.mark.parametrize("name,condition", [(m, c) for m in FACTORIES for c in TASK_FOR])


def build(name: str, condition: str):
    task = get_task(TASK_FOR[condition])
    model = FACTORIES[name](task=task, scale="quick", **TINY.get(name, {}))
    return model, task.at_scale("quick").resolution


def trainable(model) -> bool:
    return getattr(model, "trainable", True)


def core(model) -> torch.nn.Module | None:
    if hasattr(model, "trainable_module"):
        return model.trainable_module()
    return model if isinstance(model, torch.nn.Module) else None


def data(condition: str, res: int, seed: int = 0, frames: int = FRAMES) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(B, frames, 3, res, res, generator=g)
    labels = torch.randint(0, 101, (B,), generator=g) if condition == "label" else None
    actions = torch.randint(0, 4, (B, frames), generator=g) if condition == "action" else None
    return VideoBatch(video=video, labels=labels, actions=actions)


def prompt(model, condition: str, res: int, seed: int = 0) -> Prompt:
    batch = data(condition, res, seed, frames=CONTEXT + NEW)
    return Prompt(context=batch.video[:, :CONTEXT],
                  labels=batch.labels if "label" in model.conditions else None,
                  actions=batch.actions if "action" in model.conditions else None)


def randomize(model, seed: int = 0) -> None:
    module = core(model)
    if module is None:
        return
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)


def generators(seed: int, n: int = B) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


@cases
def test_builds_a_video_model(name, condition):
    model, _ = build(name, condition)
    assert isinstance(model, VideoModel) and model.name == name
    assert model.conditions <= {"label", "action", "covariates"}
    if trainable(model):
        assert model.conditions <= {condition}, "a trainable model takes the task's condition only"


@cases
def test_training_loss_is_finite_with_gradients(name, condition):
    torch.manual_seed(0)
    model, res = build(name, condition)
    if hasattr(model, "train"):
        model.train()
    loss, logs = model.training_loss(data(condition, res))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(torch.is_tensor(v) for v in logs.values())
    if not trainable(model):
        return
    loss.backward()
    params = [p for p in core(model).parameters() if p.requires_grad]
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no trainable parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@cases
def test_sample_shape_range_and_determinism(name, condition):
    model, res = build(name, condition)
    randomize(model)
    p = prompt(model, condition, res)
    out = check_sample(model.sample(p, NEW, generators(1)), p, NEW)
    again = model.sample(p, NEW, generators(1))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    # One generator per sample: sample 1 comes out the same when sampled alone.
    alone = model.sample(Prompt(context=p.context[1:], labels=None if p.labels is None else p.labels[1:],
                                actions=None if p.actions is None else p.actions[1:]), NEW, generators(1)[1:])
    torch.testing.assert_close(alone[0], out[1], atol=1e-4, rtol=0)
    # A single generator for the whole batch is accepted too.
    single = check_sample(model.sample(p, NEW, torch.Generator().manual_seed(3)), p, NEW)
    torch.testing.assert_close(model.sample(p, NEW, torch.Generator().manual_seed(3)), single, rtol=0, atol=0)


@pytest.mark.parametrize("name,condition", [(m, c) for m in FACTORIES for c in ("label", "action")])
def test_conditioning_is_respected(name, condition):
    model, res = build(name, condition)
    if not trainable(model) or condition not in model.conditions:
        pytest.skip(f"{name} does not use {condition}s")
    randomize(model)
    p = prompt(model, condition, res)
    out = model.sample(p, NEW, generators(2))
    if condition == "label":
        other = Prompt(context=p.context, labels=(p.labels + 1) % 101)
    else:
        other = Prompt(context=p.context, actions=(p.actions + 1) % 4)
    changed = model.sample(other, NEW, generators(2))
    for i in range(B):
        assert not torch.allclose(changed[i], out[i]), f"sample {i} ignores its {condition}"


@cases
def test_cost_is_consistent(name, condition):
    model, res = build(name, condition)
    short = model.cost(Clip(frames=CONTEXT + 2, height=res, width=res, context_frames=CONTEXT))
    long = model.cost(Clip(frames=CONTEXT + 8, height=res, width=res, context_frames=CONTEXT))
    module = core(model)
    counted = 0 if module is None else sum(p.numel() for p in module.parameters())
    assert short.params == long.params == counted
    assert short.cache_bytes >= 0 and long.cache_bytes >= short.cache_bytes
    if not trainable(model):
        return
    assert short.params > 0 and short.network_calls_per_clip > 0
    assert 0 < short.train_flops_per_clip <= long.train_flops_per_clip
    assert 0 < short.sample_flops_per_clip < long.sample_flops_per_clip
    assert short.network_calls_per_clip <= long.network_calls_per_clip
    fewer = model.cost(Clip(frames=CONTEXT + 1, height=res, width=res, context_frames=CONTEXT))
    assert fewer.train_flops_per_clip < short.train_flops_per_clip, "training FLOPs grow with frames"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_reconstruct_is_the_models_view_of_the_context(name):
    """``reconstruct_context``: what the model shows of the context (FAR-protocol FVD scores it), of the
    context's shape and in [0, 1]; exact for pixel-space models and the lossless quick-scale codec."""
    from bench.api import reconstruct_context
    model, res = build(name, "none")
    context = data("none", res, frames=CONTEXT).video
    view = reconstruct_context(model, context)
    assert view.shape == context.shape and view.is_floating_point()
    assert 0 <= float(view.min()) and float(view.max()) <= 1
    codec = getattr(model, "codec", None)
    if codec is None and hasattr(model, "tokenizer"):
        assert not torch.allclose(view, context, atol=1e-3)  # a VQ/FSQ tokenizer is lossy
    elif codec is None or type(codec).__name__ == "PixelUnshuffleCodec":
        assert torch.allclose(view, context, atol=1e-6)
