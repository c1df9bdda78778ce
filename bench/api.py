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
    """What the harness calls. Optional hooks, looked up with ``getattr``:

    * ``reconstruct(context) -> Tensor``: what the model shows of the context frames
      (B, Tc, C, H, W) in [0, 1], e.g. a latent model's decode(encode(context)) exactly as its
      sampling round-trips the context. FAR's pipeline decodes context and generated latents
      together, so FAR-protocol FVD scores this view of the context. Default: the context itself
      (pixel-space models); call it through :func:`reconstruct_context`.
    * ``use_protocol_sampling(part)``: pin the protocol's sampler settings for a part.
    """

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


def reconstruct_context(model, context: Tensor) -> Tensor:
    """The model's view of ``context`` (B, Tc, C, H, W): its ``reconstruct`` hook if it has one,
    else the context itself; checked against the contract (same shape, float, finite, in [0, 1])."""
    fn = getattr(model, "reconstruct", None)
    if fn is None or context.shape[1] == 0:
        return context
    out = fn(context)
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(out, Tensor) or out.shape != context.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{name}.reconstruct returned {shape}, expected {tuple(context.shape)}")
    if not out.is_floating_point():
        raise ValueError(f"{name}.reconstruct must return a float tensor, got {out.dtype}")
    if out.numel() and (out.min() < 0 or out.max() > 1 or not torch.isfinite(out).all()):
        raise ValueError(f"{name}.reconstruct values must be finite and in [0, 1]")
    return out
