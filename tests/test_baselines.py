"""Unit tests of the baseline networks: video DiT, FSQ tokenizer, token-level AR transformer."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from baselines import token_ar as ar
from baselines import video_dit as dit
from baselines import vq
from far.flow import CLEAN_TIMESTEP
from far.model import rope_tables


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (the training inits zero adaLN and outputs, hiding bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def counted_flops(fn) -> int:
    """Matmul/conv/attention FLOPs as torch counts them (math SDPA, which the counter sees)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ============================================================================= video DiT

def tiny_dit(**kw) -> dit.VideoDiTConfig:
    return dit.PRESETS["VideoDiT-tiny"](**{"in_channels": 4, "out_channels": 4, "window": 6, **kw})


class Recorder(torch.nn.Module):
    """Wraps a network and records the inputs of every call."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.cfg, self.calls = net, net.cfg, []

    def forward(self, x, t, **kw):
        self.calls.append((x.clone(), t.clone(), kw))
        return self.net(x, t, **kw)


@pytest.mark.parametrize("attention", dit.ATTENTION_LAYOUTS)
def test_dit_forward_and_flops(attention: str):
    cfg = tiny_dit(attention=attention, patch_size=2, condition="action", num_classes=3)
    net = randomize(dit.VideoDiT(cfg))
    x = torch.randn(2, 5, 4, 4, 6)
    actions = torch.randint(0, 4, (2, 5))
    out = net(x, torch.rand(2) * 1000, actions=actions)
    assert out.shape == x.shape and torch.isfinite(out).all()
    flops = counted_flops(lambda: net(x[:1], torch.rand(1) * 1000, actions=actions[:1]))
    assert flops == dit.forward_flops(cfg, 5, (4, 6))


def test_dit_attention_layouts_match_per_frame_and_per_position_attention():
    """A spatial block is joint attention inside each frame; a temporal block is joint attention over
    the frames at each position (the RoPE axes that are constant inside the group cancel)."""
    cfg = tiny_dit()
    f, rows, cols = 3, 2, 3
    joint = dit.Attention(cfg, "joint")
    randomize(joint)
    spatial, temporal = dit.Attention(cfg, "spatial"), dit.Attention(cfg, "temporal")
    spatial.load_state_dict(joint.state_dict())
    temporal.load_state_dict(joint.state_dict())
    x = torch.randn(2, f * rows * cols, cfg.dim)

    def tables(ids):
        return rope_tables(ids, cfg.axes_dims_rope, cfg.rope_theta)

    cos, sin = tables(dit.grid_ids(f, rows, cols))
    xs = x.unflatten(1, (f, rows * cols))
    out_s = spatial(x, cos, sin, f).unflatten(1, (f, rows * cols))
    for i in range(f):
        ref = joint(xs[:, i], *tables(dit.grid_ids(1, rows, cols)), 1)
        torch.testing.assert_close(out_s[:, i], ref, atol=1e-5, rtol=1e-5)
    out_t = temporal(x, cos, sin, f).unflatten(1, (f, rows * cols))
    frame_ids = torch.stack([torch.arange(f), torch.zeros(f, dtype=torch.long), torch.zeros(f, dtype=torch.long)], 1)
    for p in range(rows * cols):
        ref = joint(xs[:, :, p], *tables(frame_ids), f)
        torch.testing.assert_close(out_t[:, :, p], ref, atol=1e-5, rtol=1e-5)
    # Joint attention mixes everything; the spatial one keeps frames apart.
    x2 = x.clone()
    x2[:, -1] += 1.0  # last token of the last frame
    assert not torch.allclose(joint(x2, cos, sin, f)[:, :rows * cols], joint(x, cos, sin, f)[:, :rows * cols])
    torch.testing.assert_close(spatial(x2, cos, sin, f)[:, :rows * cols], spatial(x, cos, sin, f)[:, :rows * cols])


def test_dit_training_keeps_context_clean_and_one_timestep_per_clip():
    net = Recorder(dit.VideoDiT(tiny_dit()))
    x0 = torch.randn(16, 6, 4, 4, 4)
    g = torch.Generator().manual_seed(0)
    loss, logs = dit.video_dit_loss(net, x0, cfg=dit.DiTLossConfig(context_prob=0.5), generator=g)
    assert torch.isfinite(loss)
    x_t, t, _ = net.calls[0]
    clean = t == CLEAN_TIMESTEP
    assert clean.any() and (~clean).any(), "the draw should give clips with and without context"
    for i in range(x0.shape[0]):
        n = int(clean[i].sum())
        assert n < 6 and clean[i, :n].all(), "clean frames form a proper prefix"
        torch.testing.assert_close(x_t[i, :n], x0[i, :n], rtol=0, atol=0)
        assert t[i, n:].unique().numel() == 1, "one timestep per clip"
    # Clean frames carry no loss: changing the prediction there leaves the loss unchanged.
    def perturbed(x, tt, **kw):
        out = net.net(x, tt, **kw)
        return out + 10.0 * (tt == CLEAN_TIMESTEP)[..., None, None, None]
    loss2, _ = dit.video_dit_loss(perturbed, x0, cfg=dit.DiTLossConfig(context_prob=0.5),
                                  generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss2, loss)


def test_dit_sampling_keeps_context_clean_and_uses_it():
    cfg = tiny_dit(condition="label", num_classes=3)
    net = randomize(dit.VideoDiT(cfg))
    rec = Recorder(net)
    g = torch.Generator().manual_seed(0)
    context, noise = torch.randn(2, 2, 4, 4, 4, generator=g), torch.randn(2, 3, 4, 4, 4, generator=g)
    labels = torch.tensor([0, 2])
    sampler = dit.DiTSamplerConfig(num_steps=3)
    new = dit.denoise_window(rec, context, noise, sampler, labels=labels)
    assert len(rec.calls) == 3
    for x, t, _ in rec.calls:
        torch.testing.assert_close(x[:, :2], context, rtol=0, atol=0)
        assert (t[:, :2] == CLEAN_TIMESTEP).all() and (t[:, 2:] == t[0, 2]).all() and t[0, 2] >= 0
    seq = dit.sample_video(net, context, noise, sampler, labels=labels)
    torch.testing.assert_close(seq[:, :2], context, rtol=0, atol=0)
    torch.testing.assert_close(seq[:, 2:], new)
    other = dit.sample_video(net, context + 1.0, noise, sampler, labels=labels)
    assert not torch.allclose(other[:, 2:], seq[:, 2:]), "the generated frames must depend on the context"


@pytest.mark.parametrize("context,new,window,stride", [
    (0, 5, 4, 2), (2, 14, 16, 8), (2, 28, 16, 8), (36, 12, 16, 8), (3, 10, 4, 1), (1, 7, 5, 3), (0, 3, 1, 1)])
def test_sliding_windows_cover_every_new_frame_once(context, new, window, stride):
    wins = dit.sliding_windows(context, new, window, stride)
    assert wins[0].split == context and wins[-1].end == context + new
    for a, b in zip(wins, wins[1:]):
        assert b.split == a.end, "windows generate consecutive frames"
    for w in wins:
        assert w.start <= w.split < w.end and w.end - w.start <= window
        assert w.end - w.start == min(window, w.end), "a window is full whenever enough frames exist"
    for w in wins[1:-1]:
        assert w.split - w.start == window - stride
    with pytest.raises(ValueError):
        dit.resolve_stride(window=4, stride=4)


def test_sliding_window_sampling_stitches_windows():
    """Each window denoises its own frames from their own noise, given the stitched frames before."""
    cfg = tiny_dit(window=4, condition="action", num_classes=3)
    net = randomize(dit.VideoDiT(cfg))
    g = torch.Generator().manual_seed(1)
    context, noise = torch.randn(1, 1, 4, 4, 4, generator=g), torch.randn(1, 7, 4, 4, 4, generator=g)
    actions = torch.randint(0, 3, (1, 8), generator=g)
    sampler = dit.DiTSamplerConfig(num_steps=2, stride=2)
    seq = dit.sample_video(net, context, noise, sampler, actions=actions)
    assert seq.shape == (1, 8, 4, 4, 4)
    wins = dit.sliding_windows(1, 7, 4, 2)
    assert [(w.start, w.split, w.end) for w in wins] == [(0, 1, 4), (2, 4, 6), (4, 6, 8)]
    for w in wins:
        ref = dit.denoise_window(net, seq[:, w.start:w.split], noise[:, w.split - 1:w.end - 1], sampler,
                                 actions=actions[:, w.start:w.end])
        torch.testing.assert_close(seq[:, w.split:w.end], ref, atol=1e-5, rtol=1e-5)
    # Frames of the first window do not depend on how far the rollout goes.
    short = dit.sample_video(net, context, noise[:, :3], sampler, actions=actions[:, :4])
    torch.testing.assert_close(short, seq[:, :4])


def test_dit_cfg_scale_one_is_unguided():
    cfg = tiny_dit(condition="label", num_classes=3)
    net = randomize(dit.VideoDiT(cfg))
    g = torch.Generator().manual_seed(2)
    context, noise = torch.randn(2, 1, 4, 4, 4, generator=g), torch.randn(2, 2, 4, 4, 4, generator=g)
    labels = torch.tensor([1, 2])
    sampler = dit.DiTSamplerConfig(num_steps=3, guidance_scale=1.0)
    plain = dit.denoise_window(net, context, noise, sampler, labels=labels)
    null_and_cond = torch.cat([torch.full_like(labels, cfg.null_id), labels])
    forced = dit.denoise_window(net, context, noise, sampler, guided=True, labels=null_and_cond)
    torch.testing.assert_close(forced, plain, atol=1e-5, rtol=1e-5)
    guided = dit.sample_video(net, context, noise, dit.DiTSamplerConfig(num_steps=3, guidance_scale=3.0), labels=labels)
    assert not torch.allclose(guided[:, 1:], plain, atol=1e-3)


def test_dit_presets_are_far_sized():
    from far.model import PRESETS as FAR_PRESETS, FAR
    with torch.device("meta"):
        for size in ("B", "M", "L"):
            ours = dit.count_parameters(dit.build_video_dit(f"VideoDiT-{size}"))
            assert ours == dit.count_parameters(FAR(FAR_PRESETS[f"FAR-{size}"]()))
            assert ours == dit.count_parameters(dit.build_video_dit(f"VideoDiT-{size}", attention="alternating"))


# ============================================================================= FSQ tokenizer

def test_fsq_round_trip_and_grid():
    q = vq.FSQ((8, 5, 3))
    ids = torch.arange(q.codebook_size)
    codes = q.indices_to_codes(ids)
    assert codes.shape == (120, 3) and codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(q.codes_to_indices(codes), ids)
    out = q(torch.randn(1000, 3) * 3)
    assert torch.equal(q.indices_to_codes(q.codes_to_indices(out)), out), "outputs lie on the grid"
    z = torch.randn(1000, 3, requires_grad=True)
    q(z).sum().backward()
    assert z.grad.abs().min() > 0, "straight-through gradient (of the tanh bound)"


def test_fsq_codebook_usage():
    q = vq.FSQ((8, 5, 5, 5))
    ids = q.codes_to_indices(q(torch.randn(200_000, 4) * 2))
    assert ids.unique().numel() == q.codebook_size == 1000
    tok = vq.FrameTokenizer(vq.VQConfig(levels=(5, 3), downsample=2, channels=8))
    _, logs = tok.reconstruction_loss(torch.rand(4, 2, 3, 8, 8))
    assert 0 < logs["codebook_usage"] <= 1 and 1 <= logs["perplexity"] <= 15


def test_tokenizer_shapes_training_and_flops():
    torch.manual_seed(0)
    cfg = vq.VQConfig(levels=(5, 5, 3), downsample=4, channels=8)
    tok = vq.FrameTokenizer(cfg)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    phase = torch.rand(16, 1, 3, 1, 1) * 6
    video = (0.5 + 0.4 * torch.sin(xx / 3 + phase) * torch.cos(yy / 4 + phase)).expand(16, 1, 3, 16, 16)
    ids = tok.encode(video)
    assert ids.shape == (16, 1, 4, 4) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 75
    frames = tok.decode(ids)
    assert frames.shape == video.shape and 0 <= frames.min() and frames.max() <= 1
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = tok.reconstruction_loss(video)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    x = torch.rand(1, 1, 3, 16, 16)
    assert counted_flops(lambda: tok.quantize(x)) == vq.encode_flops(cfg, 16, 16)
    codes = tok.quantize(x)
    assert counted_flops(lambda: tok.decode_codes(codes)) == vq.decode_flops(cfg, 16, 16)


# ============================================================================= token AR

def tiny_ar(**kw) -> ar.TokenARConfig:
    return ar.PRESETS["TokenAR-tiny"](**{"vocab_size": 13, "grid": (2, 3), "max_frames": 4, **kw})


CONDITIONINGS = [("none", "frame"), ("label", "prefix"), ("label", "frame"), ("action", "prefix"),
                 ("action", "frame")]


def _cond(cfg: ar.TokenARConfig, b: int, f: int, g: torch.Generator) -> torch.Tensor | None:
    if cfg.condition == "label":
        return torch.randint(0, cfg.num_classes, (b,), generator=g)
    if cfg.condition == "action":
        return torch.randint(0, cfg.num_classes, (b, f), generator=g)
    return None


@pytest.mark.parametrize("condition,mode", CONDITIONINGS)
def test_static_kv_cache_decoding_matches_full_sequence(condition, mode):
    cfg = tiny_ar(condition=condition, num_classes=3, condition_mode=mode)
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    b, f, n = 2, cfg.max_frames, cfg.tokens_per_frame
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (b, f, n), generator=g)
    cond = _cond(cfg, b, f, g)
    full = net.token_logits(tokens, cond)
    cache = ar.StaticKVCache.allocate(cfg, b)
    keys_storage = cache.keys.data_ptr()
    pieces = [net.embed_prefix(cond, f, b)] + ([net.embed_separator(cond, 0)] if cfg.separators else [])
    hidden = net(torch.cat([p[0] for p in pieces], 1), torch.cat([p[1] for p in pieces]), cache)[:, -1]
    decoded = []
    for t in range(f):
        for i in range(n):
            decoded.append(net.logits(hidden))
            if t == f - 1 and i == n - 1:
                break
            x, ids = net.embed_token(tokens[:, t, i], t, i)
            if i == n - 1 and cfg.separators:
                xs, ids_s = net.embed_separator(cond, t + 1)
                x, ids = torch.cat([x, xs], 1), torch.cat([ids, ids_s])
            hidden = net(x, ids, cache)[:, -1]
    torch.testing.assert_close(torch.stack(decoded, 1).unflatten(1, (f, n)), full, atol=1e-5, rtol=1e-5)
    assert cache.length == cfg.max_sequence_length - 1 and cache.keys.data_ptr() == keys_storage
    with pytest.raises(ValueError, match="overflow"):
        net(*net.embed_frames(tokens[:, :1], cond if cfg.condition != "action" else cond[:, :1]), cache)


@pytest.mark.parametrize("condition,mode", CONDITIONINGS)
def test_token_logits_are_causal(condition, mode):
    cfg = tiny_ar(condition=condition, num_classes=3, condition_mode=mode)
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (1, 3, cfg.tokens_per_frame), generator=g)
    cond = _cond(cfg, 1, 3, g)
    base = net.token_logits(tokens, cond)
    t, i = 1, 2  # change token (1, 2): logits up to and including that position must not move
    changed = tokens.clone()
    changed[0, t, i] = (changed[0, t, i] + 1) % cfg.vocab_size
    out = net.token_logits(changed, cond).flatten(1, 2)
    k = t * cfg.tokens_per_frame + i
    torch.testing.assert_close(out[:, :k + 1], base.flatten(1, 2)[:, :k + 1])
    assert not torch.allclose(out[:, k + 1:], base.flatten(1, 2)[:, k + 1:])
    if condition == "action" and mode == "frame":  # frame 2's action reaches frame 2, not earlier frames
        cond2 = cond.clone()
        cond2[0, 2] = (cond2[0, 2] + 1) % 3
        out = net.token_logits(tokens, cond2)
        torch.testing.assert_close(out[:, :2], base[:, :2])
        assert not torch.allclose(out[:, 2], base[:, 2])


@pytest.mark.parametrize("condition,mode", [("none", "frame"), ("action", "frame"), ("label", "prefix")])
def test_greedy_generation_agrees_with_teacher_forced_logits(condition, mode):
    cfg = tiny_ar(condition=condition, num_classes=3, condition_mode=mode)
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    g = torch.Generator().manual_seed(3)
    context = torch.randint(0, cfg.vocab_size, (2, 1, cfg.tokens_per_frame), generator=g)
    cond = _cond(cfg, 2, 4, g)
    kw = {"labels": cond} if condition == "label" else {"actions": cond} if condition == "action" else {}
    out = ar.generate(net, context, torch.rand(2, 3, cfg.tokens_per_frame), ar.ARSamplerConfig(temperature=0), **kw)
    assert out.shape == (2, 4, cfg.tokens_per_frame) and torch.equal(out[:, :1], context)
    logits = net.token_logits(out, cond)
    assert torch.equal(logits[:, 1:].argmax(-1), out[:, 1:])


def test_generation_slides_past_the_window_and_is_deterministic():
    cfg = tiny_ar(condition="action", num_classes=3)
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    g = torch.Generator().manual_seed(4)
    context = torch.randint(0, cfg.vocab_size, (2, 2, cfg.tokens_per_frame), generator=g)
    actions = torch.randint(0, 3, (2, 9), generator=g)
    u = torch.rand(2, 7, cfg.tokens_per_frame, generator=g)
    sampler = ar.ARSamplerConfig(top_k=5, stride=1)
    out = ar.generate(net, context, u, sampler, actions=actions)
    assert out.shape == (2, 9, cfg.tokens_per_frame) and 0 <= out.min() and out.max() < cfg.vocab_size
    torch.testing.assert_close(ar.generate(net, context, u, sampler, actions=actions), out, rtol=0, atol=0)
    # The first window's frames do not depend on later ones; a sample does not depend on its batch.
    first = ar.generate(net, context, u[:, :2], sampler, actions=actions[:, :4])
    assert torch.equal(first, out[:, :4])
    alone = ar.generate(net, context[1:], u[1:], sampler, actions=actions[1:])
    assert torch.equal(alone, out[1:])


def test_select_tokens_temperature_and_top_k():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 10, generator=g) * 2
    m = 4000
    u = (torch.arange(m) + 0.5) / m  # stratified uniforms: the empirical law is the sampling law
    rows = logits.expand(m, 10)

    def law(temperature, top_k=None):
        ids = ar.select_tokens(rows, u, temperature, top_k)
        return torch.bincount(ids, minlength=10).float() / m

    torch.testing.assert_close(law(1.0), torch.softmax(logits[0], -1), atol=2 / m, rtol=0)
    torch.testing.assert_close(law(0.5), torch.softmax(logits[0] / 0.5, -1), atol=2 / m, rtol=0)
    top3 = logits[0].topk(3).indices
    p3 = law(1.0, top_k=3)
    assert set(p3.nonzero().flatten().tolist()) == set(top3.tolist())
    ref = torch.full((10,), float("-inf")).scatter(0, top3, logits[0, top3]).softmax(-1)
    torch.testing.assert_close(p3, ref, atol=2 / m, rtol=0)
    assert torch.equal(ar.select_tokens(rows, u, 1.0, top_k=1), logits.argmax(-1).expand(m))
    assert torch.equal(ar.select_tokens(rows, u, 0.0), logits.argmax(-1).expand(m))

    def entropy(p):
        return -(p * p.clamp_min(1e-12).log()).sum()
    assert entropy(law(0.5)) < entropy(law(1.0)) < entropy(law(2.0))


def test_token_ar_cfg_scale_one_is_unguided():
    cfg = tiny_ar(condition="label", num_classes=3)
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    g = torch.Generator().manual_seed(6)
    context = torch.randint(0, cfg.vocab_size, (2, 1, cfg.tokens_per_frame), generator=g)
    u = torch.rand(2, 3, cfg.tokens_per_frame, generator=g)
    labels = torch.tensor([0, 2])
    plain = ar.generate(net, context, u, ar.ARSamplerConfig(guidance_scale=1.0), labels=labels)
    # Just above 1 the guided path runs (batch [null; cond]) and must pick the same tokens.
    assert ar.is_guided(cfg, ar.ARSamplerConfig(guidance_scale=1.0 + 1e-6))
    nearly = ar.generate(net, context, u, ar.ARSamplerConfig(guidance_scale=1.0 + 1e-6), labels=labels)
    assert torch.equal(nearly, plain)
    strong = ar.generate(net, context, u, ar.ARSamplerConfig(guidance_scale=4.0), labels=labels)
    assert not torch.equal(strong, plain)


def test_token_ar_cost_matches_calls_and_counted_flops():
    cfg = tiny_ar()
    net = randomize(ar.TokenAR(cfg), scale=0.2)
    u = torch.rand(1, 3, cfg.tokens_per_frame)
    sampler = ar.ARSamplerConfig()
    calls = []
    handle = net.register_forward_pre_hook(lambda *_: calls.append(1))
    empty = torch.zeros(1, 0, cfg.tokens_per_frame, dtype=torch.long)
    flops = counted_flops(lambda: ar.generate(net, empty, u, sampler))
    handle.remove()
    cost = ar.sampling_cost(cfg, 0, 3, sampler)
    assert cost.network_calls == len(calls) == 3 * cfg.tokens_per_frame
    assert cost.flops == flops  # one query per call: no masked pairs
    assert cost.cache_bytes == ar.StaticKVCache.allocate(cfg, 1).nbytes()
    # Training: the counter also counts the masked (future) half of the attention matrix.
    tokens = torch.randint(0, cfg.vocab_size, (1, 4, cfg.tokens_per_frame))
    s = cfg.sequence_length(4)
    masked_pairs = s * s - s * (s + 1) // 2
    counted = counted_flops(lambda: net.token_logits(tokens))
    assert counted - 4 * masked_pairs * cfg.dim * cfg.num_layers == ar.training_flops(cfg, 4) / 3


def test_token_ar_loss_trains():
    cfg = tiny_ar(condition="action", num_classes=3)
    torch.manual_seed(0)
    net = ar.TokenAR(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (4, 3, cfg.tokens_per_frame))
    actions = torch.randint(0, 3, (4, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, logs = ar.token_ar_loss(net, tokens, actions=actions, condition_dropout_p=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(13.0)).item(), abs=0.3)
    assert losses[-1] < 0.5 * losses[0]


def test_token_ar_presets():
    with torch.device("meta"):
        b = ar.count_parameters(ar.build_token_ar("TokenAR-B"))
        l = ar.count_parameters(ar.build_token_ar("TokenAR-L"))
    assert 80e6 < b < 130e6 and 290e6 < l < 460e6


def test_token_ar_model_trains_its_tokenizer_first():
    """The adapter's two phases: tokenizer-only steps, then transformer-only steps; the counter is state."""
    from bench.api import VideoBatch
    from bench.models.token_ar import build_token_ar_model
    from bench.registry import get_task

    model = build_token_ar_model(get_task("bair_pred"), "quick", num_layers=1, num_heads=1, head_dim=16,
                                 tokenizer="FSQ-tiny", max_frames=4, tokenizer_steps=2).train()
    batch = VideoBatch(video=torch.rand(2, 6, 3, 64, 64))
    for step in range(3):
        model.zero_grad(set_to_none=True)
        loss, logs = model.training_loss(batch)
        loss.backward()
        tok_grads = [p.grad for p in model.tokenizer.parameters() if p.grad is not None]
        net_grads = [p.grad for p in model.net.parameters() if p.grad is not None]
        assert bool(logs["tokenizer_phase"]) == (step < 2)
        assert (bool(tok_grads), bool(net_grads)) == ((True, False) if step < 2 else (False, True))
    assert int(model.state_dict()["tokenizer_updates"]) == 2
