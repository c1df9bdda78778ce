"""Per-frame pixel metrics (MSE, PSNR, SSIM) on videos in [0, 1].

Conventions follow the official FAR evaluation (``far/metrics/metric.py``), which calls
torchmetrics per frame: MSE is the mean over (C, H, W); PSNR uses ``data_range`` 1.0;
SSIM uses an 11x11 Gaussian window (sigma 1.5), reflect-pads the image by half a window and
averages the whole SSIM map, which then has the size of the image (torchmetrics 1.6, which the
official evaluation ran; checked against the official per-frame values to 1e-7). With
``crop_border=True`` the map is instead averaged over the windows that lie inside the image only,
which is scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``.

Every function takes float tensors of shape (..., C, H, W) with values in [0, 1] and returns one
value per frame, shape (...), computed in float32 like the reference. Integer frames are refused
(a uint8 frame read as a value in [0, 255] gives PSNR -21 dB instead of 27): convert them with
``x.float() / 255``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def check_float_frames(metric: str, **frames) -> None:
    """Refuse anything but floating-point tensors (the metrics' [0, 1] convention), naming the input."""
    for what, t in frames.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{metric}: {what} must be a torch.Tensor of floats in [0, 1], got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{metric}: {what} must be a float tensor with values in [0, 1], got dtype {t.dtype} "
                            "(convert uint8 frames with x.float() / 255)")


def _check_pair(pred: Tensor, target: Tensor, metric: str) -> None:
    check_float_frames(metric, prediction=pred, target=target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3:
        raise ValueError(f"expected frames of shape (..., C, H, W), got {tuple(pred.shape)}")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per frame: mean over (C, H, W)."""
    _check_pair(pred, target, "mse")
    return (pred.float() - target.float()).pow(2).mean(dim=(-3, -2, -1))


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR per frame in dB; an exact match gives +inf (as torchmetrics does)."""
    _check_pair(pred, target, "psnr")
    err = mse(pred, target)
    return 10.0 * torch.log10(data_range ** 2 / err)


def _gaussian_window(size: int, sigma: float, channels: int, dtype, device) -> Tensor:
    dist = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0, dtype=dtype, device=device)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    g = (g / g.sum()).unsqueeze(0)  # (1, size)
    window = g.t() @ g  # (size, size)
    return window.expand(channels, 1, size, size)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0,
         kernel_size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA,
         crop_border: bool = False) -> Tensor:
    """SSIM per frame with a Gaussian window (torchmetrics' border handling by default).

    Variances are clamped at 0 as torchmetrics does: in flat regions ``E[x^2] - E[x]^2`` rounds
    to slightly negative values in float32, which would otherwise shrink the denominator.
    """
    _check_pair(pred, target, "ssim")
    lead = pred.shape[:-3]
    c, h, w = pred.shape[-3:]
    pad = (kernel_size - 1) // 2
    if h <= pad or w <= pad:
        raise ValueError(f"frames of {h}x{w} are too small for an SSIM window of {kernel_size}")
    x = pred.float().reshape(-1, c, h, w)
    y = target.float().reshape(-1, c, h, w)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    window = _gaussian_window(kernel_size, sigma, c, x.dtype, x.device)
    n = x.shape[0]
    moments = F.conv2d(torch.cat([x, y, x * x, y * y, x * y]), window, groups=c).split(n)
    mu_x, mu_y, xx, yy, xy = moments
    mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
    var_x, var_y, cov = (xx - mu_xx).clamp(min=0.0), (yy - mu_yy).clamp(min=0.0), xy - mu_xy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    smap = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    if crop_border:
        smap = smap[..., pad:-pad, pad:-pad]
    return smap.reshape(n, -1).mean(-1).reshape(lead)


PER_FRAME = {"mse": mse, "psnr": psnr, "ssim": ssim}

__all__ = ["mse", "psnr", "ssim", "check_float_frames", "PER_FRAME"]
