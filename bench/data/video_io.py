"""Video files, and the pieces every dataset reader shares.

- ``read_video`` / ``write_video`` / ``video_info``: mp4 (or any container FFmpeg reads) through PyAV,
  as uint8 (T, H, W, 3) RGB arrays. Writes are atomic (temporary file, then ``os.replace``).
- ``VideoRef`` and ``ClipDict``: what ``list_videos`` returns and what ``read_clip`` returns in every
  dataset module (``bench.data.ucf101`` etc.).
- ``check_poses``: the stand-ins' optional per-frame ``poses`` array (real files have none).
- ``load_json_list`` / ``resolve_listed_path``: FAR's data lists (a JSON array of objects holding
  file paths); ``load_npz``: npz archives with required keys; ``teco_files``: TECO's folders.
- ``window`` / ``take_frames`` / ``read_frames``: the frames a clip (start, count, stride) covers,
  with FAR's zero padding for UCF-101 and BAIR and an error for the others.
- ``resize_crop``: torchvision's ``Resize(size)`` (shorter side, bilinear, antialiased) followed by
  ``CenterCrop(size)`` or a crop at a given position, on float tensors.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence, TypedDict

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import DataError

# ----------------------------------------------------------------------------- shared types


@dataclass(frozen=True)
class VideoRef:
    """One video (trajectory, minicube) of a dataset, as listed by ``list_videos``.

    ``path`` is the file holding the frames (mp4, npz, tfrecords or nc). ``action_path`` is a
    separate action file where the layout has one. ``record`` is the byte offset of the
    trajectory's record inside a TFRecord file (BAIR). ``num_frames``: the length when whoever made
    the ref knows it (``count_frames`` then trusts it), else None and ``count_frames`` looks.
    """

    dataset: str
    id: str
    path: Path
    label: int | None = None
    action_path: Path | None = None
    record: int | None = None
    num_frames: int | None = None


class ClipDict(TypedDict, total=False):
    """What ``read_clip`` returns. Every dataset fills the first four keys.

    ``video``: float32 (T, 3, H, W) in [0, 1]. ``label``: class id or None. ``actions``: int64 (T,)
    or None (``actions[t]`` is the action FAR pairs with frame t). ``id``: the VideoRef id.
    The other keys are dataset-specific (documented in each module).
    """

    video: Tensor
    label: int | None
    actions: Tensor | None
    id: str
    # DMLab / Minecraft stand-ins only (real files have none): int64 (T, 3) agent pose per frame,
    # (lattice x, lattice y, heading index); equal poses render identical frames
    poses: Tensor
    # BAIR
    action_vectors: Tensor
    endeffector_pos: Tensor
    # GreenEarthNet
    bands: Tensor
    ndvi: Tensor
    mask: Tensor
    covariates: Tensor
    static: Tensor
    landcover: Tensor
    days: Tensor


# ----------------------------------------------------------------------------- video files


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str


# name -> (FFmpeg encoder, pixel format, encoder options)
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    # H.264 4:4:4 RGB at qp 0: bit-exact, playable, and read by decord/FFmpeg like any mp4.
    "lossless": ("libx264rgb", "rgb24", {"qp": "0"}),
    # What FAR's UCF-101 files (and the BAIR fixture) are: H.264, yuv420p.
    "h264": ("libx264", "yuv420p", {"crf": "18"}),
    # What TECO's Minecraft collector writes (OpenCV fourcc mp4v): MPEG-4 Part 2, yuv420p.
    "mpeg4": ("mpeg4", "yuv420p", {"qmin": "2", "qmax": "2"}),
}


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise FileNotFoundError(f"video file {path} does not exist")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(f"{path}: not a readable video container ({e})") from e
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: the container has no video stream")
    return container


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate, size and codec of the first video stream (no decoding)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        frames = stream.frames
        if frames <= 0:  # the container does not store a count: count the packets instead
            frames = sum(1 for p in container.demux(stream) if p.size)
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(num_frames=int(frames), fps=float(rate), width=stream.codec_context.width,
                         height=stream.codec_context.height, codec=stream.codec_context.name)


def read_video(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode frames as uint8 (T, H, W, 3) RGB.

    ``indices`` (increasing or not, repeats allowed) selects frames by decode order; decoding stops
    after the largest one. Indices past the end of the video are left out, so the result can be
    shorter than ``indices``: callers check.
    """
    path = Path(path)
    wanted = None if indices is None else {int(i) for i in indices}
    if wanted and min(wanted) < 0:
        raise ValueError(f"{path}: negative frame index {min(wanted)}")
    last = max(wanted) if wanted else -1
    frames: dict[int, np.ndarray] = {}
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        empty = np.zeros((0, stream.codec_context.height, stream.codec_context.width, 3), np.uint8)
        if wanted is not None and not wanted:
            return empty
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if wanted is None or decoded in wanted:
                    frames[decoded] = frame.to_ndarray(format="rgb24")
                decoded += 1
                if wanted is not None and decoded > last:
                    break
        except av.FFmpegError as e:
            raise ValueError(f"{path}: decoding failed after {decoded} frames ({e})") from e
    if decoded == 0:
        raise ValueError(f"{path}: the video stream holds no decodable frames")
    order = sorted(frames) if indices is None else [int(i) for i in indices if int(i) in frames]
    return np.stack([frames[i] for i in order]) if order else empty


def write_video(path: str | Path, frames: np.ndarray, fps: float, codec: str = "lossless") -> Path:
    """Write uint8 (T, H, W, 3) RGB frames to ``path`` atomically; returns ``path``.

    ``codec`` is a key of ``CODECS``: ``lossless`` (default; H.264 RGB, bit-exact), ``h264``
    (yuv420p, like FAR's mp4s) or ``mpeg4`` (yuv420p, like TECO's Minecraft). yuv420p needs even
    height and width.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video({path}): frames must be uint8 (T>0, H, W, 3), got "
                         f"{frames.dtype} {frames.shape}")
    if codec not in CODECS:
        raise ValueError(f"write_video({path}): unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    encoder, pix_fmt, options = CODECS[codec]
    height, width = frames.shape[1:3]
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"write_video({path}): codec {codec!r} (yuv420p) needs even height and width, "
                         f"got {height}x{width}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001),
                                          options=dict(options))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                                       format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def to_float_video(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------- lists and clips


def load_json_list(path: Path, fields: Sequence[str]) -> list[dict[str, Any]]:
    """A FAR data list: a JSON array of objects, each holding at least ``fields``."""
    if not path.is_file():
        raise FileNotFoundError(f"data list {path} does not exist")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON array of objects, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {i} must be an object, got {type(entry).__name__}")
        missing = [f for f in fields if f not in entry]
        if missing:
            raise ValueError(f"{path}: entry {i} has no field {missing[0]!r} (each entry needs {list(fields)})")
    return entries


def resolve_listed_path(listed: str, list_file: Path) -> Path:
    """Where a path written in a data list points.

    FAR opens list paths relative to its working directory (the repo root, so they may start with
    ``datasets/<name>/``); the fixtures write them relative to the list's folder. Tried in order:
    absolute; relative to the list's folder; the same with leading components dropped (so
    ``datasets/ucf101/UCF-101/x.mp4`` is found under a root holding ``UCF-101/``); relative to the
    working directory. If none exists, the list-relative path is returned (reading it then fails
    with that path in the message).
    """
    if not isinstance(listed, str) or not listed:
        raise ValueError(f"{list_file}: a listed path must be a non-empty string, got {listed!r}")
    p = Path(listed)
    if p.is_absolute():
        return p
    base = list_file.parent
    parts = p.parts
    for k in range(len(parts)):
        candidate = base.joinpath(*parts[k:])
        if candidate.exists():
            return candidate
    if p.exists():
        return p.resolve()
    return base / p


def load_npz(path: Path, required: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The arrays of an npz archive, which must hold ``required`` (``what`` names the file's role in
    the error messages)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single {type(archive).__name__}, not named arrays")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(path, None, f"not a readable npz archive ({e})") from None
    arrays = {}
    with archive:
        for key in archive.files:
            try:  # each member is decompressed (and CRC-checked) here: corrupt bytes surface per array
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise DataError(path, f"array {key!r}", f"cannot be read, corrupt or truncated "
                                f"({type(e).__name__}: {' '.join(str(e).split())})") from None
    for key in required:
        if key not in arrays:
            raise DataError(path, f"array {key!r}", f"missing (the archive holds {sorted(arrays)}); a {what} needs "
                            f"{list(required)}")
    return arrays


def _numeric_key(path: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.with_suffix("").parts)


def teco_files(root: Path, folder: str, suffix: str) -> list[Path]:
    """TECO's ``<root>/<folder>/*/*<suffix>`` (``<worker>/<n>``), ordered by (worker, n) numerically."""
    base = root / folder
    return sorted(base.glob(f"*/*{suffix}"), key=lambda p: _numeric_key(p.relative_to(base)))


def window(total: int, start: int, num_frames: int | None, stride: int) -> list[int]:
    """The frame indices of a clip; ``num_frames=None`` means every frame of the ``total`` from
    ``start`` on."""
    if num_frames is None:
        num_frames = max(0, math.ceil((total - start) / stride))
    if start < 0 or num_frames < 0 or stride < 1:
        raise ValueError(f"bad clip window: start={start}, num_frames={num_frames}, stride={stride}")
    return [start + stride * i for i in range(num_frames)]


def _short_clip(source: Path | str, total: int, indices: Sequence[int]) -> ValueError:
    stride = indices[1] - indices[0] if len(indices) > 1 else 1
    return ValueError(f"{source}: has {total} frames; the clip needs frame {indices[-1]} "
                      f"({len(indices)} frames from {indices[0]} at stride {stride})")


def _zero_pad(frames: np.ndarray | Tensor, length: int) -> np.ndarray | Tensor:
    missing = length - frames.shape[0]
    if isinstance(frames, Tensor):
        return torch.cat([frames, frames.new_zeros((missing, *frames.shape[1:]))])
    return np.concatenate([frames, np.zeros((missing, *frames.shape[1:]), frames.dtype)])


def take_frames(frames: np.ndarray | Tensor, indices: Sequence[int], *, pad: bool,
                source: Path | str) -> np.ndarray | Tensor:
    """``frames[indices]`` along the first axis for increasing ``indices``. Frames past the end are
    zeros when ``pad`` (FAR's UCF-101/BAIR behaviour), else a ValueError naming ``source``."""
    inside = [i for i in indices if i < frames.shape[0]]
    if len(inside) < len(indices) and not pad:
        raise _short_clip(source, frames.shape[0], indices)
    taken = frames[inside]
    return _zero_pad(taken, len(indices)) if len(inside) < len(indices) else taken


def read_frames(path: Path, indices: Sequence[int], *, pad: bool) -> np.ndarray:
    """Decode frames ``indices`` (increasing) of a video file; past the end as in ``take_frames``."""
    frames = read_video(path, indices)
    if frames.shape[0] < len(indices):
        if not pad:
            raise _short_clip(path, video_info(path).num_frames, indices)
        frames = _zero_pad(frames, len(indices))
    return frames


def resize_crop(x: Tensor, size: int | None, position: tuple[float, float] | None = None,
                mode: str = "bilinear") -> Tensor:
    """torchvision ``Resize(size)`` then ``CenterCrop(size)`` on (..., H, W) tensors.

    The shorter side becomes ``size`` (the longer one ``int(size * long / short)``, as torchvision
    computes it), with antialiased bilinear interpolation (``mode="nearest"`` for masks and class
    maps), then a ``size`` x ``size`` crop. ``position=None`` is torchvision's center crop; a pair
    (u_y, u_x) in [0, 1) picks offset ``floor((slack + 1) * u)``, so uniform u gives torchvision's
    ``RandomCrop``. ``size=None`` returns ``x`` unchanged.
    """
    if size is None:
        return x
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        short, long = min(h, w), max(h, w)
        new_long = int(size * long / short)
        new_h, new_w = (size, new_long) if h <= w else (new_long, size)
        if (new_h, new_w) != (h, w):
            lead = x.shape[:-2]
            flat = x.reshape(-1, 1, h, w)
            if mode == "nearest":
                flat = F.interpolate(flat.float(), size=(new_h, new_w), mode="nearest-exact").to(x.dtype)
            else:
                flat = F.interpolate(flat, size=(new_h, new_w), mode="bilinear", align_corners=False,
                                     antialias=True)
            x = flat.reshape(*lead, new_h, new_w)
            h, w = new_h, new_w
    if (h, w) == (size, size):
        return x
    if position is None:
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    else:
        top = min(int((h - size + 1) * position[0]), h - size)
        left = min(int((w - size + 1) * position[1]), w - size)
    return x[..., top:top + size, left:left + size]


def check_poses(poses: np.ndarray, num_frames: int, path: Path) -> np.ndarray:
    """The optional ``poses`` array the maze stand-ins add to their npz files: integer (T, 3) with one
    pose (lattice x, lattice y, heading) per frame. Real DMLab/Minecraft files have no such array."""
    if poses.ndim != 2 or poses.shape[1] != 3 or poses.dtype.kind not in "iu":
        raise ValueError(f"{path}: 'poses' must be an integer (T, 3) array, got {poses.dtype} {poses.shape}")
    if len(poses) != num_frames:
        raise ValueError(f"{path}: 'poses' has {len(poses)} entries but the video has {num_frames} frames "
                         "(one pose per frame expected)")
    return poses.astype(np.int64)
