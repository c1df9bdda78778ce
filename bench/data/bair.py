"""BAIR robot pushing: the original ``softmotion30_44k`` TFRecords, or FAR-style mp4 + JSON lists.

Layouts read (root = the dataset folder, e.g. ``datasets/bair``):

- Original: ``<root>/softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords`` (files ordered by
  ``a``), one ``tf.train.Example`` per trajectory with, for t = 0..29, ``{t}/image_aux1/encoded``
  (raw RGB bytes, 64x64x3, row-major HWC; the camera every prediction codebase uses),
  ``{t}/image_main/encoded``, ``{t}/action`` (4 floats) and ``{t}/endeffector_pos`` (3 floats).
  Lossless: the default when present.
- FAR: ``<root>/bair_{train,val}.json`` (or under ``softmotion30_44k/``, where FAR's DC-AE config
  looks), entries ``{"video_path": <64x64 mp4>, "action_path": <.npy (T, 4) or .npz 'actions'>}``;
  an ``endeffector_pos.npy`` next to a ``video.mp4`` is read too (both only where they exist: FAR
  lists the action file but never opens it). ``convert_to_far_layout`` writes this layout from the
  TFRecords as ``processed/<split>/<tfrecord stem>/<k>/{video.mp4, actions.npy,
  endeffector_pos.npy}`` (the fixture's naming; FAR's own naming is not public).

Video ids are ``<tfrecord stem>/<k>`` in both layouts (k counts records from 0), so the same
trajectory has the same id. Clips carry ``actions=None`` (the protocols are unconditional; FAR
ignores actions) and the continuous ``action_vectors`` (T, 4) and ``endeffector_pos`` (T, 3).
Frames past the end of a trajectory are zeros (FAR's behaviour).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from bench.data import tfrecord
from bench.data.video_io import (ClipDict, VideoRef, load_json_list, load_npz, read_frames, resize_crop,
                                 resolve_listed_path, take_frames, to_float_video, video_info, window,
                                 write_video)

NAME = "bair"
SIZE = 64
CAMERA = "image_aux1"
SPLITS = {"test": ("test", "bair_val.json"), "val": ("test", "bair_val.json"),
          "validation": ("test", "bair_val.json"), "train": ("train", "bair_train.json")}
LAYOUTS = ("tfrecord", "far")


def _split(split: str) -> tuple[str, str]:
    if split not in SPLITS:
        raise ValueError(f"bair: unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[split]


def _tfrecord_files(root: Path, folder: str) -> list[Path]:
    def first_index(p: Path) -> tuple[int, str]:
        m = re.match(r"traj_(\d+)_to_\d+$", p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted((root / "softmotion30_44k" / folder).glob("*.tfrecords"), key=first_index)


def _json_list(root: Path, name: str) -> Path | None:
    return next((p for p in (root / name, root / "softmotion30_44k" / name) if p.is_file()), None)


def list_videos(root: str | Path, split: str, layout: str | None = None) -> list[VideoRef]:
    """The trajectories of ``split`` in file/list order. ``layout``: ``tfrecord``, ``far`` or None
    (TFRecords when present, else the JSON list)."""
    root = Path(root)
    folder, list_name = _split(split)
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"bair: unknown layout {layout!r}; choose one of {LAYOUTS} or None")
    files = _tfrecord_files(root, folder) if layout != "far" else []
    if files:
        return [VideoRef(NAME, f"{f.stem}/{k}", f, record=offset)
                for f in files for k, offset in enumerate(tfrecord.record_offsets(f))]
    json_path = _json_list(root, list_name) if layout != "tfrecord" else None
    if json_path is None:
        wanted = {None: "TFRecords or a JSON list", "tfrecord": "TFRecords", "far": "a JSON list"}[layout]
        raise FileNotFoundError(f"bair: no {wanted} for split {split!r} under {root} (looked for "
                                f"softmotion30_44k/{folder}/*.tfrecords and {list_name})")
    refs = []
    for entry in load_json_list(json_path, ("video_path", "action_path")):
        video = resolve_listed_path(entry["video_path"], json_path)
        ident = f"{video.parent.parent.name}/{video.parent.name}" if video.name == "video.mp4" else \
            str(Path(entry["video_path"]).with_suffix(""))
        refs.append(VideoRef(NAME, ident, video, action_path=resolve_listed_path(entry["action_path"], json_path)))
    return refs


# ----------------------------------------------------------------------------- TFRecord trajectories


def read_trajectory(ref: VideoRef, camera: str = CAMERA) -> dict[str, np.ndarray]:
    """All frames of one TFRecord trajectory: ``video`` uint8 (T, 64, 64, 3), ``action_vectors``
    float32 (T, 4), ``endeffector_pos`` float32 (T, 3). The record's CRC is verified."""
    source = f"{ref.path} (record at byte {ref.record})"
    example = tfrecord.parse_example(tfrecord.read_record(ref.path, ref.record or 0), source=source)
    steps = 0
    while f"{steps}/{camera}/encoded" in example:
        steps += 1
    if steps == 0:
        raise ValueError(f"{source}: no feature '0/{camera}/encoded' (keys start {sorted(example)[:4]})")
    frames, actions, positions = [], [], []
    for t in range(steps):
        image = example[f"{t}/{camera}/encoded"]
        if not isinstance(image, list) or len(image) != 1 or len(image[0]) != SIZE * SIZE * 3:
            raise ValueError(f"{source}: feature '{t}/{camera}/encoded' must be one bytes value of "
                             f"{SIZE * SIZE * 3} raw RGB bytes, got "
                             f"{[len(v) for v in image] if isinstance(image, list) else 'a number list'}")
        frames.append(np.frombuffer(image[0], np.uint8).reshape(SIZE, SIZE, 3))
        for key, size, out in ((f"{t}/action", 4, actions), (f"{t}/endeffector_pos", 3, positions)):
            value = example.get(key)
            if not isinstance(value, np.ndarray) or value.shape != (size,) or value.dtype != np.float32:
                raise ValueError(f"{source}: feature '{key}' must be a float list of {size} values, got "
                                 f"{value!r:.80}")
            out.append(value)
    return {"video": np.stack(frames), "action_vectors": np.stack(actions), "endeffector_pos": np.stack(positions)}


# ----------------------------------------------------------------------------- FAR layout


def _load_vectors(path: Path, columns: int) -> np.ndarray:
    """A float (T, columns) array from a .npy file or an npz's ``actions``."""
    if path.suffix == ".npz":
        array = load_npz(path, ("actions",), "BAIR action file")["actions"]
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if array.ndim != 2 or array.shape[1] != columns or array.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a numeric (T, {columns}) array, got {array.dtype} {array.shape}")
    return array.astype(np.float32)


def count_frames(ref: VideoRef) -> int:
    if ref.num_frames:
        return ref.num_frames
    if ref.record is not None:
        return len(read_trajectory(ref)["video"])
    return video_info(ref.path).num_frames


def read_clip(ref: VideoRef, start: int = 0, num_frames: int | None = None, stride: int = 1,
              resolution: int | None = None, *, crop_position: tuple[float, float] | None = None) -> ClipDict:
    """``video`` (T, 3, res, res) in [0, 1] from ``image_aux1``; ``action_vectors`` (T, 4) and
    ``endeffector_pos`` (T, 3) float32 where the layout has them."""
    if ref.record is not None:
        traj = read_trajectory(ref)
        indices = window(len(traj["video"]), start, num_frames, stride)
        parts = {k: take_frames(v, indices, pad=True, source=ref.path) for k, v in traj.items()}
    else:
        indices = window(count_frames(ref) if num_frames is None else 0, start, num_frames, stride)
        parts = {"video": read_frames(ref.path, indices, pad=True)}
        per_folder = ref.path.name == "video.mp4"  # one folder per trajectory: sidecar files
        sidecars = (("action_vectors", ref.action_path, 4),
                    ("endeffector_pos", ref.path.with_name("endeffector_pos.npy") if per_folder else None, 3))
        for key, path, columns in sidecars:
            if path is not None and path.is_file():  # FAR lists action files but never opens them
                parts[key] = take_frames(_load_vectors(path, columns), indices, pad=True, source=path)
    clip = ClipDict(video=resize_crop(to_float_video(parts.pop("video")), resolution, crop_position),
                    label=None, actions=None, id=ref.id)
    for key, value in parts.items():
        clip[key] = torch.from_numpy(np.ascontiguousarray(value))
    return clip


def convert_to_far_layout(root: str | Path, split: str, out_root: str | Path, codec: str = "h264",
                          fps: float = 10.0) -> Path:
    """Write the TFRecord trajectories of ``split`` in the FAR-style layout under ``out_root``
    (mp4 + actions.npy + endeffector_pos.npy per trajectory, and the JSON list with paths relative
    to ``out_root``); returns the JSON list's path."""
    out_root = Path(out_root)
    folder, list_name = _split(split)
    entries = []
    for ref in list_videos(root, split, layout="tfrecord"):
        traj = read_trajectory(ref)
        out = out_root / "processed" / folder / ref.id
        write_video(out / "video.mp4", traj["video"], fps, codec=codec)
        np.save(out / "actions.npy", traj["action_vectors"])
        np.save(out / "endeffector_pos.npy", traj["endeffector_pos"])
        entries.append({"video_path": str((out / "video.mp4").relative_to(out_root)),
                        "action_path": str((out / "actions.npy").relative_to(out_root))})
    list_path = out_root / list_name
    list_path.write_text(json.dumps(entries, indent=1))
    return list_path
