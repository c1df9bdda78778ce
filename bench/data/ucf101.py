"""UCF-101: FAR's JSON lists + mp4, or the official class-folder tree with ``ucfTrainTestlist``.

Layouts read (root = the dataset folder, e.g. ``datasets/ucf101``):

- FAR: ``<root>/{train03,test03,trainval}.json``, each a JSON array of
  ``{"video_path": <mp4>, "label": <0-based class id>}`` in FAR's order (any ``<split>.json`` works,
  e.g. the fixture's ``test02.json``).
- Official: ``<root>/ucfTrainTestlist/{classInd,trainlistNN,testlistNN}.txt`` and the clips under
  ``<root>/UCF-101/<Class>/v_<Class>_gGG_cCC.{avi,mp4}`` (FAR converted them to mp4; both are
  found). ``trainNN``/``testNN`` follow the list files; ``trainval`` is trainlistNN + testlistNN of
  the first split that has both (all 13,320 clips). Labels are classInd id - 1; class names match
  case-insensitively (``HandStandPushups`` vs ``HandstandPushups``).

A JSON list wins over the text lists. ``train``/``test`` mean split 3, as FAR's configs use.
Clips: ``Resize(resolution)`` on the shorter side + ``CenterCrop`` (``crop_position`` for a random
crop); a clip too short for its stride is read at stride 1 and frames past the end of a short clip
are zeros (FAR's behaviour).
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.data.video_io import (ClipDict, VideoRef, load_json_list, read_frames, resize_crop,
                                 resolve_listed_path, to_float_video, video_info, window)

NAME = "ucf101"
NUM_CLASSES = 101
SPLIT_ALIASES = {"train": "train03", "test": "test03"}
_LIST_DIRS = ("ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist", ".")
_VIDEO_DIRS = ("UCF-101", "UCF101")


def _read_lines(path: Path) -> list[str]:
    """Lines of an official list file (CRLF, maybe no final newline, maybe blank lines)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_class_index(path: Path) -> dict[str, int]:
    """``classInd.txt`` -> {lower-case class name: 0-based id}."""
    classes: dict[str, int] = {}
    for n, line in enumerate(_read_lines(path), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}: line {n} should be '<1-based id> <ClassName>', got {line!r}")
        classes[parts[1].lower()] = int(parts[0]) - 1
    return classes


class _ClipIndex:
    """Clip files under the video folder, looked up by lower-case ``class/stem`` (any extension)."""

    def __init__(self, video_dir: Path):
        self.video_dir = video_dir
        self.files: dict[str, Path] = {}
        if video_dir.is_dir():
            for class_dir in sorted(p for p in video_dir.iterdir() if p.is_dir()):
                for f in class_dir.iterdir():
                    self.files.setdefault(f"{class_dir.name}/{f.stem}".lower(), f)

    def find(self, listed: str) -> Path:
        found = self.files.get(str(Path(listed).with_suffix("")).lower())
        if found is not None:
            return found
        return self.video_dir / listed  # absent: reading it names this path


def _from_text_lists(root: Path, split: str) -> list[VideoRef]:
    if not re.fullmatch(r"(train|test)0[1-3]|trainval", split):
        raise ValueError(f"ucf101: unknown split {split!r} (no {root / (split + '.json')}; official splits are "
                         "train01..03, test01..03 and trainval)")
    list_dir = next((root / d for d in _LIST_DIRS if (root / d / "classInd.txt").is_file()), None)
    if list_dir is None:
        raise FileNotFoundError(f"ucf101: no {split}.json and no ucfTrainTestlist/classInd.txt under {root}")
    classes = read_class_index(list_dir / "classInd.txt")
    if split == "trainval":
        for k in ("01", "02", "03"):
            if (list_dir / f"trainlist{k}.txt").exists() and (list_dir / f"testlist{k}.txt").exists():
                files = [list_dir / f"trainlist{k}.txt", list_dir / f"testlist{k}.txt"]
                break
        else:
            raise FileNotFoundError(f"ucf101: trainval needs trainlistNN.txt and testlistNN.txt of one split "
                                    f"in {list_dir}")
    else:
        files = [list_dir / f"{split[:-2]}list{split[-2:]}.txt"]
    index = _ClipIndex(next((root / d for d in _VIDEO_DIRS if (root / d).is_dir()), root / _VIDEO_DIRS[0]))
    refs = []
    for file in files:
        if not file.exists():
            raise FileNotFoundError(f"ucf101: split list {file} does not exist")
        for n, line in enumerate(_read_lines(file), 1):
            parts = line.split()
            class_name = parts[0].split("/")[0].lower()
            if class_name not in classes or len(parts) > 2:
                raise ValueError(f"{file}: line {n}: expected '<Class>/<clip>.avi[ <1-based id>]' with a class "
                                 f"from classInd.txt, got {line!r}")
            label = classes[class_name]
            if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
                raise ValueError(f"{file}: line {n}: class id {parts[1]!r} disagrees with classInd.txt "
                                 f"({parts[0].split('/')[0]} = {label + 1})")
            refs.append(VideoRef(NAME, Path(parts[0]).stem, index.find(parts[0]), label=label))
    return refs


def list_videos(root: str | Path, split: str) -> list[VideoRef]:
    """The clips of ``split`` in list order (``<split>.json`` if present, else the official lists)."""
    root = Path(root)
    split = SPLIT_ALIASES.get(split, split)
    json_path = root / f"{split}.json"
    if not json_path.exists():
        return _from_text_lists(root, split)
    refs = []
    for i, entry in enumerate(load_json_list(json_path, ("video_path", "label"))):
        label = entry["label"]
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < NUM_CLASSES:
            raise ValueError(f"{json_path}: entry {i} field 'label' must be an int class id in "
                             f"[0, {NUM_CLASSES}), got {label!r}")
        path = resolve_listed_path(entry["video_path"], json_path)
        refs.append(VideoRef(NAME, path.stem, path, label=label))
    return refs


def count_frames(ref: VideoRef) -> int:
    return ref.num_frames or video_info(ref.path).num_frames


def clip_stride(total: int, num_frames: int, stride: int) -> int:
    """The frame stride FAR reads a clip of ``total`` frames at (``far/data/ucf_dataset.py``, in
    training and evaluation): ``stride`` if the clip holds ``num_frames`` frames at that stride,
    otherwise 1 (16 frames at stride 3 need 46; a clip of 16-45 frames is read at stride 1 from
    frame 0, a shorter one at stride 1 and zero-padded)."""
    return stride if total - (num_frames - 1) * stride >= 1 else 1


def read_clip(ref: VideoRef, start: int = 0, num_frames: int | None = None, stride: int = 1,
              resolution: int | None = None, *, crop_position: tuple[float, float] | None = None) -> ClipDict:
    """``video`` (T, 3, res, res) in [0, 1], ``label`` 0..100, ``actions`` None. A clip from frame 0
    too short for ``num_frames`` frames at ``stride`` is read at stride 1 (``clip_stride``, FAR's rule)."""
    if num_frames is not None and start == 0 and stride > 1:
        stride = clip_stride(count_frames(ref), num_frames, stride)
    indices = window(count_frames(ref) if num_frames is None else 0, start, num_frames, stride)
    video = to_float_video(read_frames(ref.path, indices, pad=True))
    return ClipDict(video=resize_crop(video, resolution, crop_position), label=ref.label, actions=None, id=ref.id)
