"""The definition of FAR's frame-causal attention: sequence layouts, the mask, and the SDPA reference.

A token sequence is described by the frame id of every token. A query token of frame ``i`` may
attend to a key token of frame ``j`` iff ``j <= i``: full attention inside a frame, causal across
frames. This one rule covers every call ``far/model.py`` makes:

- training / uncached forward: one sequence of frames, each frame a block of ``h w`` tokens;
- FAR-Long: the compressed long-term frames come first (``(h/4)(w/4)`` tokens each, their *true*
  frame ids ``0 .. n_long - 1``), then the window frames (ids continue). Window tokens therefore see
  every long-term token; a long-term token sees long-term tokens of its own and earlier frames;
- cached decoding: queries of the new frame(s) against ``cached keys + new keys``; cached frames
  have smaller ids, so everything cached is visible.

:class:`FrameLayout` is a run-length form of the frame ids (hashable, so backends can cache block
masks and tile plans per layout). Backends accept either form.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class FrameLayout:
    """Run-length description of a token sequence: run ``r`` holds ``counts[r]`` tokens of frame ``frames[r]``.

    Adjacent runs of the same frame are merged and empty runs dropped, so two descriptions of the
    same sequence compare (and hash) equal.
    """

    frames: tuple[int, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.counts):
            raise ValueError(f"{len(self.frames)} frame ids for {len(self.counts)} run lengths")
        if any(c < 0 for c in self.counts):
            raise ValueError(f"negative run length in {self.counts}")
        frames: list[int] = []
        counts: list[int] = []
        for f, c in zip(self.frames, self.counts):
            f, c = int(f), int(c)
            if c == 0:
                continue
            if frames and frames[-1] == f:
                counts[-1] += c
            else:
                frames.append(f)
                counts.append(c)
        object.__setattr__(self, "frames", tuple(frames))
        object.__setattr__(self, "counts", tuple(counts))

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def uniform(cls, num_frames: int, tokens_per_frame: int, first_frame: int = 0) -> "FrameLayout":
        """``num_frames`` consecutive frames of ``tokens_per_frame`` tokens, ids from ``first_frame``."""
        return cls(tuple(range(first_frame, first_frame + num_frames)), (tokens_per_frame,) * num_frames)

    @classmethod
    def long_short(cls, num_long: int, long_tokens_per_frame: int, num_window: int,
                   tokens_per_frame: int, first_frame: int = 0) -> "FrameLayout":
        """FAR-Long: ``num_long`` compressed long-term frames, then ``num_window`` full frames (ids continue)."""
        return cls.uniform(num_long, long_tokens_per_frame, first_frame) + cls.uniform(
            num_window, tokens_per_frame, first_frame + num_long)

    @classmethod
    def from_frame_ids(cls, frame_ids: Tensor) -> "FrameLayout":
        """Run-length encode a (S,) integer tensor (best kept on the CPU: a CUDA tensor synchronises)."""
        if frame_ids.dim() != 1:
            raise ValueError(f"frame ids must be 1-D, got shape {tuple(frame_ids.shape)}")
        if frame_ids.numel() == 0:
            return cls((), ())
        values, counts = torch.unique_consecutive(frame_ids.detach().cpu(), return_counts=True)
        return cls(tuple(values.tolist()), tuple(counts.tolist()))

    def __add__(self, other: "FrameLayout") -> "FrameLayout":
        """Concatenation, e.g. cached prefix + new tokens."""
        return FrameLayout(self.frames + other.frames, self.counts + other.counts)

    # -- queries --------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return sum(self.counts)

    @property
    def is_sorted(self) -> bool:
        """Frame ids non-decreasing along the sequence (true for every layout FAR builds)."""
        return all(a < b for a, b in zip(self.frames, self.frames[1:]))

    def frame_ids(self, device: torch.device | str = "cpu") -> Tensor:
        """The (S,) int64 frame id of every token."""
        return _frame_ids(self, str(torch.device(device)))

    def visible_pairs(self, keys: "FrameLayout") -> int:
        """Number of allowed (query, key) pairs when ``self`` attends to ``keys`` (for FLOP counts)."""
        kf = torch.tensor(keys.frames, dtype=torch.int64)
        kc = torch.tensor(keys.counts, dtype=torch.int64)
        total = 0
        for f, c in zip(self.frames, self.counts):
            total += c * int(kc[kf <= f].sum())
        return total


@lru_cache(maxsize=256)
def _frame_ids(layout: FrameLayout, device: str) -> Tensor:
    ids = torch.repeat_interleave(torch.tensor(layout.frames, dtype=torch.int64),
                                  torch.tensor(layout.counts, dtype=torch.int64))
    return ids.to(device)


def as_frame_ids(frames: Tensor | FrameLayout) -> Tensor:
    return frames.frame_ids() if isinstance(frames, FrameLayout) else frames


def as_layout(frames: Tensor | FrameLayout) -> FrameLayout:
    return frames if isinstance(frames, FrameLayout) else FrameLayout.from_frame_ids(frames)


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


def sdpa_frame_causal_attention(q: Tensor, k: Tensor, v: Tensor, q_frames: Tensor, k_frames: Tensor,
                                slope_scale: float = 0.0) -> Tensor:
    """Reference: ``scaled_dot_product_attention`` with an explicit mask, dropped when every key
    precedes every query (cached decoding). This is the arithmetic the parity fixtures were checked on.
    """
    unmasked = slope_scale == 0 and int(k_frames.max()) <= int(q_frames.min())
    mask = None if unmasked else frame_causal_mask(
        q_frames.to(q.device), k_frames.to(q.device), slope_scale, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
