"""Flow matching as FAR trains and samples it, as pure functions.

Noise level ``sigma = t / 1000``; ``x_t = sigma * noise + (1 - sigma) * x_0``; the network predicts
the velocity ``noise - x_0``. Training draws one logit-normal timestep per frame from the discrete
training schedule 1000, 999, ..., 1; inference walks ``linspace(1000, 1, n)`` down to sigma 0 with
Euler steps. The arithmetic (float64 linspace cast to float32, float32 steps) matches the official
diffusers ``FlowMatchEulerDiscreteScheduler`` bit for bit; there is no scheduler state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
# Timestep value that marks a clean (context) frame. It is embedded like any other number.
CLEAN_TIMESTEP = -1.0


@dataclass(frozen=True)
class Schedule:
    """Inference schedule: ``timesteps`` (n,) and ``sigmas`` (n + 1,) ending in 0, float32."""

    timesteps: Tensor
    sigmas: Tensor

    def __len__(self) -> int:
        return self.timesteps.numel()


def train_sigmas() -> Tensor:
    """Noise levels of the training schedule (index 0 is the noisiest), float32 (1000,)."""
    t = np.linspace(1, NUM_TRAIN_TIMESTEPS, NUM_TRAIN_TIMESTEPS, dtype=np.float32)[::-1].copy()
    return torch.from_numpy(t) / NUM_TRAIN_TIMESTEPS


def train_timesteps() -> Tensor:
    """Training schedule timesteps 1000, 999, ..., 1 as float32, as the official trainer indexes them."""
    return train_sigmas() * NUM_TRAIN_TIMESTEPS


def inference_schedule(num_steps: int) -> Schedule:
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = np.linspace(NUM_TRAIN_TIMESTEPS, 1.0, num_steps)  # float64, as the official scheduler
    sigmas = torch.from_numpy(t / NUM_TRAIN_TIMESTEPS).to(torch.float32)
    timesteps = sigmas * NUM_TRAIN_TIMESTEPS
    return Schedule(timesteps=timesteps, sigmas=torch.cat([sigmas, torch.zeros(1)]))


def euler_step(x: Tensor, velocity: Tensor, sigma: Tensor | float, sigma_next: Tensor | float) -> Tensor:
    """One Euler step of the flow ODE from ``sigma`` to ``sigma_next``."""
    return (x.float() + (sigma_next - sigma) * velocity).to(velocity.dtype)


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """``sigma * noise + (1 - sigma) * x0`` with ``sigma`` broadcast from the leading dimensions."""
    sigma = sigma.reshape(*sigma.shape, *([1] * (x0.dim() - sigma.dim())))
    return sigma * noise + (1.0 - sigma) * x0


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    return noise - x0


def sample_train_indices(shape: tuple[int, ...], generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> Tensor:
    """Logit-normal draw of indices into the training schedule: ``floor(sigmoid(n) * 1000)``."""
    n = torch.randn(shape, generator=generator, device=device)
    return (torch.sigmoid(n) * NUM_TRAIN_TIMESTEPS).long().clamp_(0, NUM_TRAIN_TIMESTEPS - 1)


@dataclass(frozen=True)
class FlowLossConfig:
    clean_context_ratio: float = 0.1  # each frame is clean context with this probability
    condition_dropout: float = 0.1  # label/action ids replaced by the null id (classifier-free guidance)


def condition_dropout(ids: Tensor, null_id: int, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each id independently by ``null_id`` with probability ``p``."""
    if p <= 0:
        return ids
    drop = torch.rand(ids.shape, generator=generator, device=ids.device) < p
    return torch.where(drop, torch.full_like(ids, null_id), ids)


def velocity_error(network: Callable[..., Tensor], x0: Tensor, noise: Tensor, sigma: Tensor, clean: Tensor, *,
                   labels: Tensor | None, actions: Tensor | None, null_id: int | None, dropout: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """The core every frame-level flow-matching loss shares: noise ``x0`` (B, F, ...) to the per-frame
    ``sigma`` (B, F) (clean frames: no noise, timestep ``CLEAN_TIMESTEP``), drop conditions to the
    null id, and return the per-frame MSE of the predicted velocity, (B, F)."""
    sigma = torch.where(clean, torch.zeros_like(sigma), sigma)
    x_t = add_noise(x0, noise, sigma.to(x0.dtype))
    timesteps = torch.where(clean, torch.full_like(sigma, CLEAN_TIMESTEP), sigma * NUM_TRAIN_TIMESTEPS)
    if labels is not None:
        labels = condition_dropout(labels, null_id, dropout, generator)
    if actions is not None:
        actions = condition_dropout(actions, null_id, dropout, generator)
    pred = network(x_t, timesteps, labels=labels, actions=actions)
    return (pred.float() - velocity_target(x0, noise).float()).pow(2).flatten(2).mean(-1)


def flow_matching_loss(network: Callable[..., Tensor], x0: Tensor, *, window: int,
                       cfg: FlowLossConfig = FlowLossConfig(), labels: Tensor | None = None,
                       actions: Tensor | None = None, null_id: int | None = None,
                       num_long_term: int = 0, generator: torch.Generator | None = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:
    """FAR's training loss on latents ``x0`` (B, F, C, h, w).

    Every frame gets its own logit-normal timestep; each frame is independently made clean context
    (timestep ``CLEAN_TIMESTEP``, no noise, no loss) with probability ``clean_context_ratio``.
    The first ``num_long_term`` frames (FAR-Long's long-term context) are always clean. The loss is
    the per-frame MSE of the velocity, averaged over the non-clean frames among the last ``window``
    frames of each video, then over the batch (official trainer). Returns the loss and diagnostics.
    """
    b, f = x0.shape[:2]
    device = x0.device
    idx = sample_train_indices((b, f), generator, device)
    sigma = train_sigmas().to(device)[idx]
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    clean = torch.rand((b, f), generator=generator, device=device) < cfg.clean_context_ratio
    if num_long_term:
        clean[:, :num_long_term] = True
    per_frame = velocity_error(network, x0, noise, sigma, clean, labels=labels, actions=actions,
                               null_id=null_id, dropout=cfg.condition_dropout, generator=generator)
    weight = (~clean).float()
    weight[:, : max(f - window, 0)] = 0.0
    # As officially: a video whose window frames all happen to be clean contributes 0 to the mean.
    loss = ((per_frame * weight).sum(1) / (weight.sum(1) + 1e-9)).mean()
    return loss, {"mse_per_frame": per_frame.detach(), "clean_fraction": clean.float().mean()}
