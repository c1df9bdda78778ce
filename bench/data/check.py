"""Check a run's data before any training or sampling, and report a bad file in one line.

``check_eval(task, root)`` reads every evaluated clip exactly as the run will (so a truncated file,
a corrupt archive, a TFRecord CRC mismatch or a missing NetCDF variable surfaces now, not after
training) and checks its shape, range and conditioning. ``check_train(task, root, deep)`` opens
every training file and reads its header (frame count, window length, NetCDF variables);
``deep=True`` (the default at quick scale, where the data are small) also verifies every byte:
npz member CRCs, TFRecord data CRCs, mp4 packets against the header's frame count. At paper scale
the training files are only opened; a file that turns out bad during training is still reported
as one :class:`DataError` line by the datasets (:func:`reading`).

Every problem is a :class:`bench.errors.DataError` naming the file, the field inside it and the fix.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import torch

from bench.errors import BenchError, DataError


def _low_level() -> tuple[type[BaseException], ...]:
    import av
    return (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, KeyError, av.FFmpegError)


def fix_for(dataset: str, root: str | Path | None, standin: bool) -> str:
    """What the user should do about a bad file of ``dataset`` under ``root``."""
    if standin and root is not None:
        return f"delete the stand-in (rm -r {root}); the next run regenerates it"
    where = f" under {root}" if root is not None else ""
    return f"re-download or repair this file of the {dataset} data{where}"


@contextlib.contextmanager
def reading(path: str | Path, fix: str | None = None) -> Iterator[None]:
    """Turn a loader's low-level exception while reading ``path`` into a one-line DataError."""
    try:
        yield
    except DataError as e:
        raise (e.with_fix(fix) if fix else e) from None
    except BenchError:
        raise
    except _low_level() as e:
        raise DataError.wrap(path, e, fix) from None


# ----------------------------------------------------------------------------- file-level checks

def check_npz(path: Path) -> None:
    """Every member of an npz archive decompresses and matches its CRC."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(path, None, f"not a readable npz archive, truncated or corrupt ({e})") from None
    with z:
        for info in z.infolist():
            try:
                with z.open(info) as f:  # decompresses and checks the member's CRC
                    while f.read(1 << 22):
                        pass
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise DataError(path, f"array {info.filename.removesuffix('.npy')!r}", "corrupt bytes "
                                f"({type(e).__name__}: {' '.join(str(e).split())})") from None


def check_video(path: Path) -> None:
    """The container opens and holds every packet its header announces (no decoding)."""
    import av

    from bench.data.video_io import _open
    with _open(path) as container:
        stream = container.streams.video[0]
        announced = stream.frames
        try:
            packets = sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as e:
            raise DataError(path, "video stream", f"cannot be demuxed, truncated or corrupt ({e})") from None
    if packets == 0 or (announced > 0 and packets < announced):
        raise DataError(path, "video stream", f"holds {packets} frames but its header announces {announced} "
                        "(truncated)")


def check_file(path: Path, deep: bool) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npz" and deep:
        check_npz(path)
    elif suffix in (".mp4", ".avi", ".mkv", ".webm") and deep:
        check_video(path)
    elif suffix == ".nc":
        from bench.data.greenearthnet import check_cube
        check_cube(path)


# ----------------------------------------------------------------------------- a run's data

def check_eval(task, root: str | Path, fix: str | None = None) -> int:
    """Read every clip ``task`` (at its scale) evaluates and check it; returns the number of clips."""
    from bench.data import dataset_module, eval_refs
    with reading(root, fix):
        refs = eval_refs(task, root)
    need = task.num_videos
    if need and len(refs) < need:
        raise DataError(root, f"{task.split} list", f"holds {len(refs)} videos; task {task.name} evaluates {need}",
                        fix)
    module = dataset_module(task.dataset)
    part = task.parts[0]
    res, frames = task.resolution, task.num_frames
    for ref, start in refs:
        with reading(ref.path, fix):
            clip = module.read_clip(ref, start, frames, task.frame_stride, res)
        video = clip["video"]
        if tuple(video.shape) != (frames, 3, res, res):
            raise DataError(ref.path, "video", f"expected a clip of shape {(frames, 3, res, res)} (frames, "
                            f"channels, height, width), read {tuple(video.shape)}", fix)
        if not torch.isfinite(video).all() or video.min() < 0 or video.max() > 1:
            raise DataError(ref.path, "video", "expected finite pixel values in [0, 1]", fix)
        if part.condition == "action":
            actions = clip.get("actions")
            if actions is None or tuple(actions.shape) != (frames,):
                raise DataError(ref.action_path or ref.path, "actions", f"expected {frames} actions for the clip, "
                                f"read {None if actions is None else tuple(actions.shape)}", fix)
        if part.condition == "label" and clip.get("label") is None:
            raise DataError(ref.path, "label", "expected a class label", fix)
    return len(refs)


def check_train(task, root: str | Path, deep: bool, fix: str | None = None) -> int:
    """Open every training file of ``task`` (at its scale) and check it holds a training window;
    ``deep`` also verifies every byte (see the module doc). Returns the number of videos."""
    from bench.data import TrainClipDataset, train_refs
    from bench.data import tfrecord
    with reading(root, fix):
        refs = train_refs(task, root)
    if not refs:
        raise DataError(root, f"{task.train_split} split", "holds no training videos", fix)
    dataset = TrainClipDataset(task, refs, root, num_frames=task.num_frames)
    seen: set[Path] = set()
    for i, ref in enumerate(refs):
        with reading(ref.path, fix):
            for path in (ref.path, ref.action_path):
                if path is not None and path not in seen:
                    seen.add(path)
                    check_file(Path(path), deep)
            if deep and ref.record is not None:
                tfrecord.read_record(ref.path, ref.record, verify=True)
            dataset._starts(i)  # frame count from the header; the window must fit
    return len(refs)
