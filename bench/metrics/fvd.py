"""Fréchet Video Distance as FAR computes it (StyleGAN-V's TorchScript I3D).

* Network: ``i3d_torchscript.pt`` (StyleGAN-V's export of the TF-Hub Kinetics-400 I3D), loaded
  with ``torch.jit.load`` from the asset store (asset ``i3d_torchscript``); never downloaded here.
* Input convention (FAR ``far/metrics/fvd.py`` and ``PROTOCOLS.md``): videos (B, 3, T, H, W)
  float32 in [-1, 1], called with ``rescale=False, resize=True, return_features=True``; the
  network resizes to 224 x 224 itself and returns the 400 logits before the softmax.
  (StyleGAN-V feeds [0, 255] with ``rescale=True``, which the network maps by ``x / 255 * 2 - 1``
  to the same [-1, 1] input.) Our videos arrive as (B, T, 3, H, W) in [0, 1]: ``2 x - 1`` and
  a permute give FAR's input. Batches of 32 videos, as FAR.
* Statistics: mean and covariance (``np.cov``, ddof 1, as FAR) in float64; the distance
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))`` as FAR, but with the trace term from symmetric
  eigendecompositions (``frechet_distance``): FAR's ``scipy.linalg.sqrtm(S1 @ S2)`` is the same
  number where it is well conditioned, and garbage with fewer videos than 400 on some SciPy versions.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .errors import require_asset
from .pixel import check_float_frames

ASSET = "i3d_torchscript"
I3D_KWARGS = {"rescale": False, "resize": True, "return_features": True}
FEATURE_DIM = 400
BATCH_SIZE = 32  # FAR's extract_features_in_batches


# ----------------------------------------------------------------------------- Fréchet distance

def _check_stats(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"mismatched Gaussian statistics: mu {mu1.shape}/{mu2.shape}, "
                         f"sigma {sigma1.shape}/{sigma2.shape}")
    for what, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise ValueError(f"Fréchet distance: {what} has {int((~np.isfinite(a)).sum())} non-finite "
                             "entries (NaN/Inf); the features it was computed from are not finite")
    return mu1, sigma1, mu2, sigma2


def _psd_sqrt(sigma: np.ndarray, what: str) -> np.ndarray:
    """The symmetric square root of a covariance; eigenvalues at round-off level count as 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    top = max(float(w.max()), 0.0)
    if w.min() < -1e-6 * top:
        raise ValueError(f"Fréchet distance: {what} is not a covariance matrix (eigenvalue {w.min():.3g} "
                         f"< 0, largest {top:.3g})")
    w = np.where(w > top * sigma.shape[0] * _EPS, w, 0.0)
    return (v * np.sqrt(w)) @ v.T


_EPS = np.finfo(np.float64).eps


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2)``, the formula of FAR/StyleGAN-V, with the
    trace term computed from symmetric eigendecompositions only::

        tr sqrtm(S1 S2) = sum_i sqrt(lambda_i),   lambda = eig(S1^1/2 S2 S1^1/2)  (>= 0)

    (``S1 S2`` and ``S1^1/2 S2 S1^1/2`` are similar). Eigenvalues at round-off level (below
    ``d * eps * largest``) count as 0. This is exact for the rank-deficient covariances of fewer
    samples than feature dimensions (FVD with N <= 400 videos), where ``scipy.linalg.sqrtm(S1 @ S2)``
    of the non-symmetric product returns finite garbage on some SciPy versions (1.11: -1e7 to 2e14
    for N <= 64). Agrees with the sqrtm form on well-conditioned statistics. Round-off below 0
    is returned as 0.0; non-finite inputs raise ``ValueError``.
    """
    mu1, sigma1, mu2, sigma2 = _check_stats(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    root1 = _psd_sqrt(sigma1, "sigma1")
    _psd_sqrt(sigma2, "sigma2")  # the same check for the second covariance
    m = root1 @ ((sigma2 + sigma2.T) / 2) @ root1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    top = max(float(ev.max()), 0.0)
    tr_covmean = float(np.sqrt(np.where(ev > top * m.shape[0] * _EPS, ev, 0.0)).sum())
    value = float(diff @ diff) + float(np.trace(sigma1)) + float(np.trace(sigma2)) - 2 * tr_covmean
    return max(value, 0.0)


# the stable form is the implementation; the old name stays for callers
frechet_distance_eig = frechet_distance


# ----------------------------------------------------------------------------- feature statistics

class FeatureStats:
    """Streaming mean and covariance of feature vectors in float64 (Chan et al. pairwise merge).

    ``update`` takes (n, d) batches; the features themselves are not kept. ``cov`` uses
    ``ddof=1`` by default, as ``np.cov`` in FAR (StyleGAN-V's own stats divide by n: ``ddof=0``).
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.n = 0
        self._mean = None if dim is None else np.zeros(dim)
        self._scatter = None if dim is None else np.zeros((dim, dim))  # sum of centred outer products

    def update(self, feats) -> "FeatureStats":
        x = feats.detach().cpu().double().numpy() if isinstance(feats, Tensor) else np.asarray(feats, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (n, d), got shape {x.shape}")
        if not np.isfinite(x).all():
            rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
            raise ValueError(f"features of {len(rows)} of {x.shape[0]} videos are not finite (NaN/Inf; rows "
                             f"{rows[:5].tolist()}): the videos or the feature network produced NaN/Inf")
        if self.dim is None:
            self.dim = x.shape[1]
            self._mean, self._scatter = np.zeros(self.dim), np.zeros((self.dim, self.dim))
        if x.shape[1] != self.dim:
            raise ValueError(f"feature dimension {x.shape[1]} != {self.dim}")
        nb = x.shape[0]
        if nb == 0:
            return self
        mean_b = x.mean(0)
        xc = x - mean_b
        scatter_b = xc.T @ xc
        n = self.n + nb
        delta = mean_b - self._mean
        self._scatter += scatter_b + np.outer(delta, delta) * (self.n * nb / n)
        self._mean += delta * (nb / n)
        self.n = n
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.n == 0:
            return self
        if self.n == 0:
            self.dim, self.n = other.dim, other.n
            self._mean, self._scatter = other._mean.copy(), other._scatter.copy()
            return self
        if other.dim != self.dim:
            raise ValueError(f"feature dimension {other.dim} != {self.dim}")
        n = self.n + other.n
        delta = other._mean - self._mean
        self._scatter += other._scatter + np.outer(delta, delta) * (self.n * other.n / n)
        self._mean += delta * (other.n / n)
        self.n = n
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError("no features accumulated")
        return self._mean.copy()

    def cov(self, ddof: int = 1) -> np.ndarray:
        if self.n - ddof <= 0:
            raise ValueError(f"need more than {ddof} feature vectors for a covariance, have {self.n}")
        return self._scatter / (self.n - ddof)

    @classmethod
    def of(cls, feats) -> "FeatureStats":
        return cls().update(feats)


def fvd_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    return frechet_distance(fake.mean, fake.cov(), real.mean, real.cov())


def fvd(real_feats, fake_feats) -> float:
    """FVD between two feature sets (n, d), as FAR's ``compute_fvd`` (np.cov, sqrtm)."""
    return fvd_from_stats(FeatureStats.of(real_feats), FeatureStats.of(fake_feats))


# ----------------------------------------------------------------------------- the I3D network

@lru_cache(maxsize=2)
def _load_i3d(path: str, size: int, mtime_ns: int, ctime_ns: int, device: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        return torch.jit.load(path, map_location=device).eval()


def i3d_detector(device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """The asset store's I3D, loaded only after its sha256 matched the pin (``MetricUnavailable``
    otherwise: missing, or "checksum mismatch" with the repair command)."""
    path = require_asset("fvd", ASSET)
    st = path.stat()
    return _load_i3d(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, str(torch.device(device)))


class I3DFeatures:
    """I3D features of videos (B, T, 3, H, W) in [0, 1] -> (B, 400) float64, FAR's convention.

    The network is the asset store's verified I3D (:func:`i3d_detector`), or ``detector``: a module
    given explicitly (e.g. a test's stand-in) with the I3D's call signature
    ``detector(x, rescale=False, resize=True, return_features=True)``. There is no file-path
    argument: files are loaded through the checksum-verified store only.
    """

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = BATCH_SIZE,
                 detector: torch.nn.Module | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.detector = detector if detector is not None else i3d_detector(self.device)

    @staticmethod
    def network_input(videos: Tensor) -> Tensor:
        """(B, T, 3, H, W) in [0, 1] -> the network's (B, 3, T, H, W) float32 in [-1, 1]."""
        _check_videos(videos)
        return (videos.float() * 2 - 1).permute(0, 2, 1, 3, 4).contiguous()

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> torch.Tensor:
        _check_videos(videos)
        if videos.shape[1] < 2:
            raise ValueError("FVD needs videos of more than 1 frame")
        out = []
        for i in range(0, videos.shape[0], self.batch_size):
            x = self.network_input(videos[i:i + self.batch_size].to(self.device))
            out.append(self.detector(x, **I3D_KWARGS).double().cpu())
        if not out:
            return torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
        return torch.cat(out)

    def stats(self, videos: Tensor, into: FeatureStats | None = None) -> FeatureStats:
        """Accumulate the features of ``videos`` into ``into`` (a new ``FeatureStats`` by default)."""
        into = into if into is not None else FeatureStats()
        return into.update(self(videos))


def _check_videos(videos: Tensor) -> None:
    check_float_frames("fvd", videos=videos)
    if videos.dim() != 5 or videos.shape[2] != 3:
        raise ValueError(f"expected videos (B, T, 3, H, W), got {tuple(videos.shape)}")


# ----------------------------------------------------------------------------- protocol helpers

def fvd_clips(videos: Tensor, include_context: bool, context_frames: int, min_frames: int) -> Tensor:
    """The frames FVD sees under a protocol: (V, T, C, H, W) -> the whole clip, or the predicted
    frames after ``context_frames`` only; raises for clips shorter than ``min_frames`` (or < 2)."""
    if videos.dim() != 5:
        raise ValueError(f"expected videos (V, T, C, H, W), got {tuple(videos.shape)}")
    if not 0 <= context_frames <= videos.shape[1]:
        raise ValueError(f"context_frames {context_frames} not in [0, {videos.shape[1]}]")
    clips = videos if include_context else videos[:, context_frames:]
    need = max(min_frames, 2)
    if clips.shape[1] < need:
        what = "whole clips" if include_context else "predicted frames"
        raise ValueError(f"FVD needs clips of at least {need} frames; the {what} have {clips.shape[1]}")
    return clips


def fvd_videos(real: Tensor, fake: Tensor, device: torch.device | str = "cpu",
               batch_size: int = BATCH_SIZE, detector: torch.nn.Module | None = None) -> float:
    """FVD between two sets of videos (V, T, 3, H, W) float in [0, 1] (FAR: generated vs real);
    ``detector`` as in :class:`I3DFeatures` (default: the store's verified I3D)."""
    check_float_frames("fvd", real=real, fake=fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real clips {tuple(real.shape[1:])} and fake clips {tuple(fake.shape[1:])} differ")
    net = I3DFeatures(device, batch_size, detector=detector)
    return fvd_from_stats(net.stats(real), net.stats(fake))


__all__ = ["frechet_distance", "frechet_distance_eig", "FeatureStats", "fvd", "fvd_from_stats",
           "I3DFeatures", "i3d_detector", "fvd_clips", "fvd_videos", "I3D_KWARGS", "FEATURE_DIM", "ASSET"]
