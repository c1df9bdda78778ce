"""Frame-autoregressive sampling: one frame at a time, each by a few Euler steps of the flow ODE.

Clean frames so far (encoded context, then generated frames) are given with timestep
``CLEAN_TIMESTEP``; the new frame starts from noise. With the KV cache the first network call of a
frame (a *cache step*) processes the frames not cached yet and stores them; the remaining calls run
only the noisy frame against the cache. Classifier-free guidance doubles the batch as
``[unconditional; conditional]`` with the null label / null action at every frame. The arithmetic
follows the official ``FARPipeline.generate`` call for call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from far.cache import MultiLevelKVCache
from far.flow import CLEAN_TIMESTEP, euler_step, inference_schedule
from far.model import FAR


@dataclass(frozen=True)
class SamplerConfig:
    num_steps: int = 50
    guidance_scale: float = 1.0  # 1.0 = no guidance
    use_cache: bool = True
    # Sample with every condition replaced by the null id (FAR's long-video FVD protocol).
    drop_conditions: bool = False


# Called after every network call with (call index, frame index, step index, raw network output).
CallHook = Callable[[int, int, int, Tensor], None]


def _conditions(net: FAR, b: int, labels: Tensor | None, actions: Tensor | None, guided: bool,
                drop: bool) -> tuple[Tensor | None, Tensor | None]:
    cfg = net.cfg
    if cfg.condition == "label":
        if labels is None:
            raise ValueError("this model is label-conditioned: pass labels (B,)")
        if drop:
            labels = torch.full_like(labels, cfg.null_id)
        if guided:
            labels = torch.cat([torch.full_like(labels, cfg.null_id), labels])
        return labels, None
    if cfg.condition == "action":
        if actions is None:
            raise ValueError("this model is action-conditioned: pass actions (B, context + new frames)")
        if drop:
            actions = torch.full_like(actions, cfg.null_id)
        if guided:
            actions = torch.cat([torch.full_like(actions, cfg.null_id), actions])
        return None, actions
    if labels is not None or actions is not None:
        raise ValueError("an unconditional model takes neither labels nor actions")
    return None, None


@torch.no_grad()
def rollout(net: FAR, context: Tensor | None, num_frames: int, sampler: SamplerConfig = SamplerConfig(), *,
            batch_size: int | None = None, latent_shape: tuple[int, int, int] | None = None,
            labels: Tensor | None = None, actions: Tensor | None = None, noise: Tensor | None = None,
            generator: torch.Generator | None = None, on_call: CallHook | None = None,
            latent_dtype: torch.dtype | None = None) -> Tensor:
    """Generate ``num_frames`` latent frames after ``context`` (B, Tc, C, h, w) (None or Tc = 0: from nothing).

    ``actions`` covers context and new frames (B, Tc + num_frames). ``noise`` (B, num_frames, C, h, w)
    replaces the initial noise draw (made once, up front, from ``generator`` on the CPU as the
    official pipeline does). Returns the whole latent sequence (B, Tc + num_frames, C, h, w).

    ``latent_dtype`` (default: the network's parameter dtype) is the dtype the latents live in between
    network calls, as the official pipeline keeps them in the DC-AE's dtype: context, noise and every
    network output are cast to it (``noise_pred.to(latent_model_input.dtype)``), guidance is combined in
    it, and each Euler step is computed in float32 and rounded back to it (diffusers' scheduler). With
    bf16 latents, run the call under ``torch.autocast(..., dtype=torch.bfloat16)`` as FAR's bf16 test
    configs do.
    """
    cfg = net.cfg
    param = next(net.parameters())
    device, dtype = param.device, latent_dtype or param.dtype
    if context is not None and context.shape[1] == 0:
        context = None
    if context is not None:
        b, _, c, h, w = context.shape
    elif noise is not None:
        b, _, c, h, w = noise.shape
    else:
        if batch_size is None or latent_shape is None:
            raise ValueError("without context or noise, give batch_size and latent_shape (C, h, w)")
        b, (c, h, w) = batch_size, latent_shape
    if noise is None:
        noise = torch.randn((b, num_frames, c, h, w), generator=generator, dtype=torch.float32)
    if noise.shape != (b, num_frames, c, h, w):
        raise ValueError(f"noise must have shape {(b, num_frames, c, h, w)}, got {tuple(noise.shape)}")
    noise = noise.to(device, dtype)
    n_ctx = 0 if context is None else context.shape[1]
    if actions is not None and actions.shape != (b, n_ctx + num_frames):
        raise ValueError(f"actions must cover context and new frames: shape {(b, n_ctx + num_frames)}, "
                         f"got {tuple(actions.shape)}")

    guided = sampler.guidance_scale > 1 and cfg.condition != "none" and not sampler.drop_conditions
    labels, actions = _conditions(net, b, labels, actions, guided, sampler.drop_conditions)
    labels = labels.to(device) if labels is not None else None
    actions = actions.to(device) if actions is not None else None
    schedule = inference_schedule(sampler.num_steps)
    sigmas = schedule.sigmas.to(device)
    cache = MultiLevelKVCache.empty(cfg.num_layers) if sampler.use_cache else None
    seq = context.to(device, dtype) if context is not None else noise[:, :0]
    call = 0
    for j in range(num_frames):
        n = n_ctx + j  # absolute index of the frame being generated
        x = noise[:, j:j + 1]
        for i in range(len(schedule)):
            inp = torch.cat([seq, x], dim=1)
            t = torch.full((b, n + 1), CLEAN_TIMESTEP, device=device)
            t[:, -1] = schedule.timesteps[i]
            if guided:
                inp, t = torch.cat([inp, inp]), torch.cat([t, t])
            v = net(inp, t, labels=labels, actions=None if actions is None else actions[:, :n + 1],
                    cache=cache, cache_step=(i == 0 and n > 0), last_frame_only=True)
            if on_call is not None:
                on_call(call, j, i, v)
            call += 1
            v = v.to(dtype)
            if guided:
                v_u, v_c = v.chunk(2)
                v = v_u + sampler.guidance_scale * (v_c - v_u)
            x = euler_step(x, v, sigmas[i], sigmas[i + 1])
        seq = torch.cat([seq, x], dim=1)
    return seq
