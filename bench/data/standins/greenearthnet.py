"""GreenEarthNet stand-in: minicubes with a weather-driven vegetation cycle, clouds and masks.

Each cube is 150 days of a landscape of land-cover patches (tree, shrub, grass, crop fields,
built-up, water). The weather (E-OBS-like daily temperature, rain, humidity, pressure, radiation)
drives a soil-moisture bucket, and vegetation greenness follows a seasonal curve per land cover
damped by water stress, so the covariates carry information about how NDVI will change; crop
fields are harvested on their own dates. Sentinel-2 bands are derived from NDVI (B8A and B04 so
that (B8A - B04) / (B8A + B04) is the NDVI), observed every 5th day from day 4, partly hidden by
clouds and their shadows (masked in ``s2_mask``, ``s2_dlmask`` and ``s2_SCL`` like the real
cubes); a few acquisitions are missing entirely.

The files copy the real cubes' variables, dims, coordinates, dtypes, attributes and compression
(see ``../shared/fixtures/datasets/greenearthnet``), at 128x128 pixels by default::

    train/<MGRS tile>/<tile>_<start>_<end>_<hr x/y ranges>_<meso x/y ranges>.nc
    ood-t_chopped/<season, e.g. MJJ21>/<cube>.nc        (test track; 2021 cubes)
    climatology/preds/ood-t_chopped/<season>/<cube>.nc  (climatology prediction of each test cube)

The climatology predictions stand in for the output of GreenEarthNet's official
``model_pixelwise/climatology.py`` (run with ``--out_dir <root>/climatology``), the comparison model
of the outperformance score: ``ndvi_pred`` daily from day 50, the same landscape's greenness under
other years' weather, averaged and smoothed over 30 days (``climatology_ndvi``).
"""

from __future__ import annotations

import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np

DAYS = 150
FIRST_S2_DAY, S2_STEP = 4, 5
SIZE = 128
TILES = ("29SND", "30TUK", "31UDQ", "32ULB", "32UPU", "33UVP", "33TWM", "34UDC", "35VLH", "31TCJ")
TRAIN_YEARS = (2017, 2018, 2019, 2020)
# climatology predictions of the test cubes (see ``climatology_ndvi``): other years averaged, the
# smoothing window in days, the first day written (the official climatology.py writes time[50:]),
# and where (relative to the root; ``bench.data.greenearthnet.CLIMATOLOGY_DIR``)
CLIMATOLOGY_YEARS, CLIMATOLOGY_WINDOW, CLIMATOLOGY_FIRST_DAY = 4, 30, 50
CLIMATOLOGY_DIR = "climatology/preds"
TEST_YEAR = 2021
MONTHS = "JFMAMJJASOND"

# land cover: (ESA WorldCover class, base NDVI, amplitude, peak day of year, width in days,
# sensitivity to water stress, brightness B04 + B8A)
COVER = {10: (0.45, 0.35, 185, 70, 0.3, 0.34), 20: (0.25, 0.30, 160, 60, 0.6, 0.36),
         30: (0.20, 0.45, 150, 50, 0.9, 0.38), 40: (0.15, 0.65, 175, 35, 0.7, 0.40),
         50: (0.08, 0.05, 180, 80, 0.0, 0.32), 80: (-0.25, 0.05, 180, 80, 0.0, 0.10)}
CLEAR_SCL = {10: 4, 20: 4, 30: 4, 40: 4, 50: 5, 80: 6}

_S2 = {"provider": "Sentinel 2", "interpolation_type": "linear"}
_MASK_CLASSES = "\n0 - free sky\n1 - cloud\n2 - cloud shadows\n3 - snow\n4 - masked by SCL\n"
_DEM = {"interpolation_type": "linear", "description": "Elevation data.", "units": "metre"}
ATTRS = {
    "s2_B02": {**_S2, "description": "Blue"}, "s2_B03": {**_S2, "description": "Green"},
    "s2_B04": {**_S2, "description": "Red"}, "s2_B8A": {**_S2, "description": "Near infrared (NIR) Narrow"},
    "s2_SCL": {"provider": "Sentinel 2", "interpolation_type": "nearest", "description": "Scene classification layer",
               "classes": "\n0 - No data\n1 - Saturated / Defective\n2 - Dark Area Pixels\n3 - Cloud Shadows\n"
                          "4 - Vegetation\n5 - Bare Soils\n6 - Water\n7 - Clouds low probability / Unclassified\n"
                          "8 - Clouds medium probability\n9 - Clouds high probability\n10 - Cirrus\n11 - Snow / Ice\n"},
    "s2_mask": {"provider": "Sentinel 2", "interpolation_type": "nearest", "description": "sen2flux Cloud Mask",
                "classes": _MASK_CLASSES},
    "s2_dlmask": {"provider": "Sentinel 2", "interpolation_type": "nearest", "description": "Deep learning cloud mask",
                  "classes": _MASK_CLASSES},
    "s2_avail": {},
    "eobs_tg": {"standard_name": "air_temperature", "long_name": "mean temperature", "units": "Celsius"},
    "eobs_tn": {"standard_name": "air_temperature", "long_name": "minimum temperature", "units": "Celsius"},
    "eobs_tx": {"standard_name": "air_temperature", "long_name": "maximum temperature", "units": "Celsius"},
    "eobs_rr": {"standard_name": "thickness_of_rainfall_amount", "long_name": "rainfall", "units": "mm"},
    "eobs_pp": {"standard_name": "air_pressure_at_sea_level", "long_name": "sea level pressure", "units": "hPa"},
    "eobs_hu": {"standard_name": "relative_humidity", "long_name": "mean relative humidity", "units": "%"},
    "eobs_qq": {"standard_name": "surface_downwelling_shortwave_flux_in_air",
                "long_name": "surface downwelling shortwave flux in air", "units": "W/m2"},
    "eobs_fg": {"standard_name": "wind_speed", "long_name": "Ensemble mean wind speed", "units": "m/s"},
    "nasa_dem": {"provider": "NASADEM", **_DEM}, "alos_dem": {"provider": "ALOS World 3D-30m", **_DEM},
    "cop_dem": {"provider": "Copernicus DEM GLO-30", **_DEM},
    "esawc_lc": {"provider": "ESA Worldcover", "interpolation_type": "nearest",
                 "description": "Land cover classification",
                 "classes": "\n10 - Tree cover\n20 - Shrubland\n30 - Grassland\n40 - Cropland\n50 - Built-up\n"
                            "60 - Bare / sparse vegetation\n70 - Snow and Ice\n80 - Permanent water bodies\n"
                            "90 - Herbaceous wetland\n95 - Mangroves\n100 - Moss and lichen\n"},
    "geom_cls": {"provider": "Geomorpho90m", "interpolation_type": "nearest",
                 "description": "Geomorphon classes. Original resolution ~90m.",
                 "classes": "\n1: flat,\n2: summit,\n3: ridge,\n4: shoulder,\n5: spur,\n6: slope,\n7: hollow,\n"
                            "8: footslope,\n9: valley,\n10: depression\n"},
}
for _v in ATTRS:
    if _v.startswith("eobs_"):
        ATTRS[_v]["provider"] = "E-OBS"


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(b"greenearthnet"), zlib.crc32(split.encode()), index])


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) smooth noise in about [0, 1]: a coarse random grid, bilinearly upsampled."""
    coarse = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    rows = np.stack([np.interp(pos, np.arange(cells + 1), coarse[:, j]) for j in range(cells + 1)], axis=1)
    return np.stack([np.interp(pos, np.arange(cells + 1), rows[i]) for i in range(size)])


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + sigma * rng.standard_normal()
    return out


# ----------------------------------------------------------------------------- one cube


def weather(rng: np.random.Generator, doy: np.ndarray) -> dict[str, np.ndarray]:
    """Daily E-OBS-like series (float64) for the days of year ``doy``."""
    n = len(doy)
    season = np.sin(2 * np.pi * (doy - 105) / 365)
    base = rng.uniform(8, 16)
    tg = base + 9 * season + _ar1(rng, n, 0.8, 1.5)
    wet = np.zeros(n, bool)
    for i in range(1, n):
        p = (0.6 if wet[i - 1] else 0.2) * (1 - 0.4 * season[i])
        wet[i] = rng.random() < p
    rr = np.where(wet, rng.exponential(5.0, n), 0.0)
    hu = np.clip(65 - 1.5 * (tg - base) + 15 * wet + rng.normal(0, 4, n), 20, 100)
    pp = 1013 + _ar1(rng, n, 0.9, 2.0) - 4 * wet
    qq = np.clip(150 + 120 * season - 90 * wet + rng.normal(0, 15, n), 20, 380)
    return {"tg": tg, "tn": tg - rng.uniform(4, 7) - np.abs(rng.normal(0, 1, n)),
            "tx": tg + rng.uniform(5, 8) + np.abs(rng.normal(0, 1, n)), "rr": rr, "hu": hu, "pp": pp, "qq": qq,
            "fg": np.full(n, np.nan), "wet": wet.astype(float)}


def water_stress(w: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Daily plant water availability in [0, 1] from a soil-moisture bucket (rain in, heat and sun out)."""
    n = len(w["tg"])
    sm = np.empty(n)
    s = rng.uniform(0.4, 0.8)
    for i in range(n):
        s = float(np.clip(s + w["rr"][i] / 40 - 0.012 * max(w["tg"][i], 0) / 15 * w["qq"][i] / 250, 0, 1))
        sm[i] = s
    smooth = np.empty(n)
    acc = sm[0]
    for i in range(n):  # plants respond over ~2 weeks
        acc = acc + (sm[i] - acc) / 15
        smooth[i] = acc
    return np.clip((smooth - 0.15) / 0.35, 0, 1)


def landcover(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) ESA WorldCover classes: patches of tree/shrub/grass, crop fields, a settlement, a pond."""
    a, b = _smooth(rng, size, 4), _smooth(rng, size, 6)
    lc = np.full((size, size), 30.0)
    lc[a > 0.62] = 10
    lc[(a > 0.5) & (a <= 0.62)] = 20
    for _ in range(int(rng.integers(1, 5))):  # fields
        y0, x0 = rng.integers(0, size, 2)
        h, w = rng.integers(size // 8, size // 3, 2)
        lc[y0:y0 + h, x0:x0 + w] = 40
    if rng.random() < 0.5:
        y0, x0 = rng.integers(0, size - size // 8, 2)
        lc[y0:y0 + size // 10, x0:x0 + size // 8] = 50
    if rng.random() < 0.5:
        lc[b > 0.85] = 80
    return lc


def greenness(doy_d: float, avail_d: float, lc: np.ndarray, base_field: np.ndarray, amp_field: np.ndarray,
              crop_peak: np.ndarray, crop_cut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDVI (clipped to [-0.9, 0.95]) and B04 + B8A brightness per pixel on day of year ``doy_d`` at
    water availability ``avail_d``: a seasonal curve per land cover damped by water stress, crop
    fields harvested on their own dates."""
    ndvi = np.zeros(lc.shape)
    bright = np.zeros(lc.shape)
    for cls, (base, amp, peak, width, sens, s) in COVER.items():
        sel = lc == cls
        if not sel.any():
            continue
        pk = crop_peak[sel] if cls == 40 else peak
        pheno = np.exp(-((doy_d - pk) / width) ** 2)
        factor = sens * avail_d + (1 - sens)
        v = base + base_field[sel] + amp * amp_field[sel] * pheno * factor
        if cls == 40:
            v = np.where(doy_d > crop_cut[sel], 0.12 + base_field[sel], v)
        ndvi[sel] = v
        bright[sel] = s
    return np.clip(ndvi, -0.9, 0.95), bright


def climatology_ndvi(seed: int, split: str, index: int, doy: np.ndarray, fields: tuple) -> np.ndarray:
    """The stand-in's climatology (DAYS, H, W): the cube's landscape under CLIMATOLOGY_YEARS other
    years' weather (their own random stream, so the cube itself is unchanged), the daily NDVI averaged
    over those years and then over a trailing 30-day window, as the official
    ``model_pixelwise/climatology.py`` averages other years by day of year and smooths them over 30
    days. Clouds play no part: the mean is of the true greenness."""
    rng = np.random.default_rng([seed, zlib.crc32(b"greenearthnet-climatology"), zlib.crc32(split.encode()), index])
    daily = np.zeros((len(doy), *fields[0].shape))
    for _ in range(CLIMATOLOGY_YEARS):
        avail = water_stress(weather(rng, doy), rng)
        daily += np.stack([greenness(doy[d], avail[d], *fields)[0] for d in range(len(doy))])
    daily /= CLIMATOLOGY_YEARS
    cums = np.concatenate([np.zeros((1, *daily.shape[1:])), np.cumsum(daily, axis=0)])
    ends = np.arange(1, len(doy) + 1)
    starts = np.maximum(0, ends - CLIMATOLOGY_WINDOW)
    return (cums[ends] - cums[starts]) / (ends - starts)[:, None, None]


def cube(seed: int, split: str, index: int, size: int = SIZE, *, climatology: bool = False):
    """``(relative path, xarray.Dataset)`` of one minicube; with ``climatology``, also the cube's
    climatology prediction as the official ``climatology.py`` writes it (``ndvi_pred`` float32 on the
    cube's days from day CLIMATOLOGY_FIRST_DAY, daily) or None for a training cube."""
    import xarray as xr

    rng = _rng(seed, split, index)
    tile = TILES[int(rng.integers(len(TILES)))]
    year = TEST_YEAR if split != "train" else int(rng.choice(TRAIN_YEARS))
    start = date(year, 4, 1) + timedelta(days=int(rng.integers(0, 100)))
    end = start + timedelta(days=DAYS - 1)
    hx, hy, mx, my = (int(v) for v in rng.integers(0, 9000, 2).tolist() + rng.integers(0, 100, 2).tolist())
    name = (f"{tile}_{start.isoformat()}_{end.isoformat()}_{hx}_{hx + 128}_{hy}_{hy + 128}_"
            f"{mx}_{mx + 80}_{my}_{my + 80}")
    folder = tile if split == "train" else "".join(MONTHS[(start.month - 1 + k) % 12] for k in range(3)) + f"{year % 100}"
    doy = np.array([(start + timedelta(days=d)).timetuple().tm_yday for d in range(DAYS)], np.float64)

    w = weather(rng, doy)
    avail = water_stress(w, rng)
    lc = landcover(rng, size)
    amp_field = 0.8 + 0.4 * _smooth(rng, size, 5)
    base_field = 0.06 * (_smooth(rng, size, 8) - 0.5)
    bright_field = 0.9 + 0.2 * _smooth(rng, size, 6)
    dem = 100 + 700 * rng.random() * 0.5 + 300 * _smooth(rng, size, 3)

    s2_days = np.arange(FIRST_S2_DAY, DAYS, S2_STEP)
    missing = {int(d) for d in s2_days[1:-1] if rng.random() < 0.04}
    bands = {k: np.full((DAYS, size, size), np.nan, np.float32) for k in ("s2_B02", "s2_B03", "s2_B04", "s2_B8A")}
    scl = np.full((DAYS, size, size), np.nan, np.float32)
    mask = np.full((DAYS, size, size), np.nan, np.float32)
    s2_avail = np.full(DAYS, np.nan, np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    # crop fields: each connected block of class 40 gets its own peak and harvest day
    crop_peak = np.full((size, size), 175.0)
    crop_cut = np.full((size, size), 999.0)
    field_noise = _smooth(rng, size, 3)
    for k, (lo, hi) in enumerate(((0.0, 0.4), (0.4, 0.6), (0.6, 1.01))):
        sel = (lc == 40) & (field_noise >= lo) & (field_noise < hi)
        crop_peak[sel] = rng.uniform(150, 200)
        crop_cut[sel] = crop_peak[sel] + rng.uniform(15, 45)

    fields = (lc, base_field, amp_field, crop_peak, crop_cut)
    for d in s2_days:
        d = int(d)
        if d in missing:
            continue
        ndvi, bright = greenness(doy[d], avail[d], *fields)
        s_tot = bright * bright_field
        nir = s_tot * (1 + ndvi) / 2
        red = s_tot * (1 - ndvi) / 2
        b = {"s2_B8A": nir, "s2_B04": red, "s2_B03": 0.7 * red + 0.06 * nir + 0.01, "s2_B02": 0.55 * red + 0.02}
        # clouds and their shadows, more on wet and humid days
        cloudiness = np.clip(0.1 + 0.5 * w["wet"][d] + 0.3 * (w["hu"][d] - 60) / 30, 0, 0.9)
        cloud = np.zeros((size, size), bool)
        thick = np.zeros((size, size))
        for _ in range(int(rng.poisson(cloudiness * 8))):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(0.05, 0.25) * size
            dist2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
            cloud |= dist2 < 1
            thick = np.maximum(thick, np.clip(1 - dist2, 0, 1))
        shift = max(1, size // 8)
        shadow = np.zeros_like(cloud)
        shadow[shift:, shift:] = cloud[:-shift, :-shift]
        shadow &= ~cloud
        defect = rng.random((size, size)) < 0.01
        noise = rng.normal(0, 0.004, (4, size, size))
        for k, key in enumerate(("s2_B02", "s2_B03", "s2_B04", "s2_B8A")):
            v = b[key] + noise[k]
            v = np.where(shadow, v * 0.4, v)
            v = np.where(cloud, 0.35 + 0.4 * thick + 0.02 * k, v)
            bands[key][d] = np.clip(v, 0.001, 1.0)
        clear_scl = np.vectorize(CLEAR_SCL.get)(lc).astype(np.float32)
        cloud_scl = np.where(thick > 0.6, 9, np.where(thick > 0.25, 8, 10))
        scl[d] = np.where(cloud, cloud_scl, np.where(shadow, 3, np.where(defect, 1, clear_scl)))
        mask[d] = np.where(cloud, 1, np.where(shadow, 2, np.where(defect, 4, 0)))
        s2_avail[d] = 1.0

    lat0 = rng.uniform(36, 60)
    lon0 = rng.uniform(-9, 25)
    lat = np.round(lat0 - 0.00018 * np.arange(size), 6)
    lon = np.round(lon0 + 0.00024 * np.arange(size), 6)
    times = np.array([np.datetime64(start + timedelta(days=d), "ns") for d in range(DAYS)])
    cube_dims, flat = ("time", "lat", "lon"), ("lat", "lon")
    data = {
        "s2_avail": (("time",), s2_avail), **{k: (cube_dims, v) for k, v in bands.items()},
        "nasa_dem": (flat, np.round(dem, 1).astype(np.float32)),
        "alos_dem": (flat, np.round(dem + 1.5, 0).astype(np.float32)),
        "cop_dem": (flat, np.round(dem - 1.5, 1).astype(np.float32)),
        "esawc_lc": (flat, lc.astype(np.float32)),
        "geom_cls": (flat, np.clip(1 + np.floor(_smooth(rng, size, 6) * 10), 1, 10).astype(np.float32)),
        "s2_SCL": (cube_dims, scl), "s2_mask": (cube_dims, mask), "s2_dlmask": (cube_dims, mask.copy()),
        **{f"eobs_{k}": (("time",), np.round(w[k], 1).astype(np.float32))
           for k in ("tg", "fg", "hu", "pp", "qq", "rr", "tn", "tx")},
    }
    ds = xr.Dataset(
        {k: xr.Variable(dims, v, attrs=ATTRS[k]) for k, (dims, v) in data.items()},
        coords={"time": times, "lat": lat, "lon": lon,
                "sentinel:product_id": np.float32(np.nan),
                "longitude_eobs": xr.Variable((), np.float32(round(lon0, 1)),
                                              {"standard_name": "longitude", "long_name": "Longitude values",
                                               "units": "degrees_east", "axis": "X"}),
                "latitude_eobs": xr.Variable((), np.float32(round(lat0, 1)),
                                             {"standard_name": "latitude", "long_name": "Latitude values",
                                              "units": "degrees_north", "axis": "Y"})},
        attrs={"dataset_name": "EarthNet2021x", "dataset_name_short": "en21x", "dataset_version": "v1.0",
               "description": "PROCEDURAL STAND-IN in the layout of a GreenEarthNet / EarthNet2021x minicube, "
                              "written by bench.data.standins.greenearthnet. Values are generated, not observed.",
               "license": "Generated data (no real observations).",
               "provided_by": "farzoo stand-in generator (layout follows Max-Planck-Institute for "
                               "Biogeochemistry minicubes)"})
    track = "train" if split == "train" else "ood-t_chopped"
    if not climatology:
        return f"{track}/{folder}/{name}.nc", ds
    clim = None
    if split != "train":
        values = climatology_ndvi(seed, split, index, doy, fields)[CLIMATOLOGY_FIRST_DAY:].astype(np.float32)
        clim = xr.Dataset({"ndvi_pred": (cube_dims, values)},
                          coords={"time": times[CLIMATOLOGY_FIRST_DAY:], "lat": lat, "lon": lon},
                          attrs={"description": "PROCEDURAL STAND-IN climatology prediction (bench.data.standins."
                                                "greenearthnet.climatology_ndvi), in the layout of the official "
                                                "model_pixelwise/climatology.py output"})
    return f"{track}/{folder}/{name}.nc", ds, clim


def encoding(ds) -> dict:
    enc = {}
    for name, var in ds.data_vars.items():
        enc[name] = {"zlib": True, "complevel": 4, "shuffle": True, "_FillValue": np.float32(np.nan),
                     "dtype": "float32", "chunksizes": var.shape}
    start = str(ds["time"].values[0])[:10]
    enc["time"] = {"units": f"days since {start} 00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}
    return enc


def write_item(root: str, split: str, index: int, seed: int, size: int) -> str:
    rel, ds, clim = cube(seed, split, index, size, climatology=True)
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding(ds))
    if clim is not None:  # where bench.data.greenearthnet.climatology_path looks for it
        clim_path = Path(root) / CLIMATOLOGY_DIR / rel
        clim_path.parent.mkdir(parents=True, exist_ok=True)
        clim.to_netcdf(clim_path, engine="netcdf4", encoding={"ndvi_pred": {"zlib": True, "dtype": "float32"}})
    return rel


def _write_job(job: tuple) -> str:
    return write_item(*job)


def write(root, *, num_train: int, num_eval: int, seed: int, size: int | None = None, map_fn=map) -> dict:
    size = size or SIZE
    jobs = [(str(root), split, i, seed, size) for split, n in (("train", num_train), ("test", num_eval))
            for i in range(n)]
    files = list(map_fn(_write_job, jobs))
    if len(set(files)) != len(files):
        raise RuntimeError("greenearthnet stand-in: two cubes got the same name")
    return {"resolution": size, "days": DAYS, "tracks": ["train", "ood-t_chopped"],
            "climatology": f"{CLIMATOLOGY_DIR}/ood-t_chopped/<region>/<cube>.nc"}
