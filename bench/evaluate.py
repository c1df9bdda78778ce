"""Evaluation is sample -> store -> score.

Every sample is stored losslessly (uint8 npz, one file per (part, seed, video, trajectory)) with a
seed derived from (task hash, model, part, seed, video, trajectory), so results do not depend on
the number of processes or the batch size, an interrupted run resumes without redoing finished
samples, and ``bench score`` recomputes metrics from the store without sampling again. Videos are
split over processes by index (``torchrun``); scoring runs on the whole store.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from bench.api import Prompt, check_sample
from bench.tasks import Metric, Part, Task


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any identifying values (stable across processes, machines and versions)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class SampleKey:
    part: str
    seed: int
    video: int
    trajectory: int

    def path(self, store: Path) -> Path:
        return store / self.part / f"seed{self.seed}" / f"{self.video:05d}_t{self.trajectory:03d}.npz"


def to_uint8(video: Tensor) -> np.ndarray:
    """(T, C, H, W) float in [0, 1] -> (T, H, W, C) uint8, rounding to nearest."""
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(frames: np.ndarray) -> Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def write_sample(path: Path, frames: np.ndarray, **extra: np.ndarray) -> None:
    """Atomic write of one sample (uint8 (T, H, W, C)) and any ``extra`` arrays stored next to it
    (GreenEarthNet: ``ndvi`` float32 (T, H, W), the model's NDVI prediction)."""
    if "frames" in extra:
        raise ValueError("write_sample: 'frames' is the uint8 video itself, not an extra array")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, frames=frames, **extra)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_sample(path: Path) -> Tensor:
    with np.load(path) as f:
        if "frames" not in f:
            raise ValueError(f"{path}: sample file has no 'frames' array")
        return from_uint8(f["frames"])


def read_sample_array(path: Path, name: str, why: str = "") -> np.ndarray:
    """An extra array of one stored sample (see ``write_sample``)."""
    with np.load(path) as f:
        if name not in f:
            raise ValueError(f"{path}: sample file has no {name!r} array{why}")
        return f[name]


def dataset_for_seed(dataset, seed: int):
    """The evaluated clips of evaluation seed ``seed``: ``dataset.for_seed(seed)`` where the dataset
    has it (``bench.data.ClipDataset``: UCF-101 generation draws its real set per seed, as FAR
    does), else ``dataset`` itself for every seed."""
    return dataset.for_seed(seed) if hasattr(dataset, "for_seed") else dataset


def ndvi_array(video: Tensor) -> np.ndarray:
    """The float32 NDVI (T, H, W) of a predicted GreenEarthNet composite (T, 3, H, W) in [0, 1],
    from the model's float output, before any uint8 rounding (stored as ``ndvi`` with the sample)."""
    return ndvi_from_video(video.float().cpu()).float().numpy()


def num_samples(task: Task, dataset) -> int:
    """Videos sampled per (part, seed, trajectory): the task's count, or the whole set when it says 0 (all)."""
    return task.num_videos or len(dataset)


def is_generation(part: Part) -> bool:
    """No context frames: samples are compared with a real *set*, not clip by clip."""
    return part.context_frames == 0


def sample_keys(task: Task, part: Part, videos: int) -> list[SampleKey]:
    return [SampleKey(part.name, s, v, t) for s in task.seeds for v in range(videos)
            for t in range(task.trajectories)]


def _prompt(clips: list[dict], part: Part, device: torch.device) -> Prompt:
    """The prompt of one part from loader clips (dicts with ``video`` (T, C, H, W) and conditions)."""
    tc, tp = part.context_frames, part.predict_frames
    video = torch.stack([c["video"][:tc + tp] for c in clips])
    if video.shape[1] < tc + tp:
        raise ValueError(f"clip {clips[0].get('id')} has {video.shape[1]} frames; part {part.name} "
                         f"needs {tc + tp}")
    actions = labels = covariates = None
    if part.condition == "action":
        actions = torch.stack([c["actions"][:tc + tp] for c in clips]).to(device)
    if part.condition == "label":
        labels = torch.tensor([c["label"] for c in clips], device=device)
    if part.condition == "weather":
        covariates = torch.stack([c["covariates"][:tc + tp] for c in clips]).to(device)
    return Prompt(context=video[:, :tc].to(device), labels=labels, actions=actions, covariates=covariates)


def sample_to_store(model, task: Task, dataset, store: Path, *, batch_size: int = 8, rank: int = 0,
                    world: int = 1, device: torch.device | str = "cpu",
                    progress: Callable[[Iterable], Iterable] = lambda it: it) -> int:
    """Sample every missing (part, seed, video, trajectory) of this process's share; returns how many."""
    device = torch.device(device)
    videos = num_samples(task, dataset)
    made = 0
    task_hash = task.hash()
    per_seed = {s: dataset_for_seed(dataset, s) for s in task.seeds}  # the clips of each evaluation seed
    for part in task.parts:
        for data in per_seed.values():
            if len(data) < videos and not is_generation(part):
                raise ValueError(f"task {task.name} evaluates {videos} videos; the dataset has {len(data)}")
        if hasattr(model, "use_protocol_sampling"):
            model.use_protocol_sampling(part)
        todo = [k for k in sample_keys(task, part, videos) if k.video % world == rank and not k.path(store).exists()]
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        # keys run trajectory-fastest: a video's clip is read once for all its trajectories
        clip = functools.lru_cache(maxsize=batch_size)(lambda s, v: per_seed[s][v])
        for keys in progress(batches):
            # generation: sample v takes the conditions (e.g. the class) of real clip v, cycling
            clips = [clip(k.seed, k.video % len(per_seed[k.seed])) for k in keys]
            prompt = _prompt(clips, part, device)
            gens = [torch.Generator().manual_seed(derive_seed(task_hash, model.name, k.part, k.seed, k.video,
                                                              k.trajectory)) for k in keys]
            out = check_sample(model.sample(prompt, part.predict_frames, gens), prompt, part.predict_frames)
            for k, video in zip(keys, out):
                extra = {"ndvi": ndvi_array(video)} if task.dataset == "greenearthnet" else {}
                write_sample(k.path(store), to_uint8(video), **extra)
                made += 1
    return made


def load_part(task: Task, part: Part, dataset, store: Path, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stored samples (V, N, Tp, C, H, W), ground truth (V, Tc + Tp, C, H, W) and context-included
    samples for FVD (V, N, Tc + Tp, C, H, W), all float in [0, 1] (ground truth quantised to uint8 like
    the samples). For generation the ground truth is the whole real set (R, Tp, C, H, W)."""
    dataset = dataset_for_seed(dataset, seed)
    preds, truths = [], []
    tc, tp = part.context_frames, part.predict_frames
    videos = num_samples(task, dataset)
    real = range(len(dataset)) if is_generation(part) else range(videos)
    truths = [from_uint8(to_uint8(dataset[v]["video"][:tc + tp])) for v in real]
    for v in range(videos):
        trajs = []
        for t in range(task.trajectories):
            path = SampleKey(part.name, seed, v, t).path(store)
            if not path.exists():
                raise FileNotFoundError(f"missing sample {path}: run `bench run` (it resumes) before scoring")
            trajs.append(read_sample(path))
        preds.append(torch.stack(trajs))
    pred, gt = torch.stack(preds), torch.stack(truths)
    if is_generation(part):
        return pred, gt, pred
    full = torch.cat([gt[:, None, :tc].expand(-1, pred.shape[1], -1, -1, -1, -1), pred], dim=2)
    return pred, gt, full


# ----------------------------------------------------------------------------- scoring

PIXEL_METRICS = ("mse", "psnr", "ssim")


def _per_frame(metric: Metric, pred: Tensor, truth: Tensor, device: torch.device) -> Tensor:
    """Per-frame values (V, N, Tp) of a pixel or perceptual metric."""
    from bench.metrics import per_frame_metric
    if metric.name in PIXEL_METRICS:
        return per_frame_metric(metric.name, pred, truth)
    if metric.name == "lpips":
        from bench.metrics.lpips import lpips_per_frame
        return lpips_per_frame(pred, truth, convention=metric.convention, device=device)
    raise ValueError(f"metric {metric.name!r} is not a per-frame metric")


def score_metric(metric: Metric, part: Part, pred: Tensor, gt: Tensor, full: Tensor,
                 device: torch.device | str = "cpu") -> float:
    """One metric of one part for one seed, reduced as the protocol says.

    ``pred`` (V, N, Tp, C, H, W) samples; ``gt`` (V, Tc + Tp, C, H, W); ``full`` the samples with the
    ground-truth context prepended (V, N, Tc + Tp, C, H, W).
    """
    from bench.metrics import mean_over_videos, trajectory_reduce, video_values
    device = torch.device(device)
    tc = part.context_frames
    if metric.name == "fvd":
        from bench.metrics.fvd import I3DFeatures, fvd_clips, fvd_from_stats
        net = I3DFeatures(device)
        # real statistics once; then one FVD per trajectory index over all videos, averaged
        real = net.stats(fvd_clips(gt, metric.include_context, tc, metric.min_frames))
        values = [fvd_from_stats(real, net.stats(fvd_clips(full[:, n], metric.include_context, tc,
                                                           metric.min_frames)))
                  for n in range(full.shape[1])]
        return sum(values) / len(values)
    truth = gt[:, None, tc:].expand_as(pred)
    per_video = video_values(_per_frame(metric, pred, truth, device))
    return mean_over_videos(trajectory_reduce(per_video, metric.trajectories, metric.name))


EARTHNET_METRICS = {"r2": "r2", "rmse": "rmse", "nse": "nse", "outperformance": "outperformance"}
EARTH_SCORES = (*EARTHNET_METRICS, "ndvi_psnr", "ndvi_ssim")  # scored on NDVI by score_earthnet_part


def ndvi_from_video(video: Tensor) -> Tensor:
    """NDVI from the colour-infrared composite the GreenEarthNet loader gives (B8A, B04, B03): (..., T, H, W)."""
    nir, red = video[..., 0, :, :].double(), video[..., 1, :, :].double()
    return (nir - red) / (nir + red + 1e-8)


def climatology_references(task: Task, dataset) -> list[np.ndarray]:
    """The climatology's NDVI prediction (Tp, H, W) of every evaluated cube at the task's resolution,
    for the outperformance score (``bench.data.greenearthnet.read_climatology``); raises
    ``MetricUnavailable`` with the reason when the data have none."""
    from bench.data import greenearthnet
    from bench.data.video_io import resize_crop
    from bench.metrics import MetricUnavailable
    provide = ("GreenEarthNet's official model_pixelwise/climatology.py with --data_dir <root> --out_dir "
               "<root>/climatology (writes climatology/preds/<track>/<region>/<cube>.nc)")
    root, refs = getattr(dataset, "root", None), getattr(dataset, "refs", None)
    if root is None or refs is None:
        raise MetricUnavailable("outperformance", "the evaluated clips have no dataset root to read the "
                                "climatology predictions from", provide)
    videos = num_samples(task, dataset)
    paths = [greenearthnet.climatology_path(root, task.split, ref) for ref, _ in refs[:videos]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MetricUnavailable("outperformance", f"needs the climatology prediction of every cube; {len(missing)} "
                                f"of {len(paths)} missing (e.g. {missing[0]})", provide)
    out = []
    for ref, _ in refs[:videos]:
        clim = greenearthnet.read_climatology(root, task.split, ref)
        clim = torch.nan_to_num(clim.clamp(-1, 1), nan=0.5)  # the official fill, before any resizing
        out.append(resize_crop(clim, task.resolution).double().numpy())
    return out


def score_earthnet_part(task: Task, part: Part, dataset, store: Path, seed: int) -> dict[str, float]:
    """GreenEarthNet's scores on clear-sky vegetation pixels (official en21x rules), and NDVI PSNR/SSIM.

    Predictions are the float NDVI each sample stores (``ndvi``, from the model's float output), as
    the official ``ndvi_pred`` files hold it. Each trajectory is scored as a prediction of its own;
    values are averaged over trajectories. Outperformance compares with the climatology predictions
    of the data (``climatology_references``) and is unavailable, with the reason, without them.
    """
    from bench.metrics.earthnet import GreenEarthNetScorer, video_ndvi_psnr, video_ndvi_ssim
    dataset = dataset_for_seed(dataset, seed)
    names = [m.name for m in part.metrics if m.name in EARTH_SCORES]
    references = climatology_references(task, dataset) if "outperformance" in names else None
    tc = part.context_frames
    out: dict[str, list[float]] = {n: [] for n in names}
    for t in range(task.trajectories):
        scorer = GreenEarthNetScorer(context_frames=tc)
        psnrs, ssims = [], []
        for v in range(num_samples(task, dataset)):
            clip = dataset[v]
            path = SampleKey(part.name, seed, v, t).path(store)
            pred = read_sample_array(path, "ndvi", " (GreenEarthNet samples store the model's float NDVI; "
                                     "sample again with `bench run`)").astype(np.float64)
            target = clip["ndvi"][:, 0].double().numpy()
            valid = clip["mask"][:, 0].numpy()
            if any(n in EARTHNET_METRICS for n in names):
                scorer.add(str(clip.get("id", v)), pred, target, valid, clip["landcover"].numpy(),
                           reference=None if references is None else references[v])
            if "ndvi_psnr" in names:
                psnrs.append(float(video_ndvi_psnr(pred, target[tc:], valid[tc:])))
            if "ndvi_ssim" in names:
                ssims.append(float(video_ndvi_ssim(pred, target[tc:], valid[tc:])))
        result = scorer.result() if any(n in EARTHNET_METRICS for n in names) else {}
        for n in names:
            if n in EARTHNET_METRICS:
                out[n].append(float(result[EARTHNET_METRICS[n]]))
            elif n == "ndvi_psnr":
                out[n].append(sum(psnrs) / len(psnrs))
            elif n == "ndvi_ssim":
                out[n].append(sum(ssims) / len(ssims))
    return {n: sum(v) / len(v) for n, v in out.items() if v}


def score_store(task: Task, dataset, store: Path, device: torch.device | str = "cpu",
                log: Callable[[str], None] = print) -> dict[str, dict]:
    """Every metric of every part over every seed: {metric: Spread.as_dict() | unavailable}."""
    from bench.metrics import MetricUnavailable, over_seeds
    names = [m.name for p in task.parts for m in p.metrics]
    out: dict[str, dict] = {}
    for part in task.parts:
        per_seed: dict[str, list[float]] = {m.name: [] for m in part.metrics}
        unavailable: dict[str, MetricUnavailable] = {}
        for seed in task.seeds:
            if any(m.name in EARTH_SCORES for m in part.metrics):
                try:
                    for name, value in score_earthnet_part(task, part, dataset, store, seed).items():
                        per_seed[name].append(value)
                except MetricUnavailable as e:
                    unavailable[e.metric] = e
                    log(f"[score] {e.metric} unavailable: {e.reason}")
                    keep = tuple(m for m in part.metrics if m.name != e.metric)
                    for name, value in score_earthnet_part(task, replace(part, metrics=keep), dataset, store,
                                                           seed).items():
                        per_seed[name].append(value)
            if all(m.name in EARTH_SCORES for m in part.metrics):
                continue
            pred, gt, full = load_part(task, part, dataset, store, seed)
            for m in part.metrics:
                if m.name in unavailable or m.name in EARTH_SCORES:
                    continue
                try:
                    per_seed[m.name].append(score_metric(m, part, pred, gt, full, device))
                except MetricUnavailable as e:
                    unavailable[m.name] = e
                    log(f"[score] {m.name} unavailable: {e.reason}; provide it with: {e.provide}")
        for m in part.metrics:
            key = m.name if names.count(m.name) == 1 else f"{part.name}:{m.name}"
            if m.name in unavailable:
                e = unavailable[m.name]
                out[key] = {"unavailable": e.reason, "provide": e.provide, "part": part.name}
            else:
                out[key] = {**over_seeds(per_seed[m.name]).as_dict(), "part": part.name,
                            "trajectories": m.trajectories}
    return out
