"""Peak memory of scoring a sample store, at two store sizes side by side.

Scoring must stream: its peak memory may not grow with the number of samples (generation FVD at
256 px would hold ~26 GB per set if the clips were stacked). This benchmark writes synthetic stores
of small samples (``--res`` px, 4 context + 12 predicted frames, 2 trajectories per video) and
scores each size in its own subprocess, reporting the peak resident set size (``ru_maxrss``) and
its growth over the process's RSS before scoring, for

* ``streaming``: ``bench.evaluate.score_store`` (what ``bench score`` runs), and
* ``stacked``: the previous algorithm for comparison (``load_part`` stacks every sample, the ground
  truth and the context-included clips, then each metric runs on the whole set),

with PSNR, SSIM, MSE and (``--metrics all``, the default) LPIPS and FVD through stand-in networks built
from explicit seeded weights (a random AlexNet trunk in the LPIPS package's network, a seeded
random projection as FVD's feature network; the numbers are meaningless, the memory is real):

    python -m bench profile scoring sizes=[64,512] out=results/profiles/scoring_memory.json

No time is asserted anywhere; ``tests/test_scoring_memory.py`` checks the memory growth.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

CONTEXT, PREDICT, TRAJECTORIES = 4, 12, 2
FVD_DIM = 64


class SyntheticClips:
    """Clip i is a deterministic random video (frames, 3, res, res); nothing is held in memory."""

    def __init__(self, count: int, frames: int, res: int):
        self.count, self.frames, self.res = count, frames, res

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.count:
            raise IndexError(i)
        g = torch.Generator().manual_seed(1000 + i)
        return {"video": torch.rand(self.frames, 3, self.res, self.res, generator=g), "id": str(i)}


class StandInFeatures:
    """FVD's stand-in feature network: 4x4 average pooling of every frame, then a seeded random
    projection to ``FVD_DIM`` features (explicit weights; never the asset store's I3D)."""

    def __init__(self, frames: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(frames * 3 * 16, FVD_DIM, generator=g, dtype=torch.float64) / 8

    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        b, t = videos.shape[:2]
        pooled = torch.nn.functional.adaptive_avg_pool2d(videos.flatten(0, 1).float(), 4)
        return pooled.reshape(b, -1).double() @ self.proj


def standin_lpips():
    """The LPIPS package's network with a seeded random AlexNet trunk (explicit weights)."""
    import torchvision
    from bench.metrics.lpips import build_lpips
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trunk = torchvision.models.alexnet().state_dict()
    return build_lpips(trunk)


def task_for(videos: int, res: int, metrics: str):
    from bench.tasks import Metric, Part, QuickScale, Task
    chosen = [Metric("psnr", "best"), Metric("ssim", "best"), Metric("mse", "max")]
    if metrics == "all":
        chosen.append(Metric("lpips", "best", convention="far"))
    if metrics in ("fvd", "all"):
        chosen.append(Metric("fvd", "mean", include_context=True, min_frames=10, context="model"))
    part = Part("pred", CONTEXT, PREDICT, "none", tuple(chosen))
    return Task(name="scoring_memory", version=1, dataset="ucf101", split="test", selection="synthetic",
                num_videos=videos, resolution=res, num_frames=CONTEXT + PREDICT, frame_stride=1, parts=(part,),
                trajectories=TRAJECTORIES, seeds=(0,), quick=QuickScale(num_videos=videos))


def write_store(store: Path, videos: int, res: int, metrics: str) -> None:
    """Samples (and the model's view of the context, for FVD) of a noisy copy of each ground truth."""
    from bench.evaluate import SampleKey, context_path, needs_context_view, to_uint8, write_sample
    task = task_for(videos, res, metrics)
    part = task.parts[0]
    data = SyntheticClips(videos, CONTEXT + PREDICT, res)
    for v in range(videos):
        clip = data[v]["video"]
        g = torch.Generator().manual_seed(v)
        if needs_context_view(part):
            write_sample(context_path(store, part.name, v), to_uint8(clip[:CONTEXT]))
        for t in range(TRAJECTORIES):
            noisy = (clip[CONTEXT:] + 0.1 * torch.randn(clip[CONTEXT:].shape, generator=g)).clamp(0, 1)
            write_sample(SampleKey(part.name, 0, v, t).path(store), to_uint8(noisy))


def stacked_bytes(samples: int, res: int) -> int:
    """What the stacked path holds in float32: every sample, its context-included copy, and the ground truth."""
    frame = 3 * res * res * 4
    videos = samples // TRAJECTORIES
    return samples * (PREDICT + CONTEXT + PREDICT) * frame + videos * (CONTEXT + PREDICT) * frame


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(store: Path, videos: int, res: int, metrics: str, mode: str) -> dict:
    """Score one store in this process; memory figures in MiB."""
    from bench.evaluate import ScoringNets, load_part, score_store
    torch.set_num_threads(1)
    task = task_for(videos, res, metrics)
    data = SyntheticClips(videos, CONTEXT + PREDICT, res)
    nets = ScoringNets(fvd=StandInFeatures(CONTEXT + PREDICT) if metrics in ("fvd", "all") else None,
                       lpips=standin_lpips() if metrics == "all" else None)
    before = _rss_kb()
    t0 = time.perf_counter()
    if mode == "streaming":
        scores = score_store(task, data, store, log=lambda _: None, nets=nets)
        psnr = scores["psnr"]["mean"]
    elif mode == "stacked":
        from bench.metrics import mean_over_videos, per_frame_metric, trajectory_reduce, video_values
        part = task.parts[0]
        pred, gt, full = load_part(task, part, data, store, 0)
        truth = gt[:, None, CONTEXT:].expand_as(pred)
        values = {m.name: mean_over_videos(trajectory_reduce(video_values(per_frame_metric(m.name, pred, truth)),
                                                             m.trajectories, m.name))
                  for m in part.metrics if m.name in ("psnr", "ssim", "mse")}
        psnr = values["psnr"]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_before_scoring_mib": round(before / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
            "growth_mib": round((peak - before) / 1024, 1), "psnr": psnr,
            "wall_s": round(time.perf_counter() - t0, 2)}


def measure(sizes: list[int], res: int = 32, metrics: str = "all", modes: tuple[str, ...] = ("streaming",),
            workdir: Path | None = None, log=print) -> dict:
    """Score a store of each size (samples = videos x 2 trajectories) in a fresh subprocess per mode."""
    from bench.isolated import call
    out: dict = {"res": res, "frames": f"{CONTEXT} context + {PREDICT} predicted", "trajectories": TRAJECTORIES,
                 "metrics": ["psnr", "ssim", "mse"] + (["lpips (stand-in net)"] if metrics == "all" else [])
                 + (["fvd (stand-in features)"] if metrics in ("fvd", "all") else []),
                 "modes": {"streaming": "bench.evaluate.score_store, every metric above",
                           "stacked": "the previous algorithm (load_part stacks the store, then psnr, ssim and mse "
                                      "run on the whole set); pixel metrics only"},
                 "stacked_float32_mib": {}, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="scoring-memory-", dir=workdir) as tmp:
        for samples in sizes:
            if samples % TRAJECTORIES:
                raise ValueError(f"sizes must be multiples of {TRAJECTORIES} (trajectories per video), got {samples}")
            videos = samples // TRAJECTORIES
            store = Path(tmp) / f"store{samples}"
            write_store(store, videos, res, metrics)
            out["stacked_float32_mib"][samples] = round(stacked_bytes(samples, res) / 2 ** 20, 1)
            for mode in modes:
                result = call("bench.profile_scoring", "child_point",
                              {"store": str(store), "videos": videos, "res": res,
                               "metrics": metrics if mode == "streaming" else "pixel", "mode": mode}, timeout=1800)
                out["runs"].setdefault(mode, {})[samples] = result
                log(f"[profile] {mode:9s} {samples:5d} samples: peak RSS {result['peak_rss_mib']} MiB, growth while "
                    f"scoring {result['growth_mib']} MiB (stacking would hold {out['stacked_float32_mib'][samples]} MiB)")
    return out


def child_point(payload: dict) -> dict:
    """:func:`child` for ``bench.isolated.call`` (a fresh process per store and mode)."""
    return child(Path(payload["store"]), payload["videos"], payload["res"], payload["metrics"], payload["mode"])


@dataclass(frozen=True)
class ScoringProfileConfig:
    """``python -m bench profile scoring key=value ...``."""

    sizes: tuple[int, ...] = field(default=(64, 512), metadata={"ge": 2})  # samples per store (2 per video)
    res: int = field(default=32, metadata={"ge": 8})
    # pixel: psnr, ssim, mse; fvd: and FVD; all: and LPIPS
    metrics: str = field(default="all", metadata={"choices": ("pixel", "fvd", "all")})
    modes: tuple[str, ...] = field(default=("streaming", "stacked"), metadata={"choices": ("streaming", "stacked")})
    out: str | None = field(default=None, metadata={"path": True})  # the JSON (None: printed)


def schema():
    from bench.compose import Schema, Section
    return Schema([Section("", ScoringProfileConfig(), label="scoring profile options (key=value)")])


def cli(argv: list[str]) -> int:
    """``python -m bench profile scoring [key=value ...]``."""
    from bench.compose import run_verb
    return run_verb("python -m bench profile scoring", __doc__.split("\n\n")[0], schema(),
                    lambda composed, args: run(composed[""], args), argv)


def run(cfg: ScoringProfileConfig, argv: list[str]) -> int:
    for samples in cfg.sizes:
        if samples % TRAJECTORIES:
            from bench.errors import ConfigError
            raise ConfigError(f"sizes={list(cfg.sizes)}: every size must be a multiple of {TRAJECTORIES} "
                              "(trajectories per video)")
    result = {"command": " ".join(["python -m bench profile scoring", *argv]),
              **measure(list(cfg.sizes), cfg.res, cfg.metrics, tuple(cfg.modes))}
    from bench.results import collect_provenance
    result["provenance"] = collect_provenance("cpu")
    text = json.dumps(result, indent=1)
    if cfg.out:
        from bench.paths import write_atomic
        write_atomic(cfg.out, text + "\n")
        print(f"wrote {cfg.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":  # the former entry point, now a thin wrapper of the one CLI
    from bench.__main__ import main
    sys.exit(main(["profile", "scoring", *sys.argv[1:]]))
