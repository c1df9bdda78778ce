"""Frame-level block-causal attention.

A query token of frame ``i`` may attend to a key token of frame ``j`` iff ``j <= i`` (full attention
inside a frame). Frames are identified by integer ids per token, so the same function serves the
training forward (one sequence), FAR-Long (compressed long-term tokens before the window, each with
its true frame index) and cached decoding (a few query frames against cached keys).

Backends are selected by name; ``"sdpa"`` is the reference (``scaled_dot_product_attention`` with an
explicit mask, dropped when every key precedes every query).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("sdpa",)


def frame_causal_mask(q_frames: Tensor, k_frames: Tensor, slope_scale: float = 0.0,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """The additive (or boolean, when ``slope_scale == 0``) mask of shape (Lq, Lk).

    ``slope_scale`` adds the official (unused in released configs) linear bias
    ``slope_scale * (j - i)`` to allowed pairs.
    """
    allowed = k_frames[None, :] <= q_frames[:, None]
    if slope_scale == 0:
        return allowed
    bias = slope_scale * (k_frames[None, :] - q_frames[:, None]).to(dtype)
    return bias.masked_fill(~allowed, float("-inf"))


def frame_causal_attention(q: Tensor, k: Tensor, v: Tensor, q_frames: Tensor, k_frames: Tensor,
                           *, slope_scale: float = 0.0, backend: str = "sdpa") -> Tensor:
    """Attention of ``q`` (B, H, Lq, d) over ``k``/``v`` (B, H, Lk, d) under the frame-causal mask.

    ``q_frames`` (Lq,) and ``k_frames`` (Lk,) are integer frame ids (any device; they are small).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if q_frames.numel() != q.shape[-2] or k_frames.numel() != k.shape[-2]:
        raise ValueError(
            f"frame ids do not match the sequence: {q_frames.numel()} query ids for {q.shape[-2]} "
            f"queries, {k_frames.numel()} key ids for {k.shape[-2]} keys")
    unmasked = slope_scale == 0 and int(k_frames.max()) <= int(q_frames.min())
    mask = None if unmasked else frame_causal_mask(
        q_frames.to(q.device), k_frames.to(q.device), slope_scale, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
