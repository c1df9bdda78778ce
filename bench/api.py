"""The contract between the harness and every model: pixels in, pixels out.

Models take and return videos as float tensors (B, T, C, H, W) in [0, 1]; latents and tokens stay
private to the model. Sampler knobs (steps, guidance, temperature) live in each model's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class VideoBatch:
    """Training / reference data."""

    video: Tensor  # (B, T, C, H, W) float in [0, 1]
    labels: Tensor | None = None  # (B,) int64 class ids
    actions: Tensor | None = None  # (B, T) int64, the action paired with frame t
    covariates: Tensor | None = None  # (B, T, K) float, e.g. GreenEarthNet weather
    masks: Tensor | None = None  # (B, T, 1, H, W) bool, valid (e.g. clear-sky) pixels

    def __post_init__(self) -> None:
        if self.video.dim() != 5:
            raise ValueError(f"VideoBatch.video must be (B, T, C, H, W), got shape {tuple(self.video.shape)}")
        b, t = self.video.shape[:2]
        if self.labels is not None and self.labels.shape != (b,):
            raise ValueError(f"VideoBatch.labels must be ({b},), got {tuple(self.labels.shape)}")
        if self.actions is not None and self.actions.shape != (b, t):
            raise ValueError(f"VideoBatch.actions must be ({b}, {t}), got {tuple(self.actions.shape)}")


@dataclass
class Prompt:
    """What sampling conditions on."""

    context: Tensor  # (B, Tc, C, H, W) in [0, 1]; Tc == 0 means generation from nothing
    labels: Tensor | None = None
    actions: Tensor | None = None  # (B, Tc + Tp): future actions are part of the prompt
    covariates: Tensor | None = None  # (B, Tc + Tp, K)

    @property
    def batch_size(self) -> int:
        return self.context.shape[0]


@dataclass(frozen=True)
class Clip:
    """The shape of one clip, for analytic costs."""

    frames: int
    height: int
    width: int
    channels: int = 3
    context_frames: int = 0


@dataclass(frozen=True)
class Cost:
    """Analytic cost of a model on a clip; FLOPs count a multiply-add as 2."""

    params: int
    train_flops_per_clip: float  # forward + backward (3x forward)
    sample_flops_per_clip: float  # all network calls to sample the non-context frames
    network_calls_per_clip: int
    cache_bytes: int = 0  # peak KV-cache size while sampling one clip
    notes: str = ""


@runtime_checkable
class VideoModel(Protocol):
    name: str
    conditions: frozenset[str]  # subset of {"label", "action", "covariates"}

    def training_loss(self, batch: VideoBatch) -> tuple[Tensor, dict[str, Tensor]]: ...

    def sample(self, prompt: Prompt, num_frames: int, generator: torch.Generator) -> Tensor:
        """The ``num_frames`` frames after the context, (B, num_frames, C, H, W) in [0, 1]."""
        ...

    def cost(self, clip: Clip) -> Cost: ...


def check_sample(out: Tensor, prompt: Prompt, num_frames: int) -> Tensor:
    """Validate a model's sample against the contract (shape, dtype, range)."""
    b, _, c, h, w = prompt.context.shape
    if out.shape != (b, num_frames, c, h, w):
        raise ValueError(f"sample has shape {tuple(out.shape)}, expected {(b, num_frames, c, h, w)}")
    if not out.is_floating_point():
        raise ValueError(f"sample must be a float tensor, got {out.dtype}")
    if out.numel() and (out.min() < 0 or out.max() > 1 or not torch.isfinite(out).all()):
        raise ValueError("sample values must be finite and in [0, 1]")
    return out
