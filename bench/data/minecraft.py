"""Minecraft-200k (TECO): one mp4 (MPEG-4 Part 2, 20 fps, 128x128) + one npz ``actions`` per trajectory.

Layouts read (root = the dataset folder, e.g. ``datasets/minecraft``):

- FAR: ``<root>/minecraft_{train,val}.json``, entries ``{"video_path": <mp4>, "action_path": <npz>}``.
- TECO: ``<root>/{train,test}/<worker>/<i:06d>.mp4`` with the sibling ``<i:06d>.npz``; a missing npz
  means all-zero actions, as in TECO's loader.

``actions`` (int32 on disk, int64 here), one per frame (301 of each for a 300-step trajectory):
0 none (first frame), 1 forward, 2 turn left, 3 turn right; ``actions[t]`` produced frame t. The
protocols read frames 0..299. Clips longer than the trajectory are an error (FAR raises too). The maze
stand-in's npz also holds ``poses`` int64 (T, 3), the agent's pose per frame; real files do not, and
``read_clip`` returns ``poses`` only when the file has them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data.video_io import (ClipDict, VideoRef, check_poses, load_json_list, load_npz, read_frames,
                                 resize_crop, resolve_listed_path, teco_files, to_float_video, video_info, window)

NAME = "minecraft"
SPLITS = {"validation": ("test", "minecraft_val.json"), "val": ("test", "minecraft_val.json"),
          "test": ("test", "minecraft_val.json"), "train": ("train", "minecraft_train.json")}


def list_videos(root: str | Path, split: str) -> list[VideoRef]:
    """The trajectories of ``split``: the FAR JSON list if present, else TECO's folder."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"minecraft: unknown split {split!r}; choose one of {sorted(SPLITS)}")
    folder, list_name = SPLITS[split]
    json_path = root / list_name
    if json_path.is_file():
        return [VideoRef(NAME, str(Path(e["video_path"]).with_suffix("")),
                         resolve_listed_path(e["video_path"], json_path),
                         action_path=resolve_listed_path(e["action_path"], json_path))
                for e in load_json_list(json_path, ("video_path", "action_path"))]
    files = teco_files(root, folder, ".mp4")
    if not files:
        raise FileNotFoundError(f"minecraft: no {list_name} and no {folder}/*/*.mp4 under {root}")
    return [VideoRef(NAME, str(f.relative_to(root).with_suffix("")), f,
                     action_path=f.with_suffix(".npz") if f.with_suffix(".npz").is_file() else None)
            for f in files]


def count_frames(ref: VideoRef) -> int:
    return ref.num_frames or video_info(ref.path).num_frames


def load_actions(ref: VideoRef, num_frames: int) -> np.ndarray:
    """int64 (num_frames,) actions of a trajectory whose video has ``num_frames`` frames."""
    return _load_actions(ref, num_frames)[0]


def _load_actions(ref: VideoRef, num_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The actions and the stand-in's ``poses`` (None in real files and without an action file)."""
    if ref.action_path is None:
        return np.zeros(num_frames, np.int64), None
    arrays = load_npz(ref.action_path, ("actions",), "Minecraft action file")
    actions = arrays["actions"]
    if actions.ndim != 1 or actions.dtype.kind not in "iu":
        raise ValueError(f"{ref.action_path}: 'actions' must be an integer (T,) array, got "
                         f"{actions.dtype} {actions.shape}")
    if len(actions) != num_frames:
        raise ValueError(f"{ref.action_path}: 'actions' has {len(actions)} entries but {ref.path} has "
                         f"{num_frames} frames (one action per frame expected)")
    poses = check_poses(arrays["poses"], num_frames, ref.action_path) if "poses" in arrays else None
    return actions.astype(np.int64), poses


def read_clip(ref: VideoRef, start: int = 0, num_frames: int | None = None, stride: int = 1,
              resolution: int | None = None, *, crop_position: tuple[float, float] | None = None) -> ClipDict:
    """``video`` (T, 3, res, res) in [0, 1], ``actions`` int64 (T,), and ``poses`` int64 (T, 3) when the
    action file has them (the stand-in)."""
    total = count_frames(ref)
    actions, poses = _load_actions(ref, total)
    indices = window(total, start, num_frames, stride)
    video = to_float_video(read_frames(ref.path, indices, pad=False))
    clip = ClipDict(video=resize_crop(video, resolution, crop_position), label=None,
                    actions=torch.from_numpy(actions[indices]), id=ref.id)
    if poses is not None:
        clip["poses"] = torch.from_numpy(poses[indices])
    return clip
