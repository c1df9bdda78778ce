"""Frame-causal attention through ``torch.nn.attention.flex_attention``.

The mask is a ``mask_mod`` on per-token frame ids (``k_frame[kv] <= q_frame[q]``), turned into a
``BlockMask`` once per (query layout, key layout, device) and cached: fully visible 128 x 128 blocks
run without the element mask, fully masked blocks are skipped, and only blocks that straddle a
frame boundary evaluate the mask. The optional official linear bias is a ``score_mod``.

On CUDA the call goes through ``torch.compile(flex_attention)`` (the fused kernel, forward and
backward). On CPU, torch 2.14 runs flex_attention eagerly (unfused: the scores are materialised)
and supports the forward only -- it raises for inputs that require grad; this backend then raises
a clear error instead. Use ``"sdpa"`` or ``"triton"`` for CPU training.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from far.attention.reference import FrameLayout

BLOCK_SIZE = 128


@lru_cache(maxsize=64)
def block_mask(q_layout: FrameLayout, k_layout: FrameLayout, device: str) -> BlockMask:
    """The cached ``BlockMask`` of ``q_layout`` attending to ``k_layout`` (batch and heads broadcast)."""
    qf = q_layout.frame_ids(device)
    kf = k_layout.frame_ids(device)

    def frame_causal(b, h, q_idx, kv_idx):
        return kf[kv_idx] <= qf[q_idx]

    return create_block_mask(frame_causal, None, None, q_layout.num_tokens, k_layout.num_tokens,
                             device=device, BLOCK_SIZE=BLOCK_SIZE)


@lru_cache(maxsize=64)
def _slope_score_mod(q_layout: FrameLayout, k_layout: FrameLayout, device: str, slope_scale: float):
    qf = q_layout.frame_ids(device)
    kf = k_layout.frame_ids(device)

    def slope(score, b, h, q_idx, kv_idx):
        return score + slope_scale * (kf[kv_idx] - qf[q_idx]).to(score.dtype)

    return slope


_compiled_flex = None


def _flex_fn(device: torch.device):
    global _compiled_flex
    if device.type == "cpu":
        return flex_attention
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    return _compiled_flex


def flex_frame_causal_attention(q: Tensor, k: Tensor, v: Tensor, q_layout: FrameLayout,
                                k_layout: FrameLayout, slope_scale: float = 0.0) -> Tensor:
    """Attention of ``q`` (B, H, Lq, d) over ``k``/``v`` (B, H, Lk, d) under the frame-causal mask."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and (
            q.requires_grad or k.requires_grad or v.requires_grad):
        raise NotImplementedError(
            "flex_attention has no CPU backward in torch 2.14; use attention_backend 'sdpa' or "
            "'triton' for CPU training, or run without gradients")
    if q.device.type == "cpu" and not torch.is_grad_enabled():
        q, k, v = q.detach(), k.detach(), v.detach()  # eager CPU flex refuses any requires_grad input
    device = str(q.device)
    bm = block_mask(q_layout, k_layout, device)
    score_mod = None if slope_scale == 0 else _slope_score_mod(q_layout, k_layout, device, float(slope_scale))
    with warnings.catch_warnings():
        # On CPU the unfused eager path is the only one; its "call torch.compile" hint is noise.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return _flex_fn(q.device)(q, k, v, score_mod=score_mod, block_mask=bm)
