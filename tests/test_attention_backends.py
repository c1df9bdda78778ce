"""Frame-causal attention backends against the SDPA reference.

CPU: the Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1, set before the kernels
are defined; ``far.attention.triton_frame_causal`` also sets it itself when there is no CUDA
device), on tiny shapes with 16 x 16 tiles so that frames of 5-13 tokens straddle tile edges.
flex_attention runs eagerly on CPU, forward only (torch 2.14 has no CPU backward for it).
GPU tests (``-m gpu``) repeat the comparisons at FAR-B sizes: 12 heads, d 64, 256 tokens/frame.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():  # before anything defines a Triton kernel
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from far.attention import BACKENDS, FrameLayout, frame_causal_attention, frame_causal_mask  # noqa: E402

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"

# Sequence layouts (query layout, key layout). Frames of 5-13 tokens: never a multiple of 16.
VARIED = FrameLayout((0, 1, 2, 3), (5, 13, 7, 9))  # 34 tokens
LAYOUTS = {
    "uniform_odd": (FrameLayout.uniform(3, 11), FrameLayout.uniform(3, 11)),  # 33 tokens
    "varied": (VARIED, VARIED),
    "single_frame": (FrameLayout.uniform(1, 21), FrameLayout.uniform(1, 21)),
    # FAR-Long: 3 long-term frames of 4 compressed tokens, then 2 window frames of 9 tokens.
    "long_short": (FrameLayout.long_short(3, 4, 2, 9), FrameLayout.long_short(3, 4, 2, 9)),
    # Cached decoding: the last frame's 11 queries against cached frames 0..2 plus itself.
    "decode": (FrameLayout((3,), (11,)), FrameLayout.uniform(4, 11)),
    # FAR-Long cache step: new long-term frame 2 + window 3..4 against cached long-term 0..1 + new.
    "long_cache_step": (FrameLayout((2, 3, 4), (4, 9, 9)),
                        FrameLayout((0, 1, 2, 3, 4), (4, 4, 4, 9, 9))),
    # Not produced by FAR, but allowed: unsorted frame ids (the kernel sorts keys and queries).
    "unsorted": (FrameLayout((2, 0, 1, 3), (5, 13, 7, 9)), FrameLayout((1, 0, 3, 2), (4, 6, 7, 9))),
}


def _qkv(q_layout, k_layout, d=32, dtype=torch.float32, b=1, h=2, seed=0, device=DEV):
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: torch.randn(b, h, n, d, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    q, k, v = mk(q_layout.num_tokens), mk(k_layout.num_tokens), mk(k_layout.num_tokens)
    do = mk(q_layout.num_tokens)
    return q, k, v, do


def _run(backend, q, k, v, do, q_layout, k_layout, slope=0.0, grad=True, **kw):
    q, k, v = (t.detach().clone().requires_grad_(grad) for t in (q, k, v))
    if kw:  # explicit tile sizes: call the kernel module directly
        from far.attention.triton_frame_causal import triton_frame_causal_attention
        o = triton_frame_causal_attention(q, k, v, q_layout, k_layout, slope, **kw)
    else:
        o = frame_causal_attention(q, k, v, q_layout, k_layout, slope_scale=slope, backend=backend)
    if not grad:
        return o.detach(), None
    return o.detach(), torch.autograd.grad(o, (q, k, v), do)


def _reference(q, k, v, do, q_layout, k_layout, slope=0.0, grad=True):
    """SDPA with the explicit mask, in float64 on the CPU."""
    return _run("sdpa", *(t.double().cpu() for t in (q, k, v, do)), q_layout, k_layout, slope, grad)


def _assert_close(actual, expected, atol, rtol, what):
    torch.testing.assert_close(actual.double().cpu(), expected.double(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def _compare(backend, q_layout, k_layout, d=32, dtype=torch.float32, slope=0.0, grad=True, **kw):
    q, k, v, do = _qkv(q_layout, k_layout, d, dtype)
    o, g = _run(backend, q, k, v, do, q_layout, k_layout, slope, grad, **kw)
    o_ref, g_ref = _reference(q, k, v, do, q_layout, k_layout, slope, grad)
    if dtype == torch.float32:
        tol = dict(atol=2e-5, rtol=2e-5)
        _assert_close(o, o_ref, what="out", **tol)
        for name, a, e in zip(("dq", "dk", "dv"), g or (), g_ref or ()):
            _assert_close(a, e, what=name, **tol)
        return
    # Low precision: no worse than twice the reference's own rounding error (plus a floor).
    o_low, g_low = _run("sdpa", q, k, v, do, q_layout, k_layout, slope, grad)
    for name, a, low, e in zip(("out", "dq", "dk", "dv"), (o, *(g or ())), (o_low, *(g_low or ())),
                               (o_ref, *(g_ref or ()))):
        ref_err = (low.double().cpu() - e).abs().max().item()
        err = (a.double().cpu() - e).abs().max().item()
        assert err <= 2 * ref_err + 1e-2, f"{name}: error {err:.3g} vs sdpa-{dtype} {ref_err:.3g}"


# ----------------------------------------------------------------------------- layout and reference

def test_layout_is_canonical_and_matches_frame_ids():
    a = FrameLayout((0, 0, 1, 2, 2), (3, 2, 0, 4, 1))
    assert a == FrameLayout((0, 2), (5, 5)) and hash(a) == hash(FrameLayout((0, 2), (5, 5)))
    ids = torch.tensor([0, 0, 0, 1, 1, 3, 3, 3, 3])
    layout = FrameLayout.from_frame_ids(ids)
    assert layout == FrameLayout((0, 1, 3), (3, 2, 4)) and torch.equal(layout.frame_ids(), ids)
    assert FrameLayout.long_short(2, 4, 3, 16) == FrameLayout((0, 1, 2, 3, 4), (4, 4, 16, 16, 16))
    assert FrameLayout.uniform(2, 5, first_frame=3) + FrameLayout.uniform(1, 2, 5) == \
        FrameLayout((3, 4, 5), (5, 5, 2))
    for q_layout, k_layout in LAYOUTS.values():
        mask = frame_causal_mask(q_layout.frame_ids(), k_layout.frame_ids())
        assert q_layout.visible_pairs(k_layout) == int(mask.sum())
    assert not LAYOUTS["unsorted"][0].is_sorted and VARIED.is_sorted
    with pytest.raises(ValueError, match="run lengths"):
        FrameLayout((0, 1), (3,))


def test_sdpa_backend_is_the_explicit_mask_bit_for_bit():
    """The default path is exactly SDPA with the boolean mask (or no mask when all keys precede)."""
    for q_layout, k_layout in LAYOUTS.values():
        q, k, v, _ = _qkv(q_layout, k_layout, device="cpu")
        qf, kf = q_layout.frame_ids(), k_layout.frame_ids()
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=kf[None, :] <= qf[:, None])
        for frames in ((qf, kf), (q_layout, k_layout)):
            assert torch.equal(frame_causal_attention(q, k, v, *frames), expected)
    q_layout, k_layout = LAYOUTS["decode"]  # everything cached is visible: the mask is dropped
    q, k, v, _ = _qkv(q_layout, k_layout, device="cpu")
    assert torch.equal(frame_causal_attention(q, k, v, q_layout, k_layout),
                       F.scaled_dot_product_attention(q, k, v))


def test_reference_mask_semantics():
    """Softmax over exactly the keys of frames <= the query's frame, slope bias on allowed pairs."""
    q_layout, k_layout = LAYOUTS["long_cache_step"]
    q, k, v, _ = (t.double() for t in _qkv(q_layout, k_layout, device="cpu"))
    qf, kf = q_layout.frame_ids(), k_layout.frame_ids()
    slope = 0.25
    out = frame_causal_attention(q, k, v, q_layout, k_layout, slope_scale=slope)
    for i in range(q.shape[2]):
        keep = kf <= qf[i]
        s = (q[:, :, i:i + 1] @ k[:, :, keep].transpose(-1, -2)) / q.shape[-1] ** 0.5
        s = s + slope * (kf[keep] - qf[i]).double()
        torch.testing.assert_close(out[:, :, i:i + 1], s.softmax(-1) @ v[:, :, keep])


def test_errors():
    q_layout, k_layout = LAYOUTS["varied"]
    q, k, v, _ = _qkv(q_layout, k_layout, device="cpu")
    with pytest.raises(ValueError, match="unknown attention backend"):
        frame_causal_attention(q, k, v, q_layout, backend="xformers")
    with pytest.raises(ValueError, match="do not match"):
        frame_causal_attention(q, k, v, FrameLayout.uniform(2, 3))
    assert BACKENDS == ("sdpa", "flex", "triton")


# ----------------------------------------------------------------------------- triton

@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_triton_matches_reference_fp32(name):
    _compare("triton", *LAYOUTS[name])


@pytest.mark.parametrize("d", [64, 40])
def test_triton_head_dims(d):
    _compare("triton", *LAYOUTS["varied"], d=d)


@pytest.mark.parametrize("name", ["varied", "long_short", "decode"])
def test_triton_matches_reference_bf16(name):
    _compare("triton", *LAYOUTS[name], dtype=torch.bfloat16)


def test_triton_linear_bias():
    _compare("triton", *LAYOUTS["long_cache_step"], slope=0.3)


def test_triton_other_tile_shapes():
    """Unequal tiles per kernel: boundary tiles, partial last tiles and skipping in every loop."""
    from far.attention.triton_frame_causal import TileConfig
    tiles = TileConfig(fwd_m=32, fwd_n=16, dkdv_m=16, dkdv_n=32, dq_m=16, dq_n=32, num_warps=4, num_stages=2)
    _compare("triton", *LAYOUTS["varied"], tiles=tiles)
    _compare("triton", *LAYOUTS["long_cache_step"], tiles=tiles)
    # Frames that are whole tiles: no element mask anywhere.
    _compare("triton", *(FrameLayout.uniform(3, 32),) * 2, tiles=tiles)


def test_triton_non_contiguous_inputs_and_batch():
    """The model hands over (B, N, H, d) -> (B, H, N, d) transposed views."""
    q_layout, k_layout = LAYOUTS["varied"]
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, q_layout.num_tokens, 3, 32, generator=g).to(DEV).transpose(1, 2)
               for _ in range(3))
    do = torch.randn(2, 3, q_layout.num_tokens, 32, generator=g).to(DEV)
    o, grads = _run("triton", q, k, v, do, q_layout, k_layout)
    o_ref, grads_ref = _reference(q, k, v, do, q_layout, k_layout)
    _assert_close(o, o_ref, 2e-5, 2e-5, "out")
    for a, e in zip(grads, grads_ref):
        _assert_close(a, e, 2e-5, 2e-5, "grad")


def test_triton_accepts_frame_id_tensors():
    q_layout, k_layout = LAYOUTS["long_cache_step"]
    q, k, v, _ = _qkv(q_layout, k_layout)
    a = frame_causal_attention(q, k, v, q_layout.frame_ids(), k_layout.frame_ids(), backend="triton")
    b = frame_causal_attention(q, k, v, q_layout, k_layout, backend="triton")
    assert torch.equal(a, b)


def test_triton_rows_without_visible_keys_are_zero():
    """Not a FAR layout (every FAR query sees its own frame), but defined: no keys -> output 0."""
    q_layout, k_layout = FrameLayout((0, 2), (5, 11)), FrameLayout((1, 2), (7, 6))
    q, k, v, do = _qkv(q_layout, k_layout)
    o, grads = _run("triton", q, k, v, do, q_layout, k_layout)
    assert torch.equal(o[:, :, :5], torch.zeros_like(o[:, :, :5]))
    assert all(torch.isfinite(g).all() for g in grads)
    o_ref, _ = _reference(q[:, :, 5:], k, v, do[:, :, 5:], FrameLayout((2,), (11,)), k_layout)
    _assert_close(o[:, :, 5:], o_ref, 2e-5, 2e-5, "visible rows")


def test_triton_kernels_compile_for_hopper():
    """The interpreter does not lower anything: compile the kernels for sm_90 (ptxas, no GPU needed)."""
    code = ("import torch; from far.attention.triton_frame_causal import compile_for_target as c; "
            "c(torch.bfloat16, 64); c(torch.float32, 40, slope=True)")
    env = dict(os.environ, TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- flex

@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_flex_forward_matches_reference(name):
    _compare("flex", *LAYOUTS[name], grad=CUDA)


def test_flex_bf16_and_bias():
    _compare("flex", *LAYOUTS["long_short"], dtype=torch.bfloat16, grad=CUDA)
    _compare("flex", *LAYOUTS["long_cache_step"], slope=0.3, grad=CUDA)


@pytest.mark.skipif(CUDA, reason="CPU-only limitation")
def test_flex_cpu_backward_is_a_clear_error():
    q_layout, k_layout = LAYOUTS["varied"]
    q, k, v, _ = _qkv(q_layout, k_layout)
    with pytest.raises(NotImplementedError, match="no CPU backward"):
        frame_causal_attention(q.requires_grad_(), k, v, q_layout, backend="flex")
    with torch.no_grad():  # inference with grad-requiring leaves is fine
        frame_causal_attention(q, k, v, q_layout, backend="flex")


# ----------------------------------------------------------------------------- inside FAR

def _tiny_far(backend: str, **kw):
    from far.model import FAR, FARConfig
    cfg = FARConfig(num_layers=2, num_heads=2, head_dim=32, axes_dims_rope=(8, 12, 12), in_channels=4,
                    out_channels=4, short_term_ctx_winsize=3, attention_backend=backend, **kw)
    model = FAR(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("backend", ["triton", "flex"])
@pytest.mark.parametrize("long", [False, True], ids=["far", "far_long"])
def test_far_with_backend_matches_sdpa(long, backend):
    """Training forward/backward and the cached rollout of a tiny FAR (Long) give sdpa's results."""
    from far.flow import CLEAN_TIMESTEP
    from far.sample import SamplerConfig, rollout
    kw = dict(context_patch_size=2) if long else {}
    ref, tri = _tiny_far("sdpa", **kw), _tiny_far(backend, **kw)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5 if long else 3, 4, 4, 4, generator=g)
    t = torch.rand(1, x.shape[1], generator=g) * 1000
    t[0, 0] = CLEAN_TIMESTEP
    train = backend != "flex" or CUDA  # flex has no CPU backward
    outs, grads = [], []
    for model in (ref, tri):
        with torch.set_grad_enabled(train):
            out = model(x, t)
        if train:
            (out ** 2).mean().backward()
            grads.append(model.transformer_blocks[0].attn.to_q.weight.grad)
        outs.append(out.detach())
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    if train:
        torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)
    noise = torch.randn(1, 2, 4, 4, 4, generator=g)
    ctx = torch.rand(1, 3 if long else 1, 4, 4, 4, generator=g)
    sampler = SamplerConfig(num_steps=2)
    with torch.no_grad():
        a = rollout(ref, ctx, 2, sampler, noise=noise)
        b = rollout(tri, ctx, 2, sampler, noise=noise)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- GPU, FAR-B sizes

FAR_B = FrameLayout.uniform(16, 256)
FAR_B_LONG = FrameLayout.long_short(16, 16, 16, 256)  # 16 long-term frames at patch 4, window 16
GPU_CASES = {
    "far_b": (FAR_B, FAR_B),
    "far_b_long": (FAR_B_LONG, FAR_B_LONG),
    "decode": (FrameLayout((15,), (256,)), FAR_B),
    "odd_frames": (FrameLayout.uniform(16, 250), FrameLayout.uniform(16, 250)),
}


def _compare_gpu(backend, q_layout, k_layout, dtype):
    q, k, v, do = _qkv(q_layout, k_layout, d=64, h=12, b=2, dtype=dtype, device="cuda")
    o, g = _run(backend, q, k, v, do, q_layout, k_layout)
    o_ref, g_ref = _run("sdpa", *(t.float() for t in (q, k, v, do)), q_layout, k_layout)
    o_low, g_low = _run("sdpa", q, k, v, do, q_layout, k_layout)
    for name, a, low, e in zip(("out", "dq", "dk", "dv"), (o, *g), (o_low, *g_low), (o_ref, *g_ref)):
        err = (a.float() - e).abs().max().item()
        if dtype == torch.float32:
            assert err <= 1e-4, f"{name}: {err:.3g}"
        else:
            ref_err = (low.float() - e).abs().max().item()
            assert err <= 2 * ref_err + 2e-3, f"{name}: error {err:.3g} vs sdpa-bf16 {ref_err:.3g}"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("name", sorted(GPU_CASES))
@pytest.mark.parametrize("backend", ["triton", "flex"])
def test_gpu_backends_match_reference(backend, name, dtype):
    _compare_gpu(backend, *GPU_CASES[name], dtype)
