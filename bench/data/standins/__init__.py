"""Procedural stand-ins for every benchmark dataset, written in the real on-disk formats.

When a dataset is absent, ``bench run`` materialises its stand-in once and reads it with the same
loaders (``bench.data.<dataset>``) as the real data: same relative paths, list files, file
formats, resolutions, frame counts, dtypes and conditioning. A stand-in root holds
``STANDIN.json`` (generator version and parameters); results made on one are labelled
"stand-in".

=============  =====================================================================================
dataset        what is generated (module)
=============  =====================================================================================
dmlab          first-person ray-cast 3D maze, 64x64, 300 frames, actions 0..2 (look left/right,
               forward; ``actions[t]`` after frame t); TECO npz + FAR lists (``maze``)
minecraft      the maze at 128x128 in a Minecraft-like palette, 301 frames, actions 0..3 (none,
               forward, left, right; ``actions[t]`` produced frame t); TECO mp4 (MPEG-4 Part 2,
               20 fps) + npz, FAR lists (``maze``)
ucf101         101 classes of textured shapes with class-specific motion, 320x240, 25 fps H.264
               mp4s in ``UCF-101/<Class>/``, FAR JSON lists and the official split-3 lists (``ucf101``)
bair           a gripper pushing objects on a table, 30 frames 64x64, original TFRecords and the
               FAR-style mp4 layout (``bair``)
greenearthnet  weather-driven vegetation minicubes with clouds and masks, NetCDF4, 150 days,
               ``train/`` and ``ood-t_chopped/`` (``greenearthnet``)
=============  =====================================================================================

Every item is a pure function of ``(seed, split, index)``, so the first ``n`` items of a split do
not depend on how many were asked for, and the files are byte-identical from run to run on one
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

STANDIN_VERSION = 3  # 1 was a placeholder generator; 3 added the maze poses; bump whenever the data change
# Per-dataset revisions on top of STANDIN_VERSION (bump one when only that dataset's output changes,
# so the other stand-ins are not regenerated). greenearthnet 1: climatology predictions added.
REVISIONS = {"greenearthnet": 1}
MARKER = "STANDIN.json"
DATASETS = ("ucf101", "bair", "dmlab", "minecraft", "greenearthnet")
RESIZABLE = ("ucf101", "greenearthnet")  # ``frame_size`` applies to these
PARALLEL_MIN_JOBS = 16  # fewer jobs than this run in-process


def is_standin(root: str | Path) -> bool:
    """Whether ``root`` holds a materialised stand-in (a readable ``STANDIN.json`` saying so)."""
    info = standin_info(root)
    return bool(info and info.get("stand_in"))


def standin_info(root: str | Path) -> dict[str, Any] | None:
    """The parsed ``STANDIN.json`` of ``root``, or None."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _params(dataset: str, num_train: int, num_eval: int, seed: int, frame_size: int | None) -> dict[str, Any]:
    params = {"dataset": dataset, "version": STANDIN_VERSION, "num_train": num_train, "num_eval": num_eval,
              "seed": seed, "frame_size": frame_size}
    if dataset in REVISIONS:
        params["revision"] = REVISIONS[dataset]
    return params


def _generate(dataset: str, root: Path, num_train: int, num_eval: int, seed: int, frame_size: int | None,
              map_fn) -> dict[str, Any]:
    if dataset in ("dmlab", "minecraft"):
        from bench.data.standins import maze
        return maze.write(dataset, root, num_train=num_train, num_eval=num_eval, seed=seed, map_fn=map_fn)
    if dataset == "ucf101":
        from bench.data.standins import ucf101
        return ucf101.write(root, num_train=num_train, num_eval=num_eval, seed=seed, height=frame_size,
                            map_fn=map_fn)
    if dataset == "bair":
        from bench.data.standins import bair
        return bair.write(root, num_train=num_train, num_eval=num_eval, seed=seed, map_fn=map_fn)
    from bench.data.standins import greenearthnet
    return greenearthnet.write(root, num_train=num_train, num_eval=num_eval, seed=seed, size=frame_size,
                               map_fn=map_fn)


def _count_jobs(dataset: str, num_train: int, num_eval: int) -> int:
    if dataset == "bair":
        return -(-num_train // 256) + -(-num_eval // 256)
    if dataset == "ucf101":
        from bench.data.standins.ucf101 import test_list_size
        return num_train + test_list_size(num_eval)
    return num_train + num_eval


def materialize(dataset: str, root: str | Path, *, num_train: int, num_eval: int, seed: int = 0,
                frame_size: int | None = None, workers: int | None = None, progress=None) -> Path:
    """Write the stand-in of ``dataset`` under ``root`` in the real layout; returns ``root``.

    ``num_train`` / ``num_eval``: items of the training split and of the evaluation split (the
    validation/test list the tasks read). For UCF-101, FAR evaluates every 10th test clip, so the
    test list holds ``10 * num_eval`` clips (at most 3,696, the real testlist03's size).
    ``frame_size`` shrinks UCF-101 (frame height; width 4/3 of it, rounded to even) or
    GreenEarthNet (cube side), for tests; the other datasets have the protocol's fixed size. ``workers``: processes
    (default: all cores up to 8 when there are many items; 1 runs in-process). ``progress(total)``:
    called only when files are written, a bar (``update(n)``, ``close()``) over the write jobs
    (videos; BAIR: TFRecord files of 256 videos).

    Idempotent: if ``root`` already holds this stand-in with the same parameters, nothing is done.
    A stand-in with other parameters is replaced; a folder that is not a stand-in is never touched
    (error). Files are generated in a temporary folder next to ``root`` and renamed into place, so
    an interrupted run leaves nothing half-written.
    """
    if dataset not in DATASETS:
        raise ValueError(f"no stand-in for dataset {dataset!r}; choose one of {DATASETS}")
    if num_train < 0 or num_eval < 0:
        raise ValueError(f"num_train and num_eval must be >= 0, got {num_train}, {num_eval}")
    if frame_size is not None and dataset not in RESIZABLE:
        raise ValueError(f"{dataset}: frame_size is fixed by the protocol; only {RESIZABLE} can be resized")
    if frame_size is not None and (frame_size < 8 or frame_size % 2):
        raise ValueError(f"frame_size must be an even number >= 8, got {frame_size}")
    root = Path(root)
    params = _params(dataset, num_train, num_eval, seed, frame_size)
    existing = standin_info(root)
    if existing is not None and existing.get("params") == params:
        return root
    if root.exists() and existing is None and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not a stand-in folder (no {MARKER}); refusing to write "
                              "into it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        jobs = _count_jobs(dataset, num_train, num_eval)
        meter = progress(jobs) if progress is not None else None

        def counted(map_fn):
            def run(fn, items):
                for result in map_fn(fn, items):
                    if meter is not None:
                        meter.update(1)
                    yield result
            return run
        if workers is None:
            workers = min(os.cpu_count() or 1, 8) if jobs >= PARALLEL_MIN_JOBS else 1
        if workers > 1:
            # fork: the workers run numpy/PyAV only, and unlike spawn/forkserver it does not re-run
            # the caller's __main__ (a script without a main guard would recurse)
            method = "fork" if "fork" in get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
                details = _generate(dataset, tmp, num_train, num_eval, seed, frame_size,
                                    counted(lambda fn, items: pool.map(fn, items, chunksize=4)))
        else:
            details = _generate(dataset, tmp, num_train, num_eval, seed, frame_size, counted(map))
        if meter is not None:
            meter.close()
        (tmp / MARKER).write_text(json.dumps({
            "stand_in": True,
            "generator": f"bench.data.standins (STANDIN_VERSION {STANDIN_VERSION})",
            "params": params,
            "details": details,
            "note": f"Procedural STAND-IN for {dataset}, written in the real on-disk format so the real "
                    "loaders read it. Results on it are labelled 'stand-in' and are not comparable with "
                    "numbers on the real dataset.",
        }, indent=1, sort_keys=True) + "\n")
        _swap_into_place(tmp, root, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _swap_into_place(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Rename ``tmp`` to ``root``; an existing stand-in at ``root`` is moved aside first. If another
    process put the same stand-in there meanwhile, ours is dropped."""
    existing = standin_info(root)
    if existing is not None and existing.get("params") == params:
        return  # someone else finished first
    old = None
    if root.exists():
        if existing is None and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        elif existing is not None:
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "tree")
        else:
            raise FileExistsError(f"{root} appeared while the stand-in was generated and is not a stand-in")
    try:
        os.replace(tmp, root)
    except OSError:
        info = standin_info(root)
        if not (info is not None and info.get("params") == params):
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
