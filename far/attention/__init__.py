"""Frame-level block-causal attention.

A query token of frame ``i`` may attend to a key token of frame ``j`` iff ``j <= i`` (full attention
inside a frame). Frames are identified by integer ids per token -- as a (S,) tensor or as a
run-length :class:`FrameLayout` -- so the same function serves the training forward (one
sequence), FAR-Long (compressed long-term tokens before the window, each with its true frame
index) and cached decoding (a few query frames against cached keys).

Backends, selected by name (``FARConfig.attention_backend``):

- ``"sdpa"`` (default, the reference): ``scaled_dot_product_attention`` with an explicit boolean
  mask, dropped when every key precedes every query. Exactly the arithmetic of the parity tests.
- ``"flex"``: ``flex_attention`` with a cached ``BlockMask`` (compiled on CUDA; forward-only on CPU).
- ``"triton"``: a fused Triton kernel, forward and backward, that never materialises the mask and
  skips masked tiles (``far/attention/triton_frame_causal.py``). Runs in Triton's interpreter on CPU.

The flex and triton modules are imported on first use only. Triton chooses between compiling and
interpreting when ``triton.language`` is first imported (by us, or by torch's flex/inductor), so on
a machine without CUDA this package sets ``TRITON_INTERPRET=1`` at import if Triton is not loaded
yet: there the interpreter is the only way any Triton kernel can run.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import Tensor

from far.attention.reference import (FrameLayout, as_frame_ids, as_layout, frame_causal_mask,
                                     sdpa_frame_causal_attention)

BACKENDS = ("sdpa", "flex", "triton")

if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

__all__ = ["BACKENDS", "FrameLayout", "frame_causal_attention", "frame_causal_mask"]


def frame_causal_attention(q: Tensor, k: Tensor, v: Tensor, q_frames: Tensor | FrameLayout,
                           k_frames: Tensor | FrameLayout | None = None, *, slope_scale: float = 0.0,
                           backend: str = "sdpa") -> Tensor:
    """Attention of ``q`` (B, H, Lq, d) over ``k``/``v`` (B, H, Lk, d) under the frame-causal mask.

    ``q_frames`` (Lq,) and ``k_frames`` (Lk,) are integer frame ids (keep them on the CPU: the
    flex/triton backends run-length encode them) or :class:`FrameLayout` s; ``k_frames=None``
    means the keys are laid out like the queries (self-attention). ``slope_scale`` is the
    official linear bias ``slope_scale * (j - i)`` on allowed pairs (0 in released configs).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if k_frames is None:
        k_frames = q_frames
    n_q = q_frames.num_tokens if isinstance(q_frames, FrameLayout) else q_frames.numel()
    n_k = k_frames.num_tokens if isinstance(k_frames, FrameLayout) else k_frames.numel()
    if n_q != q.shape[-2] or n_k != k.shape[-2]:
        raise ValueError(
            f"frame ids do not match the sequence: {n_q} query ids for {q.shape[-2]} "
            f"queries, {n_k} key ids for {k.shape[-2]} keys")
    if backend == "sdpa":
        return sdpa_frame_causal_attention(q, k, v, as_frame_ids(q_frames), as_frame_ids(k_frames),
                                           slope_scale)
    if backend == "flex":
        from far.attention.flex import flex_frame_causal_attention
        return flex_frame_causal_attention(q, k, v, as_layout(q_frames), as_layout(k_frames), slope_scale)
    from far.attention.triton_frame_causal import triton_frame_causal_attention
    return triton_frame_causal_attention(q, k, v, as_layout(q_frames), as_layout(k_frames), slope_scale)
