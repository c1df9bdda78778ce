"""Metrics and their reductions.

* pixel metrics per frame: ``mse``, ``psnr``, ``ssim`` (``pixel.py``)
* reductions over frames, trajectories, videos and seeds (``reduce.py``)
* ``far_video_metrics``: the official FAR evaluation of (B, N, F, C, H, W) videos
* ``lpips.py`` (LPIPS, AlexNet v0.1), ``fvd.py`` (StyleGAN-V I3D FVD), ``earthnet.py``
  (GreenEarthNet scores, NDVI PSNR): imported on first use, as they pull in heavier packages
* ``MetricUnavailable``: raised when a metric network is not in the asset store, or is not the
  pinned file ("checksum mismatch") (``errors.py``)
* every entry point takes float frames in [0, 1] and refuses integer ones (``check_float_frames``)
"""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import MetricUnavailable
from .pixel import PER_FRAME, check_float_frames, mse, psnr, ssim
from .reduce import (HIGHER_IS_BETTER, Spread, mean_over_videos, over_seeds, trajectory_reduce,
                     video_values)


def per_frame_metric(name: str, sample: Tensor, gt: Tensor, context_length: int = 0) -> Tensor:
    """Per-frame values of ``name`` for frames with index >= ``context_length``: (..., F - Tc).

    ``sample`` and ``gt`` are float videos (..., F, C, H, W) in [0, 1]; integer frames are refused.
    """
    if name not in PER_FRAME:
        raise ValueError(f"no per-frame metric {name!r}; known: {sorted(PER_FRAME)}")
    check_float_frames(name, sample=sample, gt=gt)
    if sample.shape != gt.shape:
        raise ValueError(f"sample shape {tuple(sample.shape)} != ground-truth shape {tuple(gt.shape)}")
    if sample.dim() < 4:
        raise ValueError(f"expected videos (..., F, C, H, W), got {tuple(sample.shape)}")
    if not 0 <= context_length < sample.shape[-4]:
        raise ValueError(f"context_length {context_length} must be in [0, {sample.shape[-4]})")
    return PER_FRAME[name](sample[..., context_length:, :, :, :], gt[..., context_length:, :, :, :])


@torch.no_grad()
def far_video_metrics(sample: Tensor, gt: Tensor, context_length: int,
                      metrics: tuple[str, ...] = ("mse", "psnr", "ssim")) -> dict[str, float]:
    """The official FAR evaluation of ``sample`` against ``gt``, both (B, N, F, C, H, W) in [0, 1].

    Per frame after the context, mean over frames, **max** over the N trajectories (for every
    metric, as the official code does), mean over the batch.
    """
    check_float_frames("far_video_metrics", sample=sample, gt=gt)
    if sample.dim() != 6:
        raise ValueError(f"far_video_metrics expects (B, N, F, C, H, W), got {tuple(sample.shape)}")
    out = {}
    for name in metrics:
        per_video = video_values(per_frame_metric(name, sample, gt, context_length))
        out[name] = mean_over_videos(trajectory_reduce(per_video, "max", name))
    return out


_LAZY = {
    "lpips_per_frame": "lpips",
    "fvd_videos": "fvd", "fvd_clips": "fvd", "frechet_distance": "fvd",
    "FeatureStats": "fvd", "I3DFeatures": "fvd", "i3d_detector": "fvd", "lpips_model": "lpips",
    "build_lpips": "lpips",
    "greenearthnet_scores": "earthnet", "GreenEarthNetScorer": "earthnet", "ndvi_psnr": "earthnet",
    "ndvi_ssim": "earthnet",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["mse", "psnr", "ssim", "check_float_frames", "per_frame_metric", "far_video_metrics", "trajectory_reduce",
           "over_seeds", "Spread", "video_values", "mean_over_videos", "HIGHER_IS_BETTER",
           "MetricUnavailable", *_LAZY]
