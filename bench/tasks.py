"""Every evaluation protocol as frozen data, with a version and a stable hash.

A task pins dataset and split, the selection of videos, resolution, frame stride, context and
predicted frames, conditioning, trajectories per video, seeds, the sampler settings the paper used,
and every metric with its reduction. Two protocols that differ in any of these are different tasks
(see ``../shared/PROTOCOLS.md``). A run has a *scale*: ``paper`` is the protocol exactly, ``quick``
shrinks counts and horizons for CPU runs; the scale is part of the hash, and tables never rank rows
of different hashes together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

SCALES = ("paper", "quick")


@dataclass(frozen=True)
class Metric:
    """A metric and how it is reduced: per frame -> per video -> over trajectories -> over videos."""

    name: str  # psnr | ssim | lpips | mse | fvd | r2 | rmse | nse | outperformance | ndvi_psnr
    trajectories: str = "mean"  # "best" (max psnr/ssim, min lpips/mse) | "max" | "min" | "mean"
    include_context: bool = False  # FVD on the whole clip (context + prediction)?
    min_frames: int = 0  # skipped for shorter clips (FVD: 10)
    # input convention where a metric has more than one; LPIPS: "far" ([0, 1] input, FAR's official
    # evaluation) or "standard" ([-1, 1], the lpips package's and MCVD/ExtDM's)
    convention: str = ""
    # FVD with context frames: which context the sampled clips carry. "model": what the model shows of
    # the context (FAR's pipeline decodes the DC-AE latents of context and prediction together, so its
    # first Tc frames are the autoencoder's reconstructions; identical to the ground truth for
    # pixel-space models); "ground_truth": the ground-truth context is prepended (MCVD/ExtDM).
    context: str = ""

    def __post_init__(self) -> None:
        if self.name == "fvd" and self.context not in FVD_CONTEXTS:
            raise ValueError(f"Metric fvd: context must be one of {FVD_CONTEXTS}, got {self.context!r}")
        if self.name != "fvd" and self.context:
            raise ValueError(f"Metric {self.name}: context={self.context!r} applies to fvd only")


FVD_CONTEXTS = ("model", "ground_truth")


@dataclass(frozen=True)
class Part:
    """One sampling setting of a task (DMLab/Minecraft have two: A pixel metrics, B FVD)."""

    name: str
    context_frames: int
    predict_frames: int
    condition: str  # none | label | action | weather
    metrics: tuple[Metric, ...]
    guidance_scale: float = 1.0
    num_steps: int = 50
    drop_conditions: bool = False  # sample with null conditions (FAR's long-video FVD)
    select_last_frames: int = 0  # evaluate on the last N frames of each clip (0 = all)


@dataclass(frozen=True)
class QuickScale:
    """How ``quick`` shrinks the task."""

    num_videos: int = 8
    trajectories: int = 1
    seeds: tuple[int, ...] = (0,)
    num_steps: int = 10
    resolution: int | None = None
    horizons: tuple[tuple[int, int], ...] = ()  # per part: (context, predict)


@dataclass(frozen=True)
class Task:
    name: str
    version: int
    dataset: str  # ucf101 | bair | dmlab | minecraft | greenearthnet
    split: str
    selection: str  # how the evaluated videos are chosen, exactly
    num_videos: int
    resolution: int
    num_frames: int  # frames per evaluated clip
    frame_stride: int
    parts: tuple[Part, ...]
    trajectories: int = 1
    seeds: tuple[int, ...] = (0,)
    train_split: str = "train"
    notes: str = ""
    quick: QuickScale = field(default_factory=QuickScale)

    def at_scale(self, scale: str) -> "Task":
        """The task as run at ``scale`` (``paper`` is the protocol itself)."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
        if scale == "paper":
            return self
        q = self.quick
        parts = list(self.parts)
        for i, (ctx, pred) in enumerate(q.horizons):
            parts[i] = replace(parts[i], context_frames=ctx, predict_frames=pred)
        parts = [replace(p, num_steps=min(p.num_steps, q.num_steps)) for p in parts]
        frames = max(p.context_frames + p.predict_frames for p in parts)
        videos = min(self.num_videos, q.num_videos) if self.num_videos else q.num_videos  # 0 = all
        return replace(self, num_videos=videos,
                       trajectories=min(self.trajectories, q.trajectories), seeds=q.seeds,
                       resolution=q.resolution or self.resolution, num_frames=min(self.num_frames, frames),
                       parts=tuple(parts))

    def spec(self, scale: str = "paper") -> dict:
        task = self.at_scale(scale)
        d = asdict(task)
        d.pop("quick")
        d["scale"] = scale
        return d

    def hash(self, scale: str = "paper") -> str:
        """Stable 12-hex-digit hash of everything that defines the protocol at ``scale``."""
        blob = json.dumps(self.spec(scale), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- metric bundles

def _pixel(best: bool, lpips: str = "far", fvd_context: str = "model") -> tuple[Metric, ...]:
    """Prediction metrics: best-of-N for PSNR/SSIM/LPIPS, FVD averaged over trajectories; LPIPS
    under FAR's [0, 1] input convention unless ``lpips="standard"`` (MCVD/ExtDM); FVD's context
    frames are the model's reconstruction (FAR) unless ``fvd_context="ground_truth"`` (MCVD/ExtDM)."""
    how = "best" if best else "mean"
    return (Metric("psnr", how), Metric("ssim", how), Metric("lpips", how, convention=lpips),
            Metric("fvd", "mean", include_context=True, min_frames=10, context=fvd_context))


_FAR_MAX = (Metric("mse", "max"), Metric("psnr", "max"), Metric("ssim", "max"),
            Metric("lpips", "min", convention="far"))
_FVD = (Metric("fvd", "mean", include_context=True, min_frames=10, context="model"),)


def _long(dataset: str, res: int, notes: str) -> Task:
    return Task(
        name=f"{dataset}_long", version=1, dataset=dataset, split="validation",
        selection="first 256 videos of the validation list", num_videos=256, resolution=res,
        num_frames=300, frame_stride=1, seeds=(0, 1, 2, 3),
        parts=(
            Part("A", 144, 156, "action", _FAR_MAX[1:], guidance_scale=1.5),
            Part("B", 36, 264, "action", _FVD, drop_conditions=True),
        ),
        notes=notes,
        # 16 videos: enough for a paired-bootstrap interval against dummy that can exclude zero
        quick=QuickScale(num_videos=16, seeds=(0,), num_steps=10, resolution=32, horizons=((36, 12), (36, 12))),
    )


def _ucf_gen(name: str, res: int, cond: bool, seeds: tuple[int, ...], n: int = 2048) -> Task:
    return Task(
        name=name, version=1, dataset="ucf101", split="trainval",
        selection=f"{n} generated clips; real set: 21 random clips per class from trainval (seed 0), "
                  "shuffled, first 2048",
        num_videos=n, resolution=res, num_frames=16, frame_stride=3, seeds=seeds, train_split="trainval",
        parts=(Part("gen", 0, 16, "label" if cond else "none", _FVD,
                    guidance_scale=2.0 if cond else 1.0),),
        notes="class-balanced real reference set; resize shorter side then center crop",
        quick=QuickScale(num_videos=16, num_steps=10, resolution=64, horizons=((0, 8),)),
    )


TASKS: dict[str, Task] = {t.name: t for t in [
    _ucf_gen("ucf101_cond128", 128, True, (0, 2, 4, 6)),
    _ucf_gen("ucf101_cond128_10k", 128, True, (0,), n=10_000),
    _ucf_gen("ucf101_cond256", 256, True, (0, 1, 2, 3)),
    _ucf_gen("ucf101_uncond128", 128, False, (0, 1, 2, 3)),
    _ucf_gen("ucf101_uncond256", 256, False, (0, 1, 2, 3)),
    Task(name="ucf101_pred", version=1, dataset="ucf101", split="test03",
         selection="test03.json[::10][:256] (FAR)", num_videos=256, resolution=64, num_frames=16,
         frame_stride=1, trajectories=100, parts=(Part("pred", 4, 12, "none", _pixel(True)),),
         notes="Resize(64) + CenterCrop(64)",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((4, 12),))),
    Task(name="ucf101_pred_mcvd", version=1, dataset="ucf101", split="test03",
         selection="256 clips spread evenly over test03.json[::10] (MCVD/ExtDM)", num_videos=256,
         resolution=64, num_frames=16, frame_stride=1, trajectories=100,
         parts=(Part("pred", 4, 12, "none", _pixel(True, lpips="standard", fvd_context="ground_truth")),),
         notes="LPIPS with [-1, 1] input (ExtDM calculate_lpips.py: 2x-1); FVD clips are the ground-truth "
               "context followed by the prediction",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((4, 12),))),
    Task(name="bair_pred", version=1, dataset="bair", split="test",
         selection="all 256 test trajectories, camera image_aux1", num_videos=256, resolution=64,
         num_frames=30, frame_stride=1, trajectories=100,
         parts=(Part("pred", 2, 28, "none", _pixel(True)),), notes="actions ignored",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((2, 14),))),
    Task(name="bair_pred14", version=1, dataset="bair", split="test",
         selection="all 256 test trajectories, camera image_aux1", num_videos=256, resolution=64,
         num_frames=16, frame_stride=1, trajectories=100,
         parts=(Part("pred", 2, 14, "none", _pixel(True)),), notes="actions ignored",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((2, 14),))),
    _long("dmlab", 64, "DMLab actions[t] is the action after frame t; FAR pairs it with frame t"),
    _long("minecraft", 128, "mp4 files hold 301 frames; frames 0..299 are used"),
    Task(name="greenearthnet", version=1, dataset="greenearthnet", split="ood-t_chopped",
         selection="all ood-t_chopped test minicubes", num_videos=0, resolution=128, num_frames=30,
         frame_stride=5, seeds=(0, 1, 2), train_split="train",
         parts=(Part("pred", 10, 20, "weather", (Metric("r2"), Metric("rmse"), Metric("nse"),
                                                   Metric("outperformance"))),),
         notes="Sentinel-2 time[4::5]; NDVI=(B8A-B04)/(B8A+B04); clear sky: s2_dlmask<1 and SCL in "
               "{1,2,4,5,6,7}; scores per vegetation pixel",
         quick=QuickScale(num_videos=4, num_steps=10, resolution=32)),
    Task(name="greenearthnet_psnr", version=1, dataset="greenearthnet", split="ood-t_chopped",
         selection="all ood-t_chopped test minicubes", num_videos=0, resolution=128, num_frames=30,
         frame_stride=5, train_split="train",
         parts=(Part("pred", 10, 20, "weather", (Metric("ndvi_psnr"), Metric("ssim"))),),
         notes="generic video-model convention on NDVI; settings unverified",
         quick=QuickScale(num_videos=4, num_steps=10, resolution=32)),
]}
