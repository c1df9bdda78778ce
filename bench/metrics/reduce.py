"""Reductions: per frame -> per video -> over trajectories -> over videos -> over seeds.

Protocols differ in how trajectories are reduced. FAR's official evaluation takes the *max* over
trajectories for mse, psnr and ssim alike (the worst trajectory for mse, the best one for the
others); MCVD/ExtDM-style "best-of-N" takes the best trajectory per metric (max psnr/ssim, min
lpips/mse). ``trajectory_reduce`` implements both, by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ndvi_psnr": True, "ndvi_ssim": True, "r2": True, "nse": True,
                    "outperformance": True, "mse": False, "lpips": False, "fvd": False,
                    "rmse": False}
TRAJECTORY_REDUCTIONS = ("best", "max", "min", "mean")


def trajectory_reduce(values: Tensor, how: str, metric: str) -> Tensor:
    """Reduce per-trajectory values (..., N) over the last axis."""
    if how not in TRAJECTORY_REDUCTIONS:
        raise ValueError(f"unknown trajectory reduction {how!r}; choose one of {TRAJECTORY_REDUCTIONS}")
    if how == "best":
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"'best' is undefined for metric {metric!r}: its direction is unknown")
        how = "max" if HIGHER_IS_BETTER[metric] else "min"
    if how == "max":
        return values.amax(-1)
    if how == "min":
        return values.amin(-1)
    return values.mean(-1)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (std is 0.0 for a single seed)."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


def over_seeds(values: list[float]) -> Spread:
    if not values:
        raise ValueError("no values to reduce over seeds")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Spread(mean, std, n, tuple(values))


def video_values(per_frame: Tensor) -> Tensor:
    """Per-frame values (..., F) -> per-video values (...,): the mean over frames."""
    if per_frame.shape[-1] == 0:
        raise ValueError("no frames to average: every frame is a context frame")
    return per_frame.mean(-1)


def mean_over_videos(values: Tensor) -> float:
    return float(values.double().mean())


__all__ = ["trajectory_reduce", "over_seeds", "Spread", "video_values", "mean_over_videos",
           "HIGHER_IS_BETTER", "TRAJECTORY_REDUCTIONS"]
