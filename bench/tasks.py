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
PRECISIONS = ("fp32", "bf16")
SEED_KINDS = ("sampling", "training")


@dataclass(frozen=True)
class Metric:
    """A metric and how it is reduced: per frame -> per video -> over trajectories -> over videos."""

    name: str  # psnr | ssim | lpips | mse | fvd | r2 | rmse | nse | outperformance | ndvi_psnr | ndvi_ssim
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
    # Sampling precision of the protocol: "bf16" is FAR's official one (every test config sets
    # ``mixed_precision: bf16``: DC-AE weights in bf16, initial noise drawn in bf16, transformer
    # under bf16 autocast); it applies on CUDA, a CPU run samples in fp32 and its record says so.
    precision: str = "fp32"
    # What the protocol's seeds are: "sampling" (one model, each seed a new draw of the sampling
    # noise and, where the selection is seeded, of the evaluated set) or "training" (one separately
    # trained model per seed, scores averaged: GreenEarthNet's three training seeds).
    seed_kind: str = "sampling"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"task {self.name}: field 'precision' must be one of {PRECISIONS}, got {self.precision!r}")
        if self.seed_kind not in SEED_KINDS:
            raise ValueError(f"task {self.name}: field 'seed_kind' must be one of {SEED_KINDS}, "
                             f"got {self.seed_kind!r}")

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

# ----------------------------------------------------------------------------- notes

# What stays different from the official evaluations by design.
_BY_DESIGN = ("By design, unlike FAR: every sample is stored losslessly (uint8 rounded to nearest, npz) and "
              "scored from that store, where FAR writes sample and ground truth side by side as lossy mp4 "
              "(uint8 by floor, imageio/ffmpeg) and scores the re-decoded frames; every sample has its own "
              "seed (derived from task hash, model, part, seed, video, trajectory), where FAR seeds each "
              "process once with seed + rank, so its draws depend on the number of GPUs and the batching.")
_BF16 = ("Sampling in bf16 on CUDA as every official FAR test config (mixed_precision: bf16): DC-AE in bf16, "
         "initial noise drawn in bf16, transformer under bf16 autocast; on CPU fp32, stated in the record.")
_BY_DESIGN_OTHER = ("By design: every sample is stored losslessly and has its own seed (derived from task hash, "
                    "model, part, seed, video, trajectory) instead of the original code's per-process streams.")


def _long(dataset: str, res: int, part_b: Part, notes: str) -> Task:
    return Task(
        name=f"{dataset}_long", version=1, dataset=dataset, split="validation",
        selection="first 256 videos of the validation list", num_videos=256, resolution=res,
        num_frames=300, frame_stride=1, seeds=(0, 1, 2, 3),
        parts=(Part("A", 144, 156, "action", _FAR_MAX[1:], guidance_scale=1.5), part_b),
        notes=f"{notes} {_BF16} {_BY_DESIGN}", precision="bf16",
        # quick: 16 videos (enough for a paired-bootstrap interval against dummy that can exclude zero);
        # part A keeps the protocol's 144 context frames, after which most of the walk revisits places the
        # context showed (the seen/new split needs both), and predicts 24 of the 156 frames
        quick=QuickScale(num_videos=16, seeds=(0,), num_steps=10, resolution=32, horizons=((144, 24), (36, 12))),
    )


UCF_CLASSES = 101


def _ucf_gen(name: str, res: int, cond: bool, seeds: tuple[int, ...], n: int = 2048) -> Task:
    per_class = -(-n // UCF_CLASSES)
    return Task(
        name=name, version=1, dataset="ucf101", split="trainval",
        selection=f"{n} generated clips, sample v with the label of real clip v; real set: FAR's "
                  f"get_balanced_dataset(num_sample={n}) drawn anew for every evaluation seed: Python random "
                  f"seeded with the seed (rank 0), ceil({n}/{UCF_CLASSES}) = {per_class} random clips per class, "
                  "classes in order of first appearance in the trainval list, shuffled, first "
                  f"{n}",
        num_videos=n, resolution=res, num_frames=16, frame_stride=3, seeds=seeds, train_split="trainval",
        parts=(Part("gen", 0, 16, "label" if cond else "none", _FVD,
                    guidance_scale=2.0 if cond else 1.0),),
        notes="class-balanced real reference set, a new draw per seed (FAR seeds random with seed + rank before "
              "building it; a multi-GPU FAR run draws one per rank, this is rank 0's); a class smaller than "
              f"{per_class} clips gives all its clips (FAR raises); resize shorter side then center crop; clips "
              "too short for 16 frames at stride 3 (16-45 frames) are read at stride 1 from frame 0, clips "
              f"under 16 frames zero-padded (FAR's ucf_dataset.py). {_BF16} {_BY_DESIGN}",
        precision="bf16",
        quick=QuickScale(num_videos=16, num_steps=10, resolution=64, horizons=((0, 8),)),
    )


_GREENEARTHNET = ("Sentinel-2 time[4::5]; NDVI=(B8A-B04)/(B8A+B04); clear sky: s2_dlmask<1 and SCL in "
                  "{1,2,4,5,6,7}; scores per vegetation pixel; a pixel without esawc_lc is no vegetation pixel "
                  "(NaN fails the official landcover < 41 filter); predictions scored as float NDVI (the "
                  "model's output, stored as float32 next to the uint8 composite), as the official ndvi_pred "
                  "files hold it.")


TASKS: dict[str, Task] = {t.name: t for t in [
    _ucf_gen("ucf101_cond128", 128, True, (0, 2, 4, 6)),
    _ucf_gen("ucf101_cond128_10k", 128, True, (0,), n=10_000),
    _ucf_gen("ucf101_cond256", 256, True, (0, 1, 2, 3)),
    _ucf_gen("ucf101_uncond128", 128, False, (0, 1, 2, 3)),
    _ucf_gen("ucf101_uncond256", 256, False, (0, 1, 2, 3)),
    Task(name="ucf101_pred", version=1, dataset="ucf101", split="test03",
         selection="test03.json[::10][:256] (FAR)", num_videos=256, resolution=64, num_frames=16,
         frame_stride=1, trajectories=100, parts=(Part("pred", 4, 12, "none", _pixel(True)),),
         notes=f"Resize(64) + CenterCrop(64). {_BF16} {_BY_DESIGN}", precision="bf16",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((4, 12),))),
    Task(name="ucf101_pred_mcvd", version=1, dataset="ucf101", split="test03",
         selection="256 clips spread evenly over test03.json[::10] (MCVD/ExtDM)", num_videos=256,
         resolution=64, num_frames=16, frame_stride=1, trajectories=100,
         parts=(Part("pred", 4, 12, "none", _pixel(True, lpips="standard", fvd_context="ground_truth")),),
         notes="LPIPS with [-1, 1] input (ExtDM calculate_lpips.py: 2x-1); FVD clips are the ground-truth "
               f"context followed by the prediction; sampled in fp32. {_BY_DESIGN_OTHER}",
         quick=QuickScale(num_videos=8, trajectories=2, horizons=((4, 12),))),
    Task(name="bair_pred", version=1, dataset="bair", split="test",
         selection="all 256 test trajectories, camera image_aux1", num_videos=256, resolution=64,
         num_frames=30, frame_stride=1, trajectories=100,
         parts=(Part("pred", 2, 28, "none", _pixel(True)),), notes=f"actions ignored. {_BF16} {_BY_DESIGN}",
         precision="bf16", quick=QuickScale(num_videos=8, trajectories=2, horizons=((2, 14),))),
    Task(name="bair_pred14", version=1, dataset="bair", split="test",
         selection="all 256 test trajectories, camera image_aux1", num_videos=256, resolution=64,
         num_frames=16, frame_stride=1, trajectories=100,
         parts=(Part("pred", 2, 14, "none", _pixel(True)),), notes=f"actions ignored. {_BF16} {_BY_DESIGN}",
         precision="bf16", quick=QuickScale(num_videos=8, trajectories=2, horizons=((2, 14),))),
    # part B: FAR_B_Long_dmlab_res64_1000K_bs32_36to264.yml samples with guidance -1 (every action null)
    _long("dmlab", 64, Part("B", 36, 264, "action", _FVD, drop_conditions=True),
          "DMLab actions[t] is the action after frame t; FAR pairs it with frame t. Part B samples with "
          "null actions and no guidance (the released 36to264 config's guidance -1)."),
    # part B: the released FAR_M_Long_minecraft_res128_1000K_bs32_36to264.yml samples with the
    # actions and guidance 1.5 (not unconditionally like DMLab's)
    _long("minecraft", 128, Part("B", 36, 264, "action", _FVD, guidance_scale=1.5),
          "mp4 files hold 301 frames; frames 0..299 are used. Part B samples with the actions and guidance "
          "1.5, as the released FAR_M_Long_minecraft_res128_1000K_bs32_36to264.yml does; PROTOCOLS.md's "
          "earlier text had part B unconditional (null actions, as DMLab's)."),
    Task(name="greenearthnet", version=1, dataset="greenearthnet", split="ood-t_chopped",
         selection="all ood-t_chopped test minicubes", num_videos=0, resolution=128, num_frames=30,
         frame_stride=5, seeds=(0, 1, 2), seed_kind="training", train_split="train",
         parts=(Part("pred", 10, 20, "weather", (Metric("r2"), Metric("rmse"), Metric("nse"),
                                                   Metric("outperformance"))),),
         notes=f"{_GREENEARTHNET} Outperformance against the climatology predictions of the official "
               "model_pixelwise/climatology.py, read from <root>/climatology/preds/<track>/<region>/<cube>.nc "
               "(ndvi_pred, daily from day 50 or at the 20 target dates); unavailable, with its reason, "
               "without them. The three seeds are training seeds (one model per seed, GreenEarthNet Table 2). "
               f"{_BY_DESIGN_OTHER}",
         quick=QuickScale(num_videos=4, num_steps=10, resolution=32)),
    Task(name="greenearthnet_psnr", version=1, dataset="greenearthnet", split="ood-t_chopped",
         selection="all ood-t_chopped test minicubes", num_videos=0, resolution=128, num_frames=30,
         frame_stride=5, train_split="train",
         parts=(Part("pred", 10, 20, "weather", (Metric("ndvi_psnr"), Metric("ndvi_ssim"))),),
         notes="generic video-model convention on NDVI; settings unverified: PSNR (peak 2) and SSIM (Gaussian "
               "window 11, sigma 1.5, data range 2, local statistics over clear-sky pixels only, averaged over "
               f"clear-sky pixels) of NDVI per target frame with clear-sky pixels, mean over frames and cubes. "
               f"{_GREENEARTHNET} {_BY_DESIGN_OTHER}",
         quick=QuickScale(num_videos=4, num_steps=10, resolution=32)),
]}
