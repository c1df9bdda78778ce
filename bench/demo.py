"""A short, self-checking FAR demo (the placeholder main job until the protocol harness lands).

It trains a tiny action-conditioned FAR for a couple of minutes on the CPU, on procedurally drawn
videos (a square steered left/right by per-frame actions over a fixed texture), in a lossless
pixel-unshuffle latent space, then predicts 8 frames from 4 context frames with and without the KV
cache, and compares the prediction with ground truth and with a repeat-the-last-frame baseline.
Everything is labelled synthetic: no dataset or weights are involved.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from far.flow import flow_matching_loss
from far.model import FAR, FARConfig, count_parameters
from far.sample import SamplerConfig, rollout

MODELS = ("far",)
TASKS = ("dmlab_long",)
RES, UNSHUFFLE, FRAMES, CONTEXT = 32, 4, 12, 4


def synthetic_videos(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, FRAMES, 3, RES, RES) in [0, 1] and actions (n, FRAMES): 0 left, 1 right, 2 stay."""
    yy, xx = torch.meshgrid(torch.arange(RES), torch.arange(RES), indexing="ij")
    texture = torch.stack([0.3 + 0.2 * torch.sin(xx / 3.0), 0.3 + 0.2 * torch.cos(yy / 4.0),
                           0.25 + 0.1 * torch.sin((xx + yy) / 5.0)])
    actions = torch.randint(0, 3, (n, FRAMES), generator=generator)
    pos = torch.randint(8, RES - 8, (n,), generator=generator).float()
    row = torch.randint(6, RES - 10, (n,), generator=generator)
    videos = texture.expand(n, FRAMES, 3, RES, RES).clone()
    for t in range(FRAMES):
        for i in range(n):
            x0 = int(pos[i])
            videos[i, t, :, row[i]:row[i] + 6, x0:x0 + 6] = torch.tensor([0.95, 0.9, 0.2])[:, None, None]
        step = torch.tensor([-3.0, 3.0, 0.0])[actions[:, t]]
        pos = (pos + step).clamp(0, RES - 6)
    return videos, actions


def to_latents(video: torch.Tensor) -> torch.Tensor:
    return F.pixel_unshuffle(video.flatten(0, 1) * 2 - 1, UNSHUFFLE).unflatten(0, video.shape[:2])


def to_pixels(latents: torch.Tensor) -> torch.Tensor:
    return (F.pixel_shuffle(latents.flatten(0, 1), UNSHUFFLE).unflatten(0, latents.shape[:2]) / 2 + 0.5).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).pow(2).flatten(2).mean(-1).clamp_min(1e-10)
    return (10 * torch.log10(1 / mse)).mean().item()


def run_demo(model_name: str, task: str, steps: int = 150, seed: int = 0) -> int:
    if model_name not in MODELS or task not in TASKS:
        import difflib
        bad, pool = (model_name, MODELS) if model_name not in MODELS else (task, TASKS)
        raise SystemExit(f"unknown name {bad!r}; did you mean {difflib.get_close_matches(bad, pool) or list(pool)}?")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = FARConfig(num_layers=4, num_heads=2, head_dim=64, in_channels=3 * UNSHUFFLE ** 2,
                    out_channels=3 * UNSHUFFLE ** 2, patch_size=2, short_term_ctx_winsize=FRAMES,
                    condition="action", num_classes=3)
    model = FAR(cfg)
    print(f"[demo] synthetic data (no dataset, no weights); tiny FAR with {count_parameters(model):,} "
          f"parameters, {RES}x{RES} frames, {FRAMES} frames per clip")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    losses = []
    for step in range(steps):
        video, actions = synthetic_videos(8, g)
        lr = 1e-3 * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss, _ = flow_matching_loss(model.train(), to_latents(video), window=FRAMES, actions=actions,
                                     null_id=cfg.null_id, generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            print(f"[demo] step {step:4d}  loss {loss.item():.4f}")
    train_s = time.perf_counter() - start

    model.eval()
    video, actions = synthetic_videos(4, torch.Generator().manual_seed(seed + 10_000))
    context = to_latents(video[:, :CONTEXT])
    noise = torch.randn(4, FRAMES - CONTEXT, *context.shape[2:], generator=torch.Generator().manual_seed(1))
    out, times = {}, {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        out[use_cache] = rollout(model, context, FRAMES - CONTEXT,
                                 SamplerConfig(num_steps=10, guidance_scale=1.5, use_cache=use_cache),
                                 actions=actions, noise=noise)
        times[use_cache] = time.perf_counter() - t0
    diff = (out[True] - out[False]).abs().max().item()
    pred = to_pixels(out[True])[:, CONTEXT:]
    truth = video[:, CONTEXT:]
    repeat = video[:, CONTEXT - 1:CONTEXT].expand_as(truth)
    row = {"model": "far (tiny, demo)", "task": f"{task} (synthetic demo, not the protocol)",
           "psnr": round(psnr(pred, truth), 2), "psnr_repeat_last_frame": round(psnr(repeat, truth), 2),
           "loss_first10": round(sum(losses[:10]) / 10, 4), "loss_last10": round(sum(losses[-10:]) / 10, 4),
           "train_s": round(train_s, 1), "cache_speedup": round(times[False] / times[True], 2),
           "cache_vs_nocache_max_abs_diff": f"{diff:.1e}"}
    print("| " + " | ".join(row) + " |")
    print("| " + " | ".join(str(v) for v in row.values()) + " |")
    if not diff < 1e-3:
        print("[demo] ERROR: cached and uncached rollouts disagree")
        return 1
    return 0
