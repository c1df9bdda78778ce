"""DMLab-40k (TECO): one npz per trajectory holding ``video`` and ``actions``.

Layouts read (root = the dataset folder, e.g. ``datasets/dmlab``):

- FAR: ``<root>/dmlab_{train,val}.json``, entries ``{"video_path": <npz>}`` (pixel mode).
- TECO: ``<root>/{train,test}/<worker>/<n>.npz``, ordered by (worker, n) numerically.

One file: ``video`` uint8 (T, 64, 64, 3) (T = 300), ``actions`` int64 (T,) with 0 look left, 1 look
right, 2 forward; ``actions[t]`` is the action taken after frame t, and FAR pairs it with frame t
(kept as is). The maze stand-in's files also hold ``poses`` int64 (T, 3), the agent's pose per
frame; real files do not, and ``read_clip`` returns ``poses`` only when the file has them. ``validation``/``val``/``test`` is the JSON val list or TECO's ``test`` folder. Clips
longer than the trajectory are an error (FAR raises too).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from bench.data.video_io import (ClipDict, VideoRef, check_poses, load_json_list, load_npz, resize_crop,
                                 resolve_listed_path, take_frames, teco_files, to_float_video, window)

NAME = "dmlab"
SPLITS = {"validation": ("test", "dmlab_val.json"), "val": ("test", "dmlab_val.json"),
          "test": ("test", "dmlab_val.json"), "train": ("train", "dmlab_train.json")}


def list_videos(root: str | Path, split: str) -> list[VideoRef]:
    """The trajectories of ``split``: the FAR JSON list if present, else TECO's folder."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"dmlab: unknown split {split!r}; choose one of {sorted(SPLITS)}")
    folder, list_name = SPLITS[split]
    json_path = root / list_name
    if json_path.is_file():
        refs = []
        for entry in load_json_list(json_path, ("video_path",)):
            path = resolve_listed_path(entry["video_path"], json_path)
            refs.append(VideoRef(NAME, str(Path(entry["video_path"]).with_suffix("")), path))
        return refs
    files = teco_files(root, folder, ".npz")
    if not files:
        raise FileNotFoundError(f"dmlab: no {list_name} and no {folder}/*/*.npz under {root}")
    return [VideoRef(NAME, str(f.relative_to(root).with_suffix("")), f) for f in files]


def count_frames(ref: VideoRef) -> int:
    """T from the npy header of ``video`` (the frames are not decompressed)."""
    if ref.num_frames:
        return ref.num_frames
    try:
        with zipfile.ZipFile(ref.path) as z:
            if "video.npy" not in z.namelist():
                raise ValueError(f"{ref.path}: no array 'video' (the archive holds {z.namelist()})")
            with z.open("video.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape = read_header(f)[0]
    except zipfile.BadZipFile as e:
        raise ValueError(f"{ref.path}: not an npz file ({e})") from e
    return int(shape[0])


def load_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``video`` uint8 (T, H, W, 3) and ``actions`` int64 (T,), checked."""
    video, actions, _ = _load(path)
    return video, actions


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``video``, ``actions`` and the stand-in's ``poses`` (None in real files), checked."""
    arrays = load_npz(path, ("video", "actions"), "DMLab trajectory")
    video, actions = arrays["video"], arrays["actions"]
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{path}: 'video' must be uint8 (T, H, W, 3), got {video.dtype} {video.shape}")
    if actions.ndim != 1 or actions.dtype.kind not in "iu":
        raise ValueError(f"{path}: 'actions' must be an integer (T,) array, got {actions.dtype} {actions.shape}")
    if len(actions) != len(video):
        raise ValueError(f"{path}: 'actions' has {len(actions)} entries but 'video' has {len(video)} frames "
                         "(one action per frame expected)")
    poses = check_poses(arrays["poses"], len(video), path) if "poses" in arrays else None
    return video, actions.astype(np.int64), poses


def read_clip(ref: VideoRef, start: int = 0, num_frames: int | None = None, stride: int = 1,
              resolution: int | None = None, *, crop_position: tuple[float, float] | None = None) -> ClipDict:
    """``video`` (T, 3, res, res) in [0, 1], ``actions`` int64 (T,), and ``poses`` int64 (T, 3) when the
    file has them (the stand-in)."""
    video, actions, poses = _load(ref.path)
    indices = window(len(video), start, num_frames, stride)
    frames = take_frames(video, indices, pad=False, source=ref.path)
    clip = ClipDict(video=resize_crop(to_float_video(frames), resolution, crop_position), label=None,
                    actions=torch.from_numpy(actions[indices]), id=ref.id)
    if poses is not None:
        clip["poses"] = torch.from_numpy(poses[indices])
    return clip
