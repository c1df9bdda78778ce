"""Typed key/value caches for frame-autoregressive decoding.

Keys are stored after the per-head RMSNorm *and* the rotary embedding: rotary positions are
absolute (frame, row, column) ids, so rotating once at write time is the same arithmetic as the
official code's rotate-on-every-read and saves work at every later step.

``FrameKVCache`` holds whole frames: per layer a (B, H, S, d) key and value tensor plus the frame id
of every cached token (needed for the optional linear attention bias). ``MultiLevelKVCache`` is
FAR-Long's two-level cache: level 2 holds the long-term frames at the large context patch
(extended incrementally, since a long-term frame only ever sees earlier long-term frames), level 1
the short-term window at full patches (rebuilt at every cache step once frames have left the
window, because window frames see a long-term context that changes as the window slides).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class FrameKVCache:
    """Per-layer keys/values of consecutive frames ``start_frame .. start_frame + num_frames - 1``."""

    num_layers: int
    start_frame: int = 0
    num_frames: int = 0
    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)
    frame_ids: Tensor | None = None  # (S,) int64, frame id of every cached token

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [None] * self.num_layers
            self.values = [None] * self.num_layers

    @property
    def end_frame(self) -> int:
        """One past the last cached frame."""
        return self.start_frame + self.num_frames

    def reset(self, start_frame: int = 0) -> None:
        self.start_frame, self.num_frames = start_frame, 0
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
        self.frame_ids = None

    def append(self, layer: int, k: Tensor, v: Tensor) -> None:
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)

    def commit_frames(self, frame_ids: Tensor, num_frames: int) -> None:
        """Record the token frame ids of ``num_frames`` frames appended to every layer."""
        self.frame_ids = frame_ids if self.frame_ids is None else torch.cat([self.frame_ids, frame_ids])
        self.num_frames += num_frames

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


@dataclass
class MultiLevelKVCache:
    """FAR-Long's cache: ``long`` (level 2, compressed long-term frames) and ``window`` (level 1).

    For the short-context model ``long`` simply stays empty, so one class serves both.
    """

    long: FrameKVCache
    window: FrameKVCache

    @classmethod
    def empty(cls, num_layers: int) -> "MultiLevelKVCache":
        return cls(FrameKVCache(num_layers), FrameKVCache(num_layers))

    def prefix(self, layer: int) -> tuple[Tensor | None, Tensor | None]:
        """Cached keys and values of ``layer``, long-term first (their frames come first)."""
        parts = [c for c in (self.long, self.window) if c.keys[layer] is not None]
        if not parts:
            return None, None
        if len(parts) == 1:
            return parts[0].keys[layer], parts[0].values[layer]
        return (torch.cat([p.keys[layer] for p in parts], dim=2),
                torch.cat([p.values[layer] for p in parts], dim=2))

    def prefix_frame_ids(self) -> Tensor | None:
        ids = [c.frame_ids for c in (self.long, self.window) if c.frame_ids is not None]
        if not ids:
            return None
        return ids[0] if len(ids) == 1 else torch.cat(ids)

    def nbytes(self) -> int:
        return self.long.nbytes() + self.window.nbytes()


# The short-context model's cache is the same object with an empty long-term level.
KVCache = MultiLevelKVCache
