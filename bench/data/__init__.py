"""Real-format dataset readers, the evaluation selections of every task, and torch datasets.

Every dataset module (``DATASETS[name]``) has the same API:

- ``list_videos(root, split) -> list[VideoRef]`` in the official list order;
- ``read_clip(ref, start, num_frames=None, stride, resolution=None, *, crop_position=None) -> ClipDict``
  with ``video`` float32 (T, 3, H, W) in [0, 1], ``label``, ``actions`` int64 (T,) or None, ``id``;
- ``count_frames(ref) -> int`` without decoding where the format allows.

Here: ``resolve_root`` finds a dataset on disk, ``eval_refs`` / ``train_refs`` implement each
task's selection (``bench.tasks``, ``../shared/PROTOCOLS.md``), ``ClipDataset`` serves the evaluated
clips and ``TrainClipDataset`` random training windows.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from types import ModuleType
from typing import Mapping

import torch
from torch.utils.data import Dataset

from bench.data import bair, dmlab, greenearthnet, minecraft, ucf101
from bench.data.check import reading
from bench.errors import DataError
from bench.data.video_io import ClipDict, VideoRef
from bench.recipes import recipe_for
from bench.tasks import Task

__all__ = ["DATASETS", "ClipDataset", "ClipDict", "TrainClipDataset", "VideoRef", "dataset_module",
           "eval_refs", "mcvd_spread", "resolve_root", "seeded_selection", "train_refs", "ucf_balanced"]

DATASETS: dict[str, ModuleType] = {m.NAME: m for m in (ucf101, bair, dmlab, minecraft, greenearthnet)}

# ucf101_pred_mcvd: MCVD/ExtDM map this many indices evenly over the every-10th test clips.
MCVD_NUM_VIDEOS = 256


def dataset_module(dataset: str) -> ModuleType:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[dataset]


def resolve_root(dataset: str, flag: str | Path | None = None,
                 config: str | Path | Mapping[str, str | Path | None] | None = None) -> Path | None:
    """Where ``dataset`` lives, or None when no location is configured and none exists.

    Priority: ``flag`` (a command-line path); ``config`` (a path, or a mapping with the dataset's
    name as key); ``$FARZOO_<DATASET>_ROOT``; ``$FARZOO_DATA/<dataset>``. A path given by the first
    three that does not exist is an error (naming the path and where it came from); under
    ``$FARZOO_DATA`` a missing ``<dataset>`` folder means "not there" (None), a missing
    ``$FARZOO_DATA`` folder is an error.
    """
    dataset_module(dataset)
    if isinstance(config, Mapping):
        config = config.get(dataset)
    env = f"FARZOO_{dataset.upper()}_ROOT"
    for source, value in (("the command-line flag", flag), ("the config", config), (f"${env}", os.environ.get(env))):
        if value:
            path = Path(value).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"{dataset} root {path} (from {source}) does not exist")
            return path
    data = os.environ.get("FARZOO_DATA")
    if not data:
        return None
    base = Path(data).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"$FARZOO_DATA={base} is not a folder")
    return base / dataset if (base / dataset).exists() else None


# ----------------------------------------------------------------------------- selections


def ucf_balanced(refs: list[VideoRef], num_samples: int, seed: int) -> list[VideoRef]:
    """FAR's UCF-101 generation real set (``far/data/ucf_dataset.py: get_balanced_dataset``) as process
    rank 0 draws it after ``random.seed(seed)``: the clips grouped by label in order of first
    appearance in ``refs`` (a dict filled in list order), ``ceil(num_samples / classes)`` clips of each
    class by ``random.sample`` in that order, ``random.shuffle`` of the whole, the first
    ``num_samples``. A class with fewer clips gives all of them (FAR's ``random.sample`` raises)."""
    rng = random.Random(seed)  # the same stream as random.seed(seed) and the module-level functions
    by_class: dict[int | None, list[VideoRef]] = {}
    for ref in refs:
        by_class.setdefault(ref.label, []).append(ref)
    if not by_class or num_samples <= 0:
        return []
    per_class = math.ceil(num_samples / len(by_class))
    chosen = [r for items in by_class.values() for r in rng.sample(items, min(per_class, len(items)))]
    rng.shuffle(chosen)
    return chosen[:num_samples]


def mcvd_spread(refs: list[VideoRef], count: int = MCVD_NUM_VIDEOS) -> list[VideoRef]:
    """MCVD/ExtDM: ``count`` clips at indices ``round(i / (count - 1) * (m - 1)) * 10`` of the test
    list, m = len(refs) // 10 (369 for test03's 3,696 clips)."""
    m = len(refs) // 10
    count = min(count, m)
    if count <= 1:
        return refs[:count]
    return [refs[round(i / (count - 1) * (m - 1)) * 10] for i in range(count)]


def seeded_selection(task: Task) -> bool:
    """Whether ``task``'s evaluated set is drawn anew for every evaluation seed (UCF-101 generation:
    FAR seeds Python's ``random`` with the seed before drawing its class-balanced real set)."""
    return task.dataset == "ucf101" and "per class" in task.selection


def _select_ucf(task: Task, refs: list[VideoRef], seed: int) -> list[VideoRef]:
    selection = task.selection  # checked in this order: the MCVD text also contains "[::10]"
    if "spread evenly" in selection:  # ucf101_pred_mcvd
        return mcvd_spread(refs)
    if seeded_selection(task):  # generation tasks: the class-balanced real reference set
        return ucf_balanced(refs, task.num_videos, seed)
    if "[::10]" in selection:  # ucf101_pred (FAR): test03.json[::10][:256]
        return refs[::10]
    raise ValueError(f"task {task.name}: no UCF-101 selection rule matches {selection!r}")


def eval_refs(task: Task, root: str | Path, seed: int | None = None) -> list[tuple[VideoRef, int]]:
    """The evaluated videos of ``task`` under evaluation seed ``seed`` and the first frame of each
    clip, truncated to ``task.num_videos`` (0 = all).

    UCF-101 follows ``task.selection``: every 10th entry of the test list (FAR), 256 spread evenly
    over those (MCVD/ExtDM), or the class-balanced real set of the generation tasks, drawn anew for
    every seed (``ucf_balanced``; ``seed=None`` means the task's first seed). The other datasets take
    their evaluation list in order whatever the seed (BAIR: all test trajectories; DMLab/Minecraft:
    the validation list; GreenEarthNet: every cube of the track, clips from Sentinel-2 day 4).
    """
    refs = dataset_module(task.dataset).list_videos(Path(root), task.split)
    if task.dataset == "ucf101":
        refs = _select_ucf(task, refs, task.seeds[0] if seed is None else seed)
    start = greenearthnet.FIRST_S2_DAY if task.dataset == "greenearthnet" else 0
    if task.num_videos > 0:
        refs = refs[:task.num_videos]
    return [(ref, start) for ref in refs]


def train_refs(task: Task, root: str | Path) -> list[VideoRef]:
    """Every video of the task's training split."""
    return dataset_module(task.dataset).list_videos(Path(root), task.train_split)


# ----------------------------------------------------------------------------- torch datasets


class ClipDataset(Dataset):
    """The evaluated clips of a task: ``task.num_frames`` frames at ``task.frame_stride`` and
    ``task.resolution`` from each (ref, start) pair.

    ``seed`` is the evaluation seed ``refs`` were selected for (None: the task's first seed, as
    ``eval_refs`` takes it). ``for_seed(s)`` gives the clips of seed ``s``: this dataset itself unless
    the task's selection is drawn per seed (``seeded_selection``), then ``eval_refs(task, root, s)``.
    ``fix`` is the advice a bad file's ``DataError`` gives.
    """

    def __init__(self, task: Task, refs: list[tuple[VideoRef, int]], root: str | Path | None = None,
                 seed: int | None = None, fix: str | None = None):
        self.task, self.refs, self.root, self.fix = task, list(refs), root, fix
        self.seed = task.seeds[0] if seed is None else seed
        self.module = dataset_module(task.dataset)
        self._per_seed: dict[int, ClipDataset] = {self.seed: self}

    def for_seed(self, seed: int) -> "ClipDataset":
        if not seeded_selection(self.task):
            return self
        if seed not in self._per_seed:
            if self.root is None:
                raise ValueError(f"ClipDataset({self.task.name}): its clips are drawn per evaluation seed; "
                                 f"seed {seed} needs the dataset root (give root=)")
            other = ClipDataset(self.task, eval_refs(self.task, self.root, seed), self.root, seed, self.fix)
            other._per_seed = self._per_seed  # one cache for all seeds
            self._per_seed[seed] = other
        return self._per_seed[seed]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> ClipDict:
        ref, start = self.refs[index]
        with reading(ref.path, self.fix):  # a bad file: one DataError line naming it
            return self.module.read_clip(ref, start, self.task.num_frames, self.task.frame_stride,
                                         self.task.resolution)

    def __repr__(self) -> str:
        seeded = f", seed {self.seed}" if seeded_selection(self.task) else ""
        return f"ClipDataset({self.task.name}, {len(self)} clips from {self.root}{seeded})"


class TrainClipDataset(Dataset):
    """Random training windows: item i is ``num_frames`` frames at ``task.frame_stride`` from a
    uniformly drawn start in video i, at ``task.resolution`` with a random crop position
    (torchvision ``RandomCrop``; only non-square videos have a choice). Draws use torch's global
    RNG, so ``DataLoader`` workers and ``torch.manual_seed`` make them reproducible.

    Starts are any frame (GreenEarthNet: any Sentinel-2 day). A video shorter than the window is
    an error for DMLab/Minecraft/GreenEarthNet (FAR raises); UCF-101 and BAIR start at 0 and pad
    with zero frames, as FAR does (UCF-101 at stride 1 when the clip is too short for the stride).
    ``hflip``: flip the clip horizontally with probability 0.5 (after the crop, as FAR's
    ``use_flip``); by default as the dataset's training recipe says (``bench.recipes``: UCF-101).
    """

    PADDED = ("ucf101", "bair")

    def __init__(self, task: Task, refs: list[VideoRef], root: str | Path | None = None,
                 num_frames: int | None = None, random_crop: bool = True, hflip: bool | None = None,
                 fix: str | None = None):
        self.task, self.refs, self.root, self.fix = task, list(refs), root, fix
        self.module = dataset_module(task.dataset)
        self.num_frames = num_frames or task.num_frames
        self.random_crop = random_crop
        self.hflip = recipe_for(task).hflip if hflip is None else hflip
        if self.hflip and task.dataset == "greenearthnet":
            raise ValueError("TrainClipDataset: hflip would flip only the video of a GreenEarthNet clip, not its "
                             "masks, bands and static layers")
        self._lengths: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def _starts(self, index: int) -> range:
        ref = self.refs[index]
        if index not in self._lengths:
            with reading(ref.path, self.fix):
                self._lengths[index] = self.module.count_frames(ref)
        total, span = self._lengths[index], (self.num_frames - 1) * self.task.frame_stride
        if self.task.dataset == "greenearthnet":
            starts = range(greenearthnet.FIRST_S2_DAY, total - span, greenearthnet.S2_STEP)
        else:
            starts = range(0, total - span)
        if len(starts) == 0:
            if self.task.dataset not in self.PADDED:
                raise DataError(ref.path, "frames", f"has {total} frames, too few for a training window of "
                                f"{self.num_frames} frames at stride {self.task.frame_stride}", self.fix)
            return range(1)
        return starts

    def __getitem__(self, index: int) -> ClipDict:
        starts = self._starts(index)
        start = starts[int(torch.randint(len(starts), ()))]
        position = tuple(torch.rand(2).tolist()) if self.random_crop else None
        with reading(self.refs[index].path, self.fix):
            clip = self.module.read_clip(self.refs[index], start, self.num_frames, self.task.frame_stride,
                                         self.task.resolution, crop_position=position)
        if self.hflip and float(torch.rand(())) < 0.5:
            clip["video"] = clip["video"].flip(-1)
        return clip

    def __repr__(self) -> str:
        return f"TrainClipDataset({self.task.name}, {len(self)} videos from {self.root})"
