"""GreenEarthNet (EarthNet2021x, "en21x") scores, as the official ``eval.py`` defines them.

Per minicube (``compute_metrics``), per pixel over the Tp target steps, with the target NDVI
NaN wherever the clear-sky mask is false and the prediction clipped to [-1, 1], NaN -> 0.5:

* ``nnse = 1 / (2 - NSE)``, ``NSE = 1 - sum (t - p)^2 / sum (t - mean t)^2`` (NaN steps skipped)
* ``rmse`` over the target steps, and over steps [0, 5), [5, 10), ... (``rmse_0_5`` ...)
* ``r``: Pearson correlation over the steps where the target is valid
* ``bias = mean(t) - mean(p on valid steps)``, ``sigma_targ`` (std, ddof 0), ``n_obs``
* the high-quality vegetation subset: ``landcover < 41`` (ESA WorldCover tree 10, shrub 20,
  grass 30, crop 40), ``min NDVI over the whole cube > 0``, ``n_obs >= 10`` in the target,
  ``>= 3`` valid context observations, ``sigma_targ > 0.1``.

Over the test set (``summarize_scores``): mean per (cube, landcover) group, then mean per
landcover, then mean over landcovers (NaN skipped at every stage, as pandas does):
``nse = 2 - 1 / mean(nnse)``, ``rmse``, ``r2 = mean(r^2)``, ``biasabs = mean |bias|``, each also
per landcover (``nse_forest`` ...). ``outperformance`` against a comparison model (Climatology in
the paper): per pixel gains in RMSE (> 0.01), NSE (``1/nnse_ref - 1/nnse``, > 0.05), R^2 (> 0.05)
and |bias| (> 0.01), averaged per (cube, landcover) group; a group outperforms when more than 2
of the 4 gains pass; the score is the fraction of such groups (the paper prints it in %).

Computed in float64 (the official code runs in float32 through xarray). One deliberate
difference: where the prediction is constant over the valid steps (persistence-like models),
Pearson r is 0/0; the official float32 arithmetic returns round-off noise (|r| ~ 1e-6) or NaN
there, which averages to R^2 = 0.00; we return r = 0 exactly.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

CLEAR_SCL = (1, 2, 4, 5, 6, 7)  # Sentinel-2 scene classes counted as clear (official eval)
LANDCOVER_NAMES = {10: "forest", 20: "shrub", 30: "grass", 40: "crop"}
VEGETATION_MAX_LANDCOVER = 41  # landcover < 41
CONTEXT_FRAMES = 10
RMSE_WINDOW = 5
PRED_FILL = 0.5  # official: prediction NaN -> 0.5


# ----------------------------------------------------------------------------- inputs

def ndvi(nir, red):
    """NDVI = (B8A - B04) / (B8A + B04 + 1e-8), clipped to [-1, 1] (NaN stays NaN)."""
    nir, red = np.asarray(nir, np.float64), np.asarray(red, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((nir - red) / (nir + red + 1e-8), -1, 1)


def clear_sky(dlmask, scl):
    """Official validity mask: ``s2_dlmask < 1`` and ``s2_SCL`` in {1, 2, 4, 5, 6, 7} (NaN -> False)."""
    dlmask, scl = np.asarray(dlmask), np.asarray(scl)
    with np.errstate(invalid="ignore"):
        return (dlmask < 1) & np.isin(scl, CLEAR_SCL)


def cube_targets(ds, first: int = 4, step: int = 5) -> dict[str, np.ndarray]:
    """Target NDVI, clear-sky mask and landcover of an opened minicube (xarray Dataset).

    Sentinel-2 frames are ``time[4::5]`` (30 for a 150-day cube: 10 context + 20 target).
    Returns ``ndvi`` (T, H, W) float64 (not yet masked), ``valid`` (T, H, W) bool, ``landcover``
    (H, W) and ``time`` (T,). The official code counts observations on the daily axis; on real
    cubes the masks are NaN off the 5-daily grid, so the counts agree.
    """
    s2 = ds.isel(time=slice(first, None, step))
    return {"ndvi": ndvi(s2["s2_B8A"].values, s2["s2_B04"].values),
            "valid": clear_sky(s2["s2_dlmask"].values, s2["s2_SCL"].values),
            "landcover": np.asarray(ds["esawc_lc"].values),
            "time": s2["time"].values}


# ----------------------------------------------------------------------------- per pixel

@dataclass
class PixelScores:
    """Per-pixel scores of one cube, arrays (H, W) (``rmse_windows``: (K, H, W))."""

    nnse: np.ndarray
    rmse: np.ndarray
    rmse_windows: np.ndarray
    r: np.ndarray
    bias: np.ndarray
    sigma_targ: np.ndarray
    sigma_pred: np.ndarray
    n_obs: np.ndarray
    n_obs_full: np.ndarray
    min_ndvi_targ: np.ndarray
    landcover: np.ndarray

    @property
    def nse(self) -> np.ndarray:
        return 2 - 1 / self.nnse

    @property
    def hq(self) -> np.ndarray:
        """The official high-quality vegetation subset (NaN comparisons are False)."""
        with np.errstate(invalid="ignore"):
            return ((self.landcover < VEGETATION_MAX_LANDCOVER) & (self.min_ndvi_targ > 0.0)
                    & (self.n_obs >= 10) & ((self.n_obs_full - self.n_obs) >= 3)
                    & (self.sigma_targ > 0.1))

    def window_names(self) -> list[str]:
        return [f"rmse_{i * RMSE_WINDOW}_{(i + 1) * RMSE_WINDOW}" for i in range(len(self.rmse_windows))]


def _nanmean(x, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def pixel_scores(pred, target, valid, landcover, context_frames: int = CONTEXT_FRAMES) -> PixelScores:
    """Official per-pixel scores of one cube.

    pred (Tp, H, W) predicted NDVI for the target steps; target (Tc + Tp, H, W) NDVI of the whole
    cube (context and target; values where ``valid`` is false are ignored); valid (Tc + Tp, H, W)
    clear-sky mask; landcover (H, W) ESA WorldCover classes.
    """
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    valid = np.asarray(valid, bool)
    landcover = np.asarray(landcover, np.float64)
    if target.ndim != 3 or valid.shape != target.shape:
        raise ValueError(f"target {target.shape} and valid {valid.shape} must both be (T, H, W)")
    tp = target.shape[0] - context_frames
    if pred.shape != (tp, *target.shape[1:]):
        raise ValueError(f"prediction {pred.shape} must cover the {tp} steps after {context_frames} "
                         f"context frames of a target {target.shape}")
    if landcover.shape != target.shape[1:]:
        raise ValueError(f"landcover {landcover.shape} != frame size {target.shape[1:]}")

    t_full = np.where(valid, target, np.nan)
    t = t_full[context_frames:]
    mask = valid[context_frames:]
    p = np.nan_to_num(np.clip(pred, -1, 1), nan=PRED_FILL)

    err2 = (t - p) ** 2  # NaN where the target is invalid
    n_valid = np.isfinite(t).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t_mean = np.nanmean(t, 0)
        sse = np.nansum(err2, 0)
        sst = np.nansum((t - t_mean) ** 2, 0)
        nnse = 1 / (2 - (1 - sse / sst))
        nnse = np.where(n_valid > 0, nnse, np.nan)  # xarray: sum of nothing is 0 -> 0/0
        rmse = np.sqrt(np.nanmean(err2, 0))
        windows = np.stack([np.sqrt(np.nanmean(err2[i:i + RMSE_WINDOW], 0))
                            for i in range(0, tp, RMSE_WINDOW)])
        p_valid = np.where(np.isfinite(t), p, np.nan)
        p_mean = np.nanmean(p_valid, 0)
        dt, dp = t - t_mean, p_valid - p_mean
        cov = np.nanmean(dt * dp, 0)
        sd_t = np.sqrt(np.nanmean(dt ** 2, 0))
        sd_p = np.sqrt(np.nanmean(dp ** 2, 0))
        r = cov / (sd_t * sd_p)
        r = np.where((sd_p == 0) & (sd_t > 0), 0.0, r)  # constant prediction: see module doc
        p_masked = np.where(mask, p, np.nan)
        bias = t_mean - np.nanmean(p_masked, 0)
        sigma_pred = np.nanstd(p_masked, 0)
        min_ndvi = np.nanmin(t_full, 0)
    return PixelScores(nnse=nnse, rmse=rmse, rmse_windows=windows, r=r, bias=bias,
                       sigma_targ=sd_t, sigma_pred=sigma_pred, n_obs=mask.sum(0),
                       n_obs_full=valid.sum(0), min_ndvi_targ=min_ndvi, landcover=landcover)


# ----------------------------------------------------------------------------- aggregation

GROUP_SCORES = ("nnse", "rmse", "r2", "biasabs")
GAINS = ("gain_nnse", "gain_R2", "gain_rmse", "gain_biasabs")
GAIN_THRESHOLDS = {"gain_rmse": 0.01, "gain_nnse": 0.05, "gain_R2": 0.05, "gain_biasabs": 0.01}


@dataclass
class Group:
    """Means over the high-quality pixels of one (cube, landcover) group."""

    cube: str
    landcover: float
    n_pixels: int
    values: dict[str, float]


def cube_groups(cube: str, scores: PixelScores, reference: PixelScores | None = None,
                subset_hq: bool = True) -> list[Group]:
    """Per (cube, landcover) means of the per-pixel scores (and gains over ``reference``)."""
    keep = scores.hq if subset_hq else np.ones(scores.landcover.shape, bool)
    per_pixel = {"nnse": scores.nnse, "rmse": scores.rmse, "r2": scores.r ** 2,
                 "biasabs": np.abs(scores.bias)}
    per_pixel.update(zip(scores.window_names(), scores.rmse_windows))
    if reference is not None:
        per_pixel.update({
            "gain_nnse": 1 / reference.nnse - 1 / scores.nnse,
            "gain_R2": scores.r ** 2 - reference.r ** 2,
            "gain_rmse": reference.rmse - scores.rmse,
            "gain_biasabs": np.abs(reference.bias) - np.abs(scores.bias),
        })
    groups = []
    lc = scores.landcover
    for value in np.unique(lc[keep & np.isfinite(lc)]):
        sel = keep & (lc == value)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = {k: float(_nanmean(v[sel])) for k, v in per_pixel.items()}
        groups.append(Group(cube, float(value), int(sel.sum()), values))
    return groups


class GreenEarthNetScorer:
    """Accumulates cubes one at a time; ``result()`` gives the official dataset scores."""

    def __init__(self, context_frames: int = CONTEXT_FRAMES, subset_hq: bool = True):
        self.context_frames = context_frames
        self.subset_hq = subset_hq
        self.groups: list[Group] = []
        self.cubes: list[str] = []
        self._with_reference: bool | None = None

    def add(self, cube: str, pred, target, valid, landcover, reference=None) -> PixelScores:
        """Score one cube; ``reference`` is the comparison model's (climatology's) prediction."""
        if cube in self.cubes:
            raise ValueError(f"cube {cube!r} was already added")
        has_ref = reference is not None
        if self._with_reference is not None and has_ref != self._with_reference:
            raise ValueError("give a reference prediction for every cube or for none")
        self._with_reference = has_ref
        scores = pixel_scores(pred, target, valid, landcover, self.context_frames)
        ref = pixel_scores(reference, target, valid, landcover, self.context_frames) if has_ref else None
        self.groups.extend(cube_groups(cube, scores, ref, self.subset_hq))
        self.cubes.append(cube)
        return scores

    def _per_landcover(self, key: str) -> dict[float, float]:
        by_lc: dict[float, list[float]] = {}
        for g in self.groups:
            by_lc.setdefault(g.landcover, []).append(g.values[key])
        return {lc: float(_nanmean(np.array(v))) for lc, v in sorted(by_lc.items())}

    def result(self) -> dict[str, float]:
        if not self.groups:
            raise ValueError(f"no high-quality vegetation pixels in {len(self.cubes)} cube(s): "
                             "every score is undefined (the official summary fails here too)")
        per_lc = {k: self._per_landcover(k) for k in self.groups[0].values}
        mean = {k: float(_nanmean(np.array(list(v.values())))) for k, v in per_lc.items()}
        out = {"nse": 2 - 1 / mean["nnse"], "rmse": mean["rmse"], "r2": mean["r2"],
               "biasabs": mean["biasabs"]}
        for lc, name in LANDCOVER_NAMES.items():
            nnse = per_lc["nnse"].get(float(lc), np.nan)
            out[f"nse_{name}"] = 2 - 1 / nnse
            for k in ("rmse", "r2", "biasabs"):
                out[f"{k}_{name}"] = per_lc[k].get(float(lc), np.nan)
        out.update({k: v for k, v in mean.items() if k.startswith("rmse_")})
        if self._with_reference:
            for k in GAINS:
                out[f"{k}_mean"] = mean[k]
            wins = [sum(g.values[k] > GAIN_THRESHOLDS[k] for k in GAINS) > 2 for g in self.groups]
            out["outperformance"] = float(np.mean(wins))
        out.update({"n_cubes": len(self.cubes), "n_groups": len(self.groups),
                    "n_pixels": sum(g.n_pixels for g in self.groups)})
        return {k: float(v) for k, v in out.items()}


def greenearthnet_scores(pred, target, valid, landcover, reference=None,
                         context_frames: int = CONTEXT_FRAMES, cube_ids=None,
                         subset_hq: bool = True) -> dict[str, float]:
    """Official scores over a batch of cubes: pred (N, Tp, H, W), target and valid (N, T, H, W),
    landcover (N, H, W), optional reference (climatology) predictions (N, Tp, H, W)."""
    pred = np.asarray(pred)
    n = pred.shape[0]
    ids = list(cube_ids) if cube_ids is not None else [str(i) for i in range(n)]
    scorer = GreenEarthNetScorer(context_frames, subset_hq)
    for i in range(n):
        scorer.add(ids[i], pred[i], target[i], valid[i], landcover[i],
                   None if reference is None else reference[i])
    return scorer.result()


# ----------------------------------------------------------------------------- PSNR of NDVI

def ndvi_psnr(pred, target, valid=None, data_range: float = 2.0) -> np.ndarray:
    """PSNR of NDVI per frame over the valid pixels: (..., T, H, W) -> (..., T).

    Our convention (the published "PSNR(NDVI)" protocol is unknown): prediction clipped to
    [-1, 1] with NaN -> 0.5 as the official scores do, MSE over the clear-sky pixels of the
    frame, peak = ``data_range`` (2, the NDVI range). Frames without a valid pixel are NaN;
    an exact match is +inf.
    """
    p = np.nan_to_num(np.clip(np.asarray(pred, np.float64), -1, 1), nan=PRED_FILL)
    t = np.asarray(target, np.float64)
    ok = np.isfinite(t) if valid is None else (np.asarray(valid, bool) & np.isfinite(t))
    if p.shape != t.shape or ok.shape != t.shape:
        raise ValueError(f"pred {p.shape}, target {t.shape} and valid {ok.shape} must match")
    err2 = np.where(ok, (p - np.where(ok, t, 0.0)) ** 2, 0.0).sum((-2, -1))
    count = ok.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.where(count > 0, err2 / np.maximum(count, 1), np.nan)
        return 10 * np.log10(data_range ** 2 / mse)


def video_ndvi_psnr(pred, target, valid=None, data_range: float = 2.0) -> np.ndarray:
    """Per video: the mean of ``ndvi_psnr`` over frames that have valid pixels: (..., T, H, W) -> (...)."""
    return _nanmean(ndvi_psnr(pred, target, valid, data_range), axis=-1)


# ----------------------------------------------------------------------------- SSIM of NDVI

SSIM_KERNEL_SIZE, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def ndvi_ssim(pred, target, valid=None, data_range: float = 2.0) -> np.ndarray:
    """SSIM of NDVI per frame on the clear-sky pixels: (..., T, H, W) -> (..., T).

    Our convention (like ``ndvi_psnr``, the published protocol is unknown): prediction clipped to
    [-1, 1] with NaN -> 0.5; the usual SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
    ``data_range`` 2 for NDVI) with every local mean, variance and covariance taken over the valid
    pixels of the window only (normalised convolution: the window weights renormalised over the
    valid pixels; pixels outside the frame count as not valid), and the SSIM map averaged over the
    valid pixels. So clouded or missing pixels never enter, whatever either image holds there; with
    every pixel valid, the map inside the border equals the standard one. Frames without a valid
    pixel are NaN.
    """
    import torch
    import torch.nn.functional as F

    p = np.nan_to_num(np.clip(np.asarray(pred, np.float64), -1, 1), nan=PRED_FILL)
    t = np.asarray(target, np.float64)
    ok = np.isfinite(t) if valid is None else (np.asarray(valid, bool) & np.isfinite(t))
    if p.shape != t.shape or ok.shape != t.shape or t.ndim < 2:
        raise ValueError(f"pred {p.shape}, target {t.shape} and valid {ok.shape} must match and be (..., H, W)")
    lead, (h, w) = t.shape[:-2], t.shape[-2:]
    m = torch.from_numpy(ok.reshape(-1, 1, h, w).astype(np.float64))
    x = torch.from_numpy(p.reshape(-1, 1, h, w)) * m
    y = torch.from_numpy(np.where(ok, t, 0.0).reshape(-1, 1, h, w))
    half = (SSIM_KERNEL_SIZE - 1) / 2
    g = torch.exp(-((torch.arange(SSIM_KERNEL_SIZE, dtype=torch.float64) - half) / SSIM_SIGMA) ** 2 / 2)
    window = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    pad = SSIM_KERNEL_SIZE // 2

    def conv(a):
        return F.conv2d(a, window, padding=pad)

    weight = conv(m)
    norm = torch.where(weight > 0, weight, torch.ones_like(weight))
    mu_x, mu_y = conv(x) / norm, conv(y) / norm
    var_x = conv(x * x) / norm - mu_x ** 2
    var_y = conv(y * y) / norm - mu_y ** 2
    cov = conv(x * y) / norm - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    count = m.sum((-3, -2, -1))
    total = (smap * m).sum((-3, -2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count.numpy() > 0, total.numpy() / np.maximum(count.numpy(), 1), np.nan)
    return out.reshape(lead)


def video_ndvi_ssim(pred, target, valid=None, data_range: float = 2.0) -> np.ndarray:
    """Per video: the mean of ``ndvi_ssim`` over frames that have valid pixels: (..., T, H, W) -> (...)."""
    return _nanmean(ndvi_ssim(pred, target, valid, data_range), axis=-1)


__all__ = ["ndvi", "clear_sky", "cube_targets", "PixelScores", "pixel_scores", "cube_groups",
           "GreenEarthNetScorer", "greenearthnet_scores", "ndvi_psnr", "video_ndvi_psnr", "ndvi_ssim",
           "video_ndvi_ssim",
           "CLEAR_SCL", "LANDCOVER_NAMES"]
