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
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from bench.api import Prompt, check_sample, reconstruct_context
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


def context_path(store: Path, part: str, video: int) -> Path:
    """Where the model's view of video ``video``'s context frames for ``part`` is stored."""
    return Path(store) / part / "context" / f"{video:05d}.npz"


def needs_context_view(part: Part) -> bool:
    """Whether a metric of ``part`` scores the model's view of the context (FAR-protocol FVD)."""
    return part.context_frames > 0 and any(m.name == "fvd" and m.include_context and m.context == "model"
                                           for m in part.metrics)


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


def missing_samples(task: Task, dataset, store: Path, rank: int = 0, world: int = 1) -> tuple[int, int]:
    """(samples of this process's share missing from the store, samples of its share in all)."""
    videos = num_samples(task, dataset)
    keys = [k for part in task.parts for k in sample_keys(task, part, videos) if k.video % world == rank]
    return sum(not k.path(store).exists() for k in keys), len(keys)


def sample_to_store(model, task: Task, dataset, store: Path, *, batch_size: int = 8, rank: int = 0,
                    world: int = 1, device: torch.device | str = "cpu", progress=None) -> int:
    """Sample every missing (part, seed, video, trajectory) of this process's share; returns how many.
    ``progress(total)``: a bar (``update(n)``, ``close()``) over the samples to make, e.g. one of
    ``bench.progress.bar``."""
    device = torch.device(device)
    videos = num_samples(task, dataset)
    made = 0
    task_hash = task.hash()
    per_seed = {s: dataset_for_seed(dataset, s) for s in task.seeds}  # the clips of each evaluation seed
    meter = progress(missing_samples(task, dataset, store, rank, world)[0]) if progress is not None else None
    for part in task.parts:
        for data in per_seed.values():
            if len(data) < videos and not is_generation(part):
                raise ValueError(f"task {task.name} evaluates {videos} videos; the dataset has {len(data)}")
        if hasattr(model, "use_protocol_sampling"):
            model.use_protocol_sampling(part)
        # keys run trajectory-fastest: a video's clip is read once for all its trajectories
        clip = functools.lru_cache(maxsize=batch_size)(lambda s, v: per_seed[s][v])
        if needs_context_view(part):  # the model's view of the context, once per video
            # context views come from the first seed's clips (prediction tasks draw the same clips
            # for every seed; only generation, which has no context, draws per seed)
            first = task.seeds[0]
            missing = [v for v in range(videos) if v % world == rank
                       and not context_path(store, part.name, v).exists()]
            for i in range(0, len(missing), batch_size):
                vs = missing[i:i + batch_size]
                prompt = _prompt([clip(first, v) for v in vs], part, device)
                with torch.no_grad():
                    views = reconstruct_context(model, prompt.context)
                for v, view in zip(vs, views):
                    write_sample(context_path(store, part.name, v), to_uint8(view))
        todo = [k for k in sample_keys(task, part, videos) if k.video % world == rank and not k.path(store).exists()]
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        for keys in batches:
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
            if meter is not None:
                meter.update(len(keys))
    if meter is not None:
        meter.close()
    return made


def quantized_clip(dataset, index: int, frames: int) -> Tensor:
    """The first ``frames`` frames of clip ``index``, quantised to uint8 like the samples."""
    return from_uint8(to_uint8(dataset[index]["video"][:frames]))


def read_trajectories(task: Task, part: Part, store: Path, seed: int, video: int) -> Tensor:
    """The stored samples of one video (N, Tp, C, H, W) in [0, 1]."""
    trajs = []
    for t in range(task.trajectories):
        path = SampleKey(part.name, seed, video, t).path(store)
        if not path.exists():
            raise FileNotFoundError(f"missing sample {path}: run `bench run` (it resumes) before scoring")
        trajs.append(read_sample(path))
    return torch.stack(trajs)


def read_context_view(store: Path, part: Part, video: int) -> Tensor:
    """The model's view of a video's context frames (Tc, C, H, W), as sampling stored it."""
    path = context_path(store, part.name, video)
    if not path.exists():
        raise FileNotFoundError(f"missing context reconstruction {path}: FVD of part {part.name} scores the "
                                "model's view of the context; run `bench run` (it resumes) before scoring")
    view = read_sample(path)
    if view.shape[0] != part.context_frames:
        raise ValueError(f"{path}: {view.shape[0]} context frames, part {part.name} has {part.context_frames}")
    return view


def load_part(task: Task, part: Part, dataset, store: Path, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stored samples (V, N, Tp, C, H, W), ground truth (V, Tc + Tp, C, H, W) and context-included
    samples (V, N, Tc + Tp, C, H, W) with the ground-truth context, all float in [0, 1] (ground
    truth quantised to uint8 like the samples). For generation the ground truth is the whole real set
    (R, Tp, C, H, W). Holds everything in memory: for small sets (studies); scoring streams instead
    (:func:`score_store`)."""
    dataset = dataset_for_seed(dataset, seed)
    tc, tp = part.context_frames, part.predict_frames
    chosen = list(range(num_samples(task, dataset)))
    real = range(len(dataset)) if is_generation(part) else chosen
    gt = torch.stack([quantized_clip(dataset, v, tc + tp) for v in real])
    pred = torch.stack([read_trajectories(task, part, store, seed, v) for v in chosen])
    if is_generation(part):
        return pred, gt, pred
    full = torch.cat([gt[:, None, :tc].expand(-1, pred.shape[1], -1, -1, -1, -1), pred], dim=2)
    return pred, gt, full


# ----------------------------------------------------------------------------- seen and new frames

# Long-context tasks split every per-frame score into frames whose view the context already showed
# ("seen") and frames that show something new ("new").
MEMORY_SPLIT_DATASETS = ("dmlab", "minecraft")
# Without poses (real data) a target frame counts as seen when some context frame of the ground
# truth has SSIM >= this with it, both area-downsampled to PROXY_SIZE px (FAR's SSIM; the proxy is then
# the same at every resolution, and 16x cheaper at 128 px). Calibrated on the maze stand-in, where poses
# give the truth: ``python -m bench study seen_calibration`` (results/profiles/seen_proxy_calibration.json).
SEEN_SSIM_THRESHOLD = {"dmlab": 0.97, "minecraft": 0.97}
PROXY_SIZE = 32


def splits_memory(task: Task, part: Part) -> bool:
    return task.dataset in MEMORY_SPLIT_DATASETS and part.context_frames > 0


def proxy_frames(frames: Tensor, size: int = PROXY_SIZE) -> Tensor:
    """Frames (T, C, H, W) area-downsampled so that the shorter side is ``size`` (unchanged if smaller)."""
    h, w = frames.shape[-2:]
    if min(h, w) <= size:
        return frames
    return torch.nn.functional.interpolate(frames, size=(size * h // min(h, w), size * w // min(h, w)), mode="area")


def _blur_operator(n: int, size: int, sigma: float) -> Tensor:
    """(n, n) matrix of FAR's SSIM window along one axis: reflect padding by ``size // 2`` followed by
    the Gaussian window, as one linear map (so a 2-D blur is ``A_h @ X @ A_w.T``)."""
    pad = (size - 1) // 2
    dist = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0, dtype=torch.float64)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    g = g / g.sum()
    op = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for k in range(size):
            j = i + k - pad
            j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)  # reflect (edge not repeated)
            op[i, j] += g[k]
    return op.float()


def pairwise_ssim(a: Tensor, b: Tensor, max_pairs: int = 4096) -> Tensor:
    """SSIM of every frame of ``a`` (M, C, H, W) with every frame of ``b`` (N, C, H, W): (M, N).

    The same SSIM as ``bench.metrics.ssim`` (FAR's: 11x11 Gaussian window, sigma 1.5, reflect
    padding, mean of the whole map), computed with the window as two matrix products and each
    frame's own moments once, so that all M x N pairs are affordable."""
    from bench.metrics.pixel import SSIM_K1, SSIM_K2, SSIM_KERNEL_SIZE, SSIM_SIGMA
    h, w = a.shape[-2:]
    if (h, w) != tuple(b.shape[-2:]) or a.shape[-3] != b.shape[-3]:
        raise ValueError(f"frames differ: {tuple(a.shape[-3:])} vs {tuple(b.shape[-3:])}")
    if min(h, w) <= SSIM_KERNEL_SIZE // 2:
        raise ValueError(f"frames of {h}x{w} are too small for an SSIM window of {SSIM_KERNEL_SIZE}")
    a, b = a.float(), b.float()
    oh = _blur_operator(h, SSIM_KERNEL_SIZE, SSIM_SIGMA).to(a.device)
    ow = _blur_operator(w, SSIM_KERNEL_SIZE, SSIM_SIGMA).to(a.device)

    def blur(x: Tensor) -> Tensor:  # (..., H, W): two large matrix products (batch dims folded in)
        return (x @ ow.T).transpose(-1, -2).contiguous().matmul(oh.T).transpose(-1, -2)

    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    out = torch.empty(a.shape[0], b.shape[0])
    step = max(1, max_pairs // max(b.shape[0], 1))
    for i in range(0, a.shape[0], step):
        sl = slice(i, i + step)
        cov = blur(a[sl, None] * b[None]) - mu_a[sl, None] * mu_b[None]
        mu_ab = mu_a[sl, None] * mu_b[None]
        num = (2 * mu_ab + c1) * (2 * cov + c2)
        den = (mu_a[sl, None] ** 2 + mu_b[None] ** 2 + c1) * (var_a[sl, None] + var_b[None] + c2)
        out[sl] = (num / den).flatten(2).mean(-1).cpu()
    return out


def max_context_ssim(context: Tensor, targets: Tensor) -> Tensor:
    """For each target frame (Tp, C, H, W), its largest SSIM with any context frame (Tc, C, H, W)."""
    if context.shape[0] == 0:
        return torch.full((targets.shape[0],), float("-inf"))
    return pairwise_ssim(targets, context).amax(1)


def seen_frames(clip: dict, part: Part, dataset: str, truth: Tensor | None = None,
                device: torch.device | str = "cpu") -> tuple[np.ndarray, str]:
    """Which predicted frames show a view the context already showed: (Tp,) bool and the rule used.

    ``poses`` (the stand-in): a frame is seen when its exact pose (lattice position and heading)
    occurs among the clip's context frames; equal poses render identical frames. Without poses
    (real data), the retrieval proxy ``ssim>=T``: seen when some ground-truth context frame has SSIM
    >= T with the ground-truth target frame, both at ``PROXY_SIZE`` px (``SEEN_SSIM_THRESHOLD``,
    calibrated on the stand-in).
    """
    tc, tp = part.context_frames, part.predict_frames
    if clip.get("poses") is not None:
        poses = [tuple(p) for p in clip["poses"][:tc + tp].tolist()]
        context = set(poses[:tc])
        return np.array([p in context for p in poses[tc:]], bool), "poses"
    if dataset not in SEEN_SSIM_THRESHOLD:
        raise ValueError(f"no seen/new rule for dataset {dataset!r} without poses; known: {sorted(SEEN_SSIM_THRESHOLD)}")
    threshold = SEEN_SSIM_THRESHOLD[dataset]
    truth = truth if truth is not None else from_uint8(to_uint8(clip["video"][:tc + tp]))
    small = proxy_frames(truth[:tc + tp].to(device))
    best = max_context_ssim(small[:tc], small[tc:tc + tp])
    return (best >= threshold).numpy(), f"ssim>={threshold}"


# ----------------------------------------------------------------------------- scoring

PIXEL_METRICS = ("mse", "psnr", "ssim")
PER_VIDEO_METRICS = (*PIXEL_METRICS, "lpips")


def not_applicable(metric: Metric, part: Part) -> str | None:
    """Why ``metric`` does not apply to ``part``, or None when it does. Unlike an *unavailable* metric (a
    missing network that could be provided), nothing makes it apply: it is reported as not applicable
    (``{"not_applicable": reason}``) and never computed."""
    if metric.name == "fvd":
        frames = part.context_frames + part.predict_frames if metric.include_context else part.predict_frames
        need = max(metric.min_frames, 2)
        if frames < need:
            what = "whole clips" if metric.include_context else "predicted frames"
            return (f"FVD needs clips of at least {need} frames (FAR skips FVD on shorter clips); part "
                    f"{part.name}'s {what} have {frames}")
    return None


@dataclass
class ScoringNets:
    """Metric networks. ``None`` loads the checksum-verified network from the asset store on first use
    (``MetricUnavailable`` when absent). Tests and benchmarks pass explicit ones: ``fvd`` maps videos
    (B, T, 3, H, W) in [0, 1] to features (B, d); ``lpips`` is an LPIPS module (``build_lpips``)."""

    fvd: Callable[[Tensor], Tensor] | None = None
    lpips: torch.nn.Module | None = None


def _per_frame(metric: Metric, pred: Tensor, truth: Tensor, lpips_model=None, device="cpu") -> Tensor:
    """Per-frame values (..., Tp) of a pixel or perceptual metric."""
    from bench.metrics import per_frame_metric
    if metric.name in PIXEL_METRICS:
        return per_frame_metric(metric.name, pred, truth)
    if metric.name == "lpips":
        from bench.metrics.lpips import lpips_per_frame
        return lpips_per_frame(pred, truth, convention=metric.convention, device=device, model=lpips_model)
    raise ValueError(f"metric {metric.name!r} is not a per-frame metric")


class _FeatureFeed:
    """Batches clips for the feature network (FAR's batches of 32) and adds each clip's features to
    its ``FeatureStats``; holds at most one batch of clips."""

    def __init__(self, net: Callable[[Tensor], Tensor], batch_size: int = 32):
        self.net, self.batch_size = net, batch_size
        self.pending: list[tuple[object, Tensor]] = []

    def add(self, stats, clips: Tensor) -> None:
        self.pending += [(stats, c) for c in clips]
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        feats = self.net(torch.stack([c for _, c in self.pending]))
        groups: dict[int, tuple[object, list[Tensor]]] = {}
        for (stats, _), f in zip(self.pending, feats):
            groups.setdefault(id(stats), (stats, []))[1].append(f)
        for stats, rows in groups.values():
            stats.update(torch.stack(rows))
        self.pending = []


class _PerVideo:
    """Per-video values (after the trajectory reduction) per seed of one metric, its per-frame curve
    and, on long-context tasks, its seen/new split."""

    def __init__(self, metric: Metric, seeds: int, videos: int, frames: int, split: bool):
        self.metric = metric
        self.values = np.full((seeds, videos), np.nan)
        self.frame_sum, self.frame_count = np.zeros(frames), 0
        self.split = split
        if split:
            self.seen, self.new = np.full((seeds, videos), np.nan), np.full((seeds, videos), np.nan)

    def _reduce(self, per_frame: Tensor) -> float:
        from bench.metrics import trajectory_reduce, video_values
        return float(trajectory_reduce(video_values(per_frame), self.metric.trajectories, self.metric.name))

    def add(self, seed_index: int, video: int, per_frame: Tensor, seen: np.ndarray | None) -> None:
        """``per_frame`` (N, Tp): one row per trajectory; ``seen`` (Tp,) bool or None."""
        self.values[seed_index, video] = self._reduce(per_frame)
        self.frame_sum += per_frame.double().mean(0).numpy()
        self.frame_count += 1
        if self.split and seen is not None:
            mask = torch.from_numpy(seen)
            if mask.any():
                self.seen[seed_index, video] = self._reduce(per_frame[:, mask])
            if (~mask).any():
                self.new[seed_index, video] = self._reduce(per_frame[:, ~mask])

    def entry(self) -> dict:
        from bench.metrics import over_seeds
        out = {**over_seeds([float(np.mean(v)) for v in self.values]).as_dict(),
               "trajectories": self.metric.trajectories, "per_video": _nullable(self.values),
               "per_frame": (self.frame_sum / max(self.frame_count, 1)).tolist()}
        if self.split:
            for name, arr in (("seen", self.seen), ("new", self.new)):
                has = ~np.isnan(arr).any(0)
                if has.any():
                    spread = over_seeds([float(np.mean(a[has])) for a in arr])
                    out[name] = {**spread.as_dict(), "videos": int(has.sum()), "per_video": _nullable(arr)}
                else:
                    out[name] = {"videos": 0, "empty": f"no predicted frame of any video is {name}"}
        return out


def _nullable(values: np.ndarray) -> list:
    """float array -> nested lists with None for NaN (JSON has no NaN)."""
    return [[None if np.isnan(x) else float(x) for x in row] for row in np.atleast_2d(values)]


def real_set(part: Part, task: Task, dataset, seed: int) -> list[int]:
    """Clip indices of FVD's real set for ``seed``: the whole reference set for generation, the
    evaluated videos for prediction (the same for every seed here)."""
    return list(range(len(dataset))) if is_generation(part) else list(range(num_samples(task, dataset)))


def _real_stats(metric: Metric, part: Part, dataset, indices: list[int], net, batch_size: int):
    from bench.metrics.fvd import FeatureStats
    tc, tp = part.context_frames, part.predict_frames
    stats, feed = FeatureStats(), _FeatureFeed(net, batch_size)
    for i in indices:
        clip = quantized_clip(dataset, i, tc + tp)
        feed.add(stats, (clip if metric.include_context else clip[tc:])[None])
    feed.flush()
    return stats


def score_part(task: Task, part: Part, dataset, store: Path, device: torch.device | str = "cpu",
               log: Callable[[str], None] = print, nets: ScoringNets | None = None,
               fvd_batch_size: int = 32, meter=None) -> dict[str, dict]:
    """Every metric of one part over every seed, streamed video by video: {metric name: entry}.

    An entry is ``Spread.as_dict()`` plus ``trajectories`` (and, per-video metrics, ``per_video``
    [seed][video], ``per_frame`` and on long-context tasks ``seen``/``new``/``split``); or
    ``{"unavailable": reason, "provide": how}``; or ``{"not_applicable": reason}``."""
    from bench.metrics import MetricUnavailable, over_seeds
    device = torch.device(device)
    nets = nets or ScoringNets()
    out: dict[str, dict] = {}
    for m in part.metrics:
        reason = not_applicable(m, part)
        if reason:
            out[m.name] = {"not_applicable": reason}
            log(f"[score] {m.name} not applicable: {reason}")

    if any(m.name in EARTH_SCORES for m in part.metrics):
        earth = [m for m in part.metrics if m.name in EARTH_SCORES]
        per_seed: dict[str, list[float]] = {m.name: [] for m in earth}
        unavailable: dict[str, MetricUnavailable] = {}
        for seed in task.seeds:
            keep = tuple(m for m in earth if m.name not in unavailable)
            try:
                values = score_earthnet_part(task, replace(part, metrics=keep), dataset, store, seed)
            except MetricUnavailable as e:
                unavailable[e.metric] = e
                log(f"[score] {e.metric} unavailable: {e.reason}")
                keep = tuple(m for m in keep if m.name != e.metric)
                values = score_earthnet_part(task, replace(part, metrics=keep), dataset, store, seed)
            for name, value in values.items():
                per_seed[name].append(value)
        for m in earth:
            if m.name in unavailable:
                e = unavailable[m.name]
                out[m.name] = {"unavailable": e.reason, "provide": e.provide}
            else:
                out[m.name] = {**over_seeds(per_seed[m.name]).as_dict(), "trajectories": m.trajectories}

    per_video = [m for m in part.metrics if m.name in PER_VIDEO_METRICS and m.name not in out]
    fvds = [m for m in part.metrics if m.name == "fvd" and m.name not in out]
    lpips_model = fvd_net = None
    if any(m.name == "lpips" for m in per_video):
        try:
            if nets.lpips is not None:
                lpips_model = nets.lpips
            else:
                from bench.metrics.lpips import lpips_model as load_lpips
                lpips_model = load_lpips(device)
        except MetricUnavailable as e:
            out["lpips"] = {"unavailable": e.reason, "provide": e.provide}
            log(f"[score] lpips unavailable: {e.reason}; provide it with: {e.provide}")
            per_video = [m for m in per_video if m.name != "lpips"]
    if fvds:
        try:
            if nets.fvd is not None:
                fvd_net = nets.fvd
            else:
                from bench.metrics.fvd import I3DFeatures
                fvd_net = I3DFeatures(device)
        except MetricUnavailable as e:
            for m in fvds:
                out[m.name] = {"unavailable": e.reason, "provide": e.provide}
            log(f"[score] fvd unavailable: {e.reason}; provide it with: {e.provide}")
            fvds = []
    if not per_video and not fvds:
        return out

    from bench.metrics.fvd import FeatureStats, fvd_from_stats
    tc, tp = part.context_frames, part.predict_frames
    videos = num_samples(task, dataset)
    generation = is_generation(part)
    split = splits_memory(task, part) and not generation
    acc = {m.name: _PerVideo(m, len(task.seeds), videos, tp, split) for m in per_video}
    seen_cache: dict[int, tuple[np.ndarray, str]] = {}
    real_cache: dict[tuple, FeatureStats] = {}
    fvd_values: dict[str, list[float]] = {m.name: [] for m in fvds}
    for si, seed in enumerate(task.seeds):
        data = dataset_for_seed(dataset, seed)  # generation draws its real set (and labels) per seed
        fake = {m.name: [FeatureStats() for _ in range(task.trajectories)] for m in fvds}
        feed = _FeatureFeed(fvd_net, fvd_batch_size) if fvds else None
        for v in range(videos):
            if meter is not None:
                meter.update(1)
            pred = read_trajectories(task, part, store, seed, v)  # (N, Tp, C, H, W)
            if generation:
                for m in fvds:
                    for n, stats in enumerate(fake[m.name]):
                        feed.add(stats, pred[n:n + 1])
                continue
            clip = data[v]
            truth = from_uint8(to_uint8(clip["video"][:tc + tp]))
            seen = None
            if split:
                if v not in seen_cache:
                    seen_cache[v] = seen_frames(clip, part, task.dataset, truth, device)
                seen = seen_cache[v][0]
            target = truth[None, tc:].expand_as(pred)
            for m in per_video:
                acc[m.name].add(si, v, _per_frame(m, pred, target, lpips_model, device), seen)
            for m in fvds:
                clips = pred
                if m.include_context:
                    view = read_context_view(store, part, v) if m.context == "model" else truth[:tc]
                    clips = torch.cat([view[None].expand(pred.shape[0], -1, -1, -1, -1), pred], dim=1)
                for n, stats in enumerate(fake[m.name]):
                    feed.add(stats, clips[n:n + 1])
        if feed is not None:
            feed.flush()
        for m in fvds:
            indices = real_set(part, task, data, seed)
            # real-set statistics once per part, or once per seed where each seed draws its own set
            key = (m.name, m.include_context, tuple(indices), seed if data is not dataset else None)
            if key not in real_cache:
                real_cache[key] = _real_stats(m, part, data, indices, fvd_net, fvd_batch_size)
            values = [fvd_from_stats(real_cache[key], stats) for stats in fake[m.name]]
            fvd_values[m.name].append(sum(values) / len(values))

    for m in fvds:
        out[m.name] = {**over_seeds(fvd_values[m.name]).as_dict(), "trajectories": m.trajectories,
                       "context": m.context if m.include_context and tc else "none"}
    rules = sorted({rule for _, rule in seen_cache.values()})
    masks = np.stack([seen_cache[v][0] for v in range(videos)]) if split and seen_cache else None
    for m in per_video:
        entry = acc[m.name].entry()
        if masks is not None:
            entry["split"] = {"rule": rules[0] if len(rules) == 1 else "mixed: " + ", ".join(rules),
                              "seen_frames": int(masks.sum()), "new_frames": int((~masks).sum()),
                              "videos_with_seen": int(masks.any(1).sum()),
                              "videos_with_new": int((~masks).any(1).sum()),
                              "seen_per_frame": masks.mean(0).tolist()}
        out[m.name] = entry
    return out


def score_store(task: Task, dataset, store: Path, device: torch.device | str = "cpu",
                log: Callable[[str], None] = print, nets: ScoringNets | None = None, progress=None) -> dict[str, dict]:
    """Every metric of every part over every seed: {metric key: entry} (see :func:`score_part`); the
    key is the metric's name, or ``<part>:<name>`` where two parts share a metric. ``progress(total)``:
    a bar over the videos scored (parts x seeds x videos)."""
    names = [m.name for p in task.parts for m in p.metrics]
    out: dict[str, dict] = {}
    per_part = len(task.seeds) * num_samples(task, dataset)
    meter = progress(len(task.parts) * per_part) if progress is not None else None
    for part in task.parts:
        before = meter.n if meter is not None else 0
        scores = score_part(task, part, dataset, store, device=device, log=log, nets=nets, meter=meter)
        if meter is not None:  # a part with nothing to stream (e.g. every metric unavailable) counts as done
            meter.update(max(0, per_part - (meter.n - before)))
        for m in part.metrics:
            key = m.name if names.count(m.name) == 1 else f"{part.name}:{m.name}"
            out[key] = {**scores[m.name], "part": part.name}
    if meter is not None:
        meter.close()
    return out


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
