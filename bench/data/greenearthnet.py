"""GreenEarthNet (EarthNet2021x) minicubes: NetCDF4 files with a daily time axis.

Layout (root = the ``greenearthnet`` folder the earthnet toolkit downloads into):
``<root>/<split>/<region or tile>/<cube>.nc`` for ``train``, ``val_chopped``, ``iid_chopped``,
``ood-t_chopped``, ``ood-s_chopped``, ``ood-st_chopped``; cubes ordered by relative path.
Predictions in the official submission format: ``<pred_dir>/<region>/<cube>.nc`` with ``ndvi_pred``
(time=20, lat, lon) at the target dates (``prediction_path``, ``read_prediction``,
``write_prediction``).

Frames are days of the cube: Sentinel-2 is on days 4, 9, 14, ... (``time[4::5]``), so a clip's
``start`` and ``stride`` count days and default to 4 and 5 (the 30 five-daily frames of a 150-day
cube; the protocols use 10 context + 20 target). A clip holds, per frame t (day d_t):

- ``bands`` float32 (T, 4, H, W): reflectance of B02, B03, B04, B8A; NaN (no acquisition) -> 0.
- ``video`` float32 (T, 3, H, W): the colour-infrared composite (B8A, B04, B03) clipped to [0, 1],
  the three channels a generic RGB video model sees; NDVI = (c0 - c1) / (c0 + c1).
- ``ndvi`` float32 (T, 1, H, W): (B8A - B04) / (B8A + B04 + 1e-8) clipped to [-1, 1] (as the official
  scorer computes it); 0 where the bands are missing.
- ``mask`` bool (T, 1, H, W): clear sky, the official rule ``s2_dlmask < 1`` and ``s2_SCL`` in
  {1, 2, 4, 5, 6, 7} (``s2_mask`` if a cube has no ``s2_dlmask``), and the bands present.
- ``covariates`` float32 (T, 24): the 8 E-OBS variables (fg, hu, pp, qq, rr, tg, tn, tx), each
  normalised with the official loader's fixed mean/std, aggregated over the ``stride`` days ending
  at d_t as [means (8), minima (8), maxima (8)]; NaN (e.g. an all-NaN ``eobs_fg``) -> 0.
- ``static`` float32 (5, H, W): nasa_dem/500, alos_dem/500, cop_dem/500 (``srtm_dem`` for
  ``nasa_dem`` in v1.0 cubes), esawc_lc, geom_cls (NaN -> 0, model input); ``landcover`` float32
  (H, W): the ESA WorldCover class, **NaN where missing** (the official scorer's ``landcover < 41``
  is then false: such a pixel is no vegetation pixel, never a class of its own).
  ``days`` int64 (T,): the day index of every frame.

Climatology (the comparison model of the outperformance score): GreenEarthNet's official
``model_pixelwise/climatology.py`` writes, per test cube, ``<out_dir>/preds/<track>/<region>/<cube>.nc``
with ``ndvi_pred`` (time, lat, lon) on the cube's daily axis from day 50 (``time[50:]``); eval.py then
compares against its scores (``--compare_dir``). The harness reads those files from
``<root>/climatology/preds/<track>/<region>/<cube>.nc`` (run the script with ``--data_dir <root>
--out_dir <root>/climatology``), daily or already at the 20 target dates (``climatology_path``,
``read_climatology``); the stand-in writes one per test cube there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from bench.data.video_io import ClipDict, VideoRef, resize_crop, window
from bench.errors import DataError

NAME = "greenearthnet"
FIRST_S2_DAY, S2_STEP = 4, 5
CONTEXT_FRAMES, TARGET_FRAMES = 10, 20
SPLITS = ("train", "val_chopped", "iid_chopped", "ood-t_chopped", "ood-s_chopped", "ood-st_chopped")
SPLIT_ALIASES = {"test": "ood-t_chopped", "val": "val_chopped", "validation": "val_chopped"}
BANDS = ("s2_B02", "s2_B03", "s2_B04", "s2_B8A")
CLEAR_SCL = (1, 2, 4, 5, 6, 7)
EOBS = ("fg", "hu", "pp", "qq", "rr", "tg", "tn", "tx")
# Fixed normalisation of earthnet-models-pytorch's en21x loader (per variable: mean, std).
EOBS_MEAN_STD = {"tg": (8.90661030749754, 9.75620252236597), "fg": (2.732927619847993, 1.4870108944469236),
                 "hu": (77.54440854529798, 13.511387994026359), "pp": (1014.330962704611, 10.262645403460999),
                 "qq": (126.47924227500346, 97.05522895011327), "rr": (1.7713217310829938, 4.147967261223076),
                 "tn": (4.770701430461286, 9.044987677752898), "tx": (13.567999825718509, 11.08198777356161)}
STATIC = (("nasa_dem", 500.0), ("alos_dem", 500.0), ("cop_dem", 500.0), ("esawc_lc", 1.0), ("geom_cls", 1.0))


def list_videos(root: str | Path, split: str) -> list[VideoRef]:
    """The minicubes of ``split`` (``test`` = ``ood-t_chopped``), ordered by relative path."""
    root = Path(root)
    split = SPLIT_ALIASES.get(split, split)
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"greenearthnet: split folder {folder} does not exist (splits: {SPLITS})")
    cubes = sorted(folder.glob("**/*.nc"), key=lambda p: p.relative_to(folder).parts)
    if not cubes:
        raise FileNotFoundError(f"greenearthnet: no .nc minicubes under {folder}")
    return [VideoRef(NAME, str(p.relative_to(folder).with_suffix("")), p) for p in cubes]


def open_cube(path: Path) -> xr.Dataset:
    if not path.is_file():
        raise FileNotFoundError(f"greenearthnet: minicube {path} does not exist")
    try:
        return xr.open_dataset(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable NetCDF minicube ({e})") from e


def _variable(cube: xr.Dataset, path: Path, name: str, dims: tuple[str, ...],
              fallback: str | None = None) -> xr.DataArray:
    if name not in cube.data_vars and fallback in cube.data_vars:
        name = fallback
    if name not in cube.data_vars:
        raise DataError(path, f"variable {name!r}", "missing" + (f" (nor {fallback!r})" if fallback else "")
                        + f"; a GreenEarthNet minicube needs it with dims {dims}")
    var = cube[name]
    if var.dims != dims:
        raise DataError(path, f"variable {name!r}", f"has dims {var.dims}, expected {dims}")
    return var


def check_cube(path: Path) -> None:
    """The cube opens and holds every variable ``read_clip`` reads, with the right dimensions (a
    metadata check: no pixel is read)."""
    with open_cube(path) as cube:
        cube_dims = ("time", "lat", "lon")
        for name in BANDS + ("s2_SCL",):
            _variable(cube, path, name, cube_dims)
        _variable(cube, path, "s2_dlmask", cube_dims, fallback="s2_mask")
        for v in EOBS:
            _variable(cube, path, f"eobs_{v}", ("time",))
        for name, _ in STATIC:
            _variable(cube, path, name, ("lat", "lon"), fallback="srtm_dem" if name == "nasa_dem" else None)


def count_frames(ref: VideoRef) -> int:
    """The number of days in the cube (frames are days; Sentinel-2 is on every 5th from day 4)."""
    if ref.num_frames:
        return ref.num_frames
    with open_cube(ref.path) as cube:
        return cube.sizes["time"]


def _values(var: xr.DataArray, days: list[int] | None = None) -> np.ndarray:
    return (var if days is None else var.isel(time=days)).values.astype(np.float32)


def _covariates(cube: xr.Dataset, path: Path, days: list[int], stride: int) -> np.ndarray:
    daily = np.stack([(_values(_variable(cube, path, f"eobs_{v}", ("time",))) - EOBS_MEAN_STD[v][0])
                      / EOBS_MEAN_STD[v][1] for v in EOBS], axis=1)  # (days, 8)
    windows = [daily[max(0, d - stride + 1):d + 1] for d in days]  # the first may be shorter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (eobs_fg) -> NaN -> 0
        feats = np.stack([np.concatenate([np.nanmean(w, 0), np.nanmin(w, 0), np.nanmax(w, 0)]) for w in windows])
    return np.nan_to_num(feats, nan=0.0).astype(np.float32)


def read_clip(ref: VideoRef, start: int = FIRST_S2_DAY, num_frames: int | None = None, stride: int = S2_STEP,
              resolution: int | None = None, *, crop_position: tuple[float, float] | None = None) -> ClipDict:
    """The Sentinel-2 frames on days ``start, start + stride, ...`` with masks and covariates (see
    the module doc). ``resolution`` resizes like the video datasets (bilinear; nearest for the
    mask and class maps)."""
    if (start - FIRST_S2_DAY) % S2_STEP or stride % S2_STEP:
        raise ValueError(f"greenearthnet: frames are Sentinel-2 days {FIRST_S2_DAY}, {FIRST_S2_DAY + S2_STEP}, "
                         f"...; got start={start}, stride={stride} (days)")
    path = ref.path
    with open_cube(path) as cube:
        total = cube.sizes.get("time", 0)
        days = window(total, start, num_frames, stride)
        if not days or days[-1] >= total:
            raise ValueError(f"{path}: has {total} days; the clip needs day {days[-1] if days else start} "
                             f"({len(days)} frames from day {start} every {stride})")
        cube_dims = ("time", "lat", "lon")
        bands = np.stack([_values(_variable(cube, path, b, cube_dims), days) for b in BANDS], axis=1)
        scl = _values(_variable(cube, path, "s2_SCL", cube_dims), days)
        cloud = _values(_variable(cube, path, "s2_dlmask", cube_dims, fallback="s2_mask"), days)
        covariates = _covariates(cube, path, days, stride)
        static = np.stack([_values(_variable(cube, path, name, ("lat", "lon"),
                                             fallback="srtm_dem" if name == "nasa_dem" else None)) / scale
                           for name, scale in STATIC])
    red, nir = bands[:, 2], bands[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.clip((nir - red) / (nir + red + 1e-8), -1.0, 1.0)
    clear = (cloud < 1) & np.isin(scl, CLEAR_SCL) & np.isfinite(ndvi)
    landcover = static[3].astype(np.float32)  # NaN (missing) stays NaN: not a land-cover class
    bands, ndvi, static = (np.nan_to_num(a, nan=0.0) for a in (bands, ndvi, static))

    def spatial(a: np.ndarray, mode: str = "bilinear") -> torch.Tensor:
        return resize_crop(torch.from_numpy(np.ascontiguousarray(a)), resolution, crop_position, mode=mode)

    bands_t = spatial(bands)
    static_t = torch.cat([spatial(static[:3]), spatial(static[3:], mode="nearest")])
    return ClipDict(video=bands_t[:, [3, 2, 1]].clamp(0, 1), label=None, actions=None, id=ref.id,
                    bands=bands_t, ndvi=spatial(ndvi[:, None]).clamp(-1, 1),
                    mask=spatial(clear[:, None], mode="nearest"), covariates=torch.from_numpy(covariates),
                    static=static_t, landcover=spatial(landcover, mode="nearest"),
                    days=torch.tensor(days, dtype=torch.int64))


# ----------------------------------------------------------------------------- predictions


def prediction_path(pred_dir: str | Path, ref: VideoRef) -> Path:
    """Where the official scorer looks for the prediction of ``ref``: ``<pred_dir>/<region>/<cube>.nc``."""
    return Path(pred_dir) / ref.path.parent.name / ref.path.name


def target_times(ref: VideoRef) -> np.ndarray:
    """The dates of the 20 target frames, ``time[4::5][10:30]`` of the cube."""
    with open_cube(ref.path) as cube:
        return cube["time"].values[FIRST_S2_DAY::S2_STEP][CONTEXT_FRAMES:CONTEXT_FRAMES + TARGET_FRAMES]


def read_prediction(path: str | Path, ref: VideoRef | None = None) -> torch.Tensor:
    """``ndvi_pred`` float32 (20, H, W) as stored (NaN kept: the scorer fills and clips). With
    ``ref``, its time coordinate must equal the cube's target dates and its grid the cube's."""
    path = Path(path)
    with open_cube(path) as pred:
        var = _variable(pred, path, "ndvi_pred", ("time", "lat", "lon"))
        values, times = _values(var), pred["time"].values
    if ref is not None:
        want = target_times(ref)
        if len(times) != len(want) or (times != want).any():
            raise ValueError(f"{path}: 'ndvi_pred' times {times[:2]}... ({len(times)}) differ from the target "
                             f"dates of {ref.path} {want[:2]}... ({len(want)}), i.e. time[4::5][10:30]")
        with open_cube(ref.path) as cube:
            grid = (cube.sizes["lat"], cube.sizes["lon"])
        if values.shape[1:] != grid:
            raise ValueError(f"{path}: 'ndvi_pred' is {values.shape[1:]} pixels, the cube {ref.path} {grid}")
    return torch.from_numpy(values)


CLIMATOLOGY_DIR = "climatology/preds"


def climatology_path(root: str | Path, split: str, ref: VideoRef) -> Path:
    """Where the climatology prediction of cube ``ref`` of track ``split`` is read from:
    ``<root>/climatology/preds/<track>/<region>/<cube>.nc`` (see the module doc)."""
    split = SPLIT_ALIASES.get(split, split)
    return Path(root) / CLIMATOLOGY_DIR / split / ref.path.parent.name / ref.path.name


def read_climatology(root: str | Path, split: str, ref: VideoRef) -> torch.Tensor:
    """The climatology's ``ndvi_pred`` at the 20 target dates of ``ref`` (``time[4::5][10:30]``),
    float32 (20, H, W), NaN kept (the scorer fills and clips). The file may hold the official
    climatology.py's daily axis (from day 50) or just the target dates; every target date must be in
    it and its grid must be the cube's."""
    path = climatology_path(root, split, ref)
    if not path.is_file():
        raise FileNotFoundError(f"greenearthnet: no climatology prediction {path} for cube {ref.path}")
    want = target_times(ref)
    with open_cube(path) as pred:
        var = _variable(pred, path, "ndvi_pred", ("time", "lat", "lon"))
        have = pred["time"].values
        index = {t: i for i, t in enumerate(have)}
        missing = [t for t in want if t not in index]
        if missing:
            raise ValueError(f"{path}: 'ndvi_pred' has no value at target date(s) {missing[:2]}"
                             f"{'...' if len(missing) > 2 else ''} of {ref.path} (time[4::5][10:30]); it covers "
                             f"{have[0] if len(have) else None} to {have[-1] if len(have) else None}")
        values = _values(var, [index[t] for t in want])
    with open_cube(ref.path) as cube:
        grid = (cube.sizes["lat"], cube.sizes["lon"])
    if values.shape[1:] != grid:
        raise ValueError(f"{path}: 'ndvi_pred' is {values.shape[1:]} pixels, the cube {ref.path} {grid}")
    return torch.from_numpy(values)


def write_prediction(path: str | Path, ndvi: torch.Tensor, ref: VideoRef) -> Path:
    """Write (20, H, W) NDVI predictions of ``ref`` in the official format, atomically."""
    path = Path(path)
    with open_cube(ref.path) as cube:
        lat, lon = cube["lat"].values, cube["lon"].values
    times = target_times(ref)
    values = np.asarray(torch.as_tensor(ndvi, dtype=torch.float32).cpu())
    if values.shape != (len(times), len(lat), len(lon)):
        raise ValueError(f"write_prediction({path}): ndvi must be {(len(times), len(lat), len(lon))} "
                         f"(target frames, lat, lon) for {ref.path}, got {values.shape}")
    dataset = xr.Dataset({"ndvi_pred": (("time", "lat", "lon"), values)},
                         coords={"time": times, "lat": lat, "lon": lon})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.nc")
    try:
        dataset.to_netcdf(tmp, encoding={"ndvi_pred": {"zlib": True, "dtype": "float32"}})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
