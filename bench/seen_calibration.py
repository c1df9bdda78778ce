"""Calibrate the seen/new retrieval proxy on the maze stand-in, where the poses give the truth.

On real DMLab/Minecraft data no poses exist, so a predicted frame counts as *seen* when some
ground-truth context frame has SSIM >= T with its ground-truth frame (both area-downsampled to
``bench.evaluate.PROXY_SIZE`` px; ``bench.evaluate.seen_frames``). This script measures, on
stand-in files written in the real format (the Minecraft stand-in's lossy mp4s included), how well
that rule recovers the pose rule (a frame is seen when its exact pose occurs among the context
frames): precision, recall and F1 of the proxy for thresholds from 0.5 to 0.999, on the
protocol's 144 -> 156 split at the protocol's resolution and on the quick 36 -> 12 split. One
threshold serves both datasets: the best mean F1 over them on the protocol split, ties going to the
*lowest* threshold (on the stand-in every threshold of a plateau is as good; real revisits are
never pixel-identical, so the most tolerant one is the safer choice). ``SEEN_SSIM_THRESHOLD``
holds it.

    python -m bench study seen_calibration videos=12

Caveat, in the output too: on the stand-in a revisited pose renders a bit-identical frame (SSIM 1
before the mp4 round trip), which real revisits never do; the proxy's recall on real data is
expected to be lower than here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SEED = 1  # not the evaluation stand-in's seed (0)
THRESHOLDS = [round(x, 3) for x in np.arange(0.5, 0.99, 0.01)] + [0.99, 0.995, 0.999]


def collect(dataset: str, root: Path, videos: int, log=print) -> dict[str, dict[str, np.ndarray]]:
    """Per split: the best context SSIM of every predicted frame and whether its pose was in the context."""
    from bench.data import ClipDataset, eval_refs
    from bench.data.standins import materialize
    from bench.evaluate import from_uint8, max_context_ssim, proxy_frames, to_uint8
    from bench.tasks import TASKS
    materialize(dataset, root, num_train=0, num_eval=videos, seed=SEED)
    task = TASKS[f"{dataset}_long"]
    quick = task.at_scale("quick")
    splits = {"protocol": (task, task.parts[0]), "quick": (quick, quick.parts[0])}
    out = {name: {"best": [], "seen": []} for name in splits}
    for name, (t, part) in splits.items():
        data = ClipDataset(t, eval_refs(t, root), root)
        tc, tp = part.context_frames, part.predict_frames
        for v in range(len(data)):
            t0 = time.perf_counter()
            clip = data[v]
            truth = proxy_frames(from_uint8(to_uint8(clip["video"][:tc + tp])))
            best = max_context_ssim(truth[:tc], truth[tc:])
            poses = [tuple(p) for p in clip["poses"][:tc + tp].tolist()]
            context = set(poses[:tc])
            out[name]["best"].append(best.numpy())
            out[name]["seen"].append(np.array([p in context for p in poses[tc:]]))
            log(f"[calibrate] {dataset} {name} video {v}: {tc} -> {tp}, {int(out[name]['seen'][-1].sum())} seen "
                f"({time.perf_counter() - t0:.1f}s)")
    return {name: {k: np.concatenate(x) for k, x in d.items()} for name, d in out.items()}


def sweep(best: np.ndarray, seen: np.ndarray) -> list[dict]:
    rows = []
    for t in THRESHOLDS:
        pred = best >= t
        tp_, fp, fn = int((pred & seen).sum()), int((pred & ~seen).sum()), int((~pred & seen).sum())
        precision = tp_ / (tp_ + fp) if tp_ + fp else 1.0
        recall = tp_ / (tp_ + fn) if tp_ + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"threshold": t, "precision": round(precision, 4), "recall": round(recall, 4),
                     "f1": round(f1, 4), "predicted_seen": int(pred.sum())})
    return rows


def summary(best: np.ndarray, seen: np.ndarray, threshold: float) -> dict:
    row = next(r for r in sweep(best, seen) if r["threshold"] == threshold)
    q = lambda x: [round(float(v), 4) for v in np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])] if len(x) else []  # noqa: E731
    return {**row, "frames": int(len(seen)), "seen_frames": int(seen.sum()),
            "best_ssim_quantiles_5_25_50_75_95": {"seen": q(best[seen]), "new": q(best[~seen])}}


def calibrate(videos: int, workdir: Path, log=print, command: str = "") -> dict:
    from bench.evaluate import PROXY_SIZE, SEEN_SSIM_THRESHOLD
    out = {"command": command, "videos": videos,
           "standin_seed": SEED, "proxy": f"max SSIM over the ground-truth context frames, frames area-downsampled "
           f"to {PROXY_SIZE} px (bench.evaluate.seen_frames)", "truth": "exact pose (lattice x, y, heading) among "
           "the context frames' poses", "threshold_in_use": SEEN_SSIM_THRESHOLD,
           "caveat": "on the stand-in a revisited pose renders a bit-identical frame (before Minecraft's mp4 "
                     "round trip); real revisits are never identical, so real-data recall will be lower",
           "datasets": {}}
    collected = {dataset: collect(dataset, workdir / dataset, videos, log) for dataset in ("dmlab", "minecraft")}
    sweeps = {dataset: sweep(d["protocol"]["best"], d["protocol"]["seen"]) for dataset, d in collected.items()}
    mean_f1 = [(float(np.mean([sweeps[ds][i]["f1"] for ds in sweeps])), t) for i, t in enumerate(THRESHOLDS)]
    best = max(f for f, _ in mean_f1)
    chosen = min(t for f, t in mean_f1 if f == best)
    out["chosen_threshold"] = chosen
    out["chosen_mean_f1"] = round(best, 4)
    for dataset, data in collected.items():
        out["datasets"][dataset] = {
            "at_chosen_threshold": {name: summary(d["best"], d["seen"], chosen) for name, d in data.items()},
            "at_threshold_in_use": {name: summary(d["best"], d["seen"], SEEN_SSIM_THRESHOLD[dataset])
                                    for name, d in data.items()},
            "sweep_protocol_split": sweeps[dataset]}
    return out


@dataclass(frozen=True)
class CalibrationConfig:
    """``python -m bench study seen_calibration key=value ...``."""

    videos: int = field(default=12, metadata={"ge": 1})  # stand-in videos per dataset
    out: str = field(default="results/profiles/seen_proxy_calibration.json", metadata={"path": True})
    workdir: str | None = field(default=None, metadata={"path": True})  # where the stand-ins go (None: a temporary folder)


def schema():
    from bench.compose import Schema, Section
    return Schema([Section("", CalibrationConfig(), label="calibration options (key=value)")])


def cli(argv: list[str]) -> int:
    """``python -m bench study seen_calibration [key=value ...]``."""
    from bench.compose import run_verb
    return run_verb("python -m bench study seen_calibration", __doc__.split("\n\n")[0], schema(),
                    lambda composed, args: run(composed[""], args), argv)


def run(cfg: CalibrationConfig, argv: list[str]) -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="seen-calibration-") as tmp:
        result = calibrate(cfg.videos, Path(cfg.workdir or tmp),
                           command=" ".join(["python -m bench study seen_calibration", *argv]))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp_path.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp_path, out)
    print(f"chosen threshold {result['chosen_threshold']} (mean F1 {result['chosen_mean_f1']} on the protocol split)")
    for dataset, d in result["datasets"].items():
        for name, s in d["at_chosen_threshold"].items():
            print(f"{dataset} {name}: precision {s['precision']}, recall {s['recall']} "
                  f"({s['seen_frames']} of {s['frames']} frames seen)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # the former entry point, now a thin wrapper of the one CLI
    from bench.__main__ import main
    sys.exit(main(["study", "seen_calibration", *sys.argv[1:]]))
