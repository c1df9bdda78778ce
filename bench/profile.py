"""``bench profile``: measured training and sampling cost across context lengths, next to analytic cost.

Every model is profiled through the shared interface (``training_loss`` and ``sample`` on pixels), in
a lossless pixel-unshuffle latent space so that the autoencoder does not hide the transformer's cost
(8x8 latent tokens per frame unless ``codec=`` says otherwise). For each model variant and clip length it measures

* a training step (forward, backward, AdamW step): median seconds, tokens per second, peak memory;
* sampling: seconds per generated frame after ``frames - new_frames`` context frames, with the KV
  cache on and off (FAR-Long: its multi-level cache), and peak memory;

Peak memory: on CUDA the allocator's peak over the timed runs; on the CPU (``cpu_memory=process``,
the default) every measure runs in a fresh process and its peak resident set size over the RSS it
started the measure with is reported (model, optimizer state, activations and the allocator's
slack; ``bench.isolated``).

Command line: ``python -m bench profile [model] key=value ...`` (``--help`` lists the options), e.g.
``python -m bench profile size=base frames=[16,32,64,128,300] resolution=128 codec=unshuffle8``.

Next to the measures: the model's analytic ``Cost`` (FLOPs per clip) and the model FLOP utilisation it implies on
the device's peak (GPU only). Warm-up iterations are excluded, CUDA is synchronised before every
timer read, medians are reported and every knob is echoed into the record. Output: a JSON record
and a CSV in ``results/profiles/`` plus PNG plots of time and memory against context length.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bench.api import Clip, Prompt, VideoBatch
from bench.config import validate
from bench.errors import ConfigError
from bench.registry import get_model_factory, get_task
from bench.paths import write_atomic

# Dense bf16 tensor-core peak FLOP/s of known devices (vendor datasheets, without sparsity); the
# first key whose words all occur in the device name wins ("NVIDIA H100 80GB HBM3" is the SXM part).
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}

# variant -> (registered model, model overrides, sampling modes: name -> overrides)
VARIANTS: dict[str, tuple[str, dict, dict[str, dict]]] = {
    "far": ("far", {"long_context": False}, {"cache": {"use_cache": True}, "no_cache": {"use_cache": False}}),
    "far_long": ("far", {"long_context": True, "long_clip": "full"},
                 {"multilevel_cache": {"use_cache": True}, "no_cache": {"use_cache": False}}),
}
SIZES = {  # transformer size per variant family: small (CPU) and base (FAR-B: 12 layers x 12 heads)
    "small": {"far": {"num_layers": 2, "num_heads": 2}},
    "base": {"far": {"num_layers": 12, "num_heads": 12}},
}


@dataclass
class ProfileConfig:
    """``python -m bench profile [model] key=value ...``; lists are written ``frames=[16,32,64]``."""

    variants: tuple[str, ...] = field(default=("far", "far_long"), metadata={"choices": tuple(VARIANTS)})
    frames: tuple[int, ...] = field(default=(16, 32, 64, 128, 300), metadata={"ge": 2})
    size: str = field(default="small", metadata={"choices": tuple(SIZES)})
    resolution: int = field(default=64, metadata={"ge": 8})  # pixels
    codec: str = ""  # "" = the model's quick-scale codec (8x8 latent tokens per frame); e.g.
    # codec=unshuffle8 resolution=128 gives FAR-B's 16x16 = 256 tokens per frame
    batch_size: int = field(default=1, metadata={"ge": 1})
    new_frames: int = field(default=4, metadata={"ge": 1})  # frames generated when timing sampling
    num_steps: int = field(default=10, metadata={"ge": 1})  # Euler steps per generated frame
    warmup: int = field(default=1, metadata={"ge": 0})
    iters: int = field(default=3, metadata={"ge": 1})
    sample: bool = True
    train: bool = True
    device: str | None = None
    dtype: str = field(default="auto", metadata={"choices": ("auto", "bf16", "fp32")})  # auto: bf16 autocast on CUDA
    # peak memory on the CPU: "process" measures every point in a fresh process (its peak resident set
    # size over the RSS it started the point with); "off" measures none (faster; CUDA always measures
    # the allocator's peak)
    cpu_memory: str = field(default="process", metadata={"choices": ("process", "off")})
    out: str = field(default="results/profiles", metadata={"path": True})
    tag: str = ""


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def peak_flops(name: str) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if all(part in name for part in key.split()):
            return value
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, iters: int) -> tuple[float, list[float], int | None]:
    """Median seconds of ``fn()`` over ``iters`` runs after ``warmup``; peak CUDA memory of the timed runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return statistics.median(times), times, peak


def _profile_task(frames: int, resolution: int):
    """dmlab_long shaped to (frames, resolution): action-conditioned, long clips."""
    task = get_task("dmlab_long")
    part = replace(task.parts[0], context_frames=frames - 1, predict_frames=1)
    return replace(task, resolution=resolution, num_frames=frames, parts=(part,))


def build(variant: str, cfg: ProfileConfig, frames: int, mode_overrides: dict, device: torch.device):
    name, overrides, _ = VARIANTS[variant]
    options = {**overrides, **SIZES[cfg.size].get(name, {}), **mode_overrides}
    if cfg.codec:
        options["codec"] = cfg.codec
    model = get_model_factory(name)(task=_profile_task(frames, cfg.resolution), scale="quick", **options)
    return model.to(device), options


def measures(variant: str, cfg: ProfileConfig) -> list[str]:
    """What is measured per clip length: ``train_step`` and every sampling mode of the variant."""
    return (["train_step"] if cfg.train else []) + (list(VARIANTS[variant][2]) if cfg.sample else [])


def profile_point(variant: str, frames: int, cfg: ProfileConfig, device: torch.device) -> list[dict]:
    """Every measure of one (variant, clip length). On the CPU with ``cpu_memory=process`` each
    measure runs in a fresh process (:func:`point`), whose peak resident set size over the RSS it
    started from is the measure's peak memory; on CUDA the allocator's peak of the timed runs."""
    if device.type != "cpu" or cfg.cpu_memory == "off":
        return profile_one(variant, frames, cfg, device)
    from bench.isolated import call
    return [call("bench.profile", "point", {"variant": variant, "frames": frames, "config": asdict(cfg),
                                            "measure": m, "threads": torch.get_num_threads()})
            for m in measures(variant, cfg)]


def point(payload: dict) -> dict:
    """One measure in this (fresh) process, with its peak RSS growth as ``peak_memory_bytes``."""
    from bench.isolated import peak_rss_bytes, reset_peak_rss, rss_bytes
    torch.set_num_threads(int(payload["threads"]))
    c = payload["config"]
    cfg = ProfileConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
    reset = reset_peak_rss()
    before = rss_bytes()
    (row,) = profile_one(payload["variant"], payload["frames"], cfg, torch.device("cpu"), only=payload["measure"])
    peak = peak_rss_bytes()
    row.update(peak_memory_bytes=max(0, peak - before), peak_rss_bytes=peak, rss_before_bytes=before,
               memory_measure="CPU: peak resident set size of a fresh process over its RSS before the measure"
                              + ("" if reset else " (peak not resettable here: includes the import peak)"))
    return row


def profile_one(variant: str, frames: int, cfg: ProfileConfig, device: torch.device,
                only: str | None = None) -> list[dict]:
    """The measures of one (variant, clip length) in this process (``only``: just that one)."""
    rows = []
    g = torch.Generator().manual_seed(0)
    b, r = cfg.batch_size, cfg.resolution
    video = torch.rand(b, frames, 3, r, r, generator=g).to(device)
    actions = torch.randint(0, 3, (b, frames), generator=g).to(device)
    autocast = device.type == "cuda" and cfg.dtype in ("auto", "bf16")
    peak = peak_flops(device_name(device)) if device.type == "cuda" else None
    base = {"variant": variant, "frames": frames, "size": cfg.size, "resolution": r, "batch_size": b,
            "device": device_name(device), "dtype": "bf16-autocast" if autocast else "fp32"}
    if cfg.train and only in (None, "train_step"):
        model, options = build(variant, cfg, frames, {}, device)
        params = [p for p in model.trainable_module().parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        batch = VideoBatch(video=video, actions=actions)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss, _ = model.training_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.manual_seed(0)
        sec, times, mem = timed(step, device, cfg.warmup, cfg.iters)
        cost = model.cost(Clip(frames=frames, height=r, width=r))
        tokens = b * frames * (r // model.codec.compression) ** 2
        achieved = b * cost.train_flops_per_clip / sec
        rows.append({**base, "measure": "train_step", "mode": "", "seconds": sec, "all_seconds": times,
                     "tokens_per_s": tokens / sec, "peak_memory_bytes": mem, "params": cost.params,
                     "memory_measure": "CUDA allocator peak of the timed runs" if mem is not None else "not measured",
                     "analytic_flops": b * cost.train_flops_per_clip, "achieved_flops_per_s": achieved,
                     "mfu": achieved / peak if peak else None, "options": options, "note": ""})
        del model, opt
    if cfg.sample:
        for mode, mode_overrides in VARIANTS[variant][2].items():
            if only not in (None, mode):
                continue
            model, options = build(variant, cfg, frames, {**mode_overrides, "num_steps": cfg.num_steps}, device)
            ctx = frames - cfg.new_frames
            prompt = Prompt(context=video[:, :ctx], actions=actions)
            gens = [torch.Generator().manual_seed(i) for i in range(b)]

            def sample():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    model.sample(prompt, cfg.new_frames, gens)
            sec, times, mem = timed(sample, device, cfg.warmup, cfg.iters)
            cost = model.cost(Clip(frames=frames, height=r, width=r, context_frames=ctx))
            achieved = b * cost.sample_flops_per_clip / sec
            rows.append({**base, "measure": "sample_per_frame", "mode": mode, "seconds": sec / cfg.new_frames,
                         "all_seconds": [t / cfg.new_frames for t in times], "tokens_per_s": None,
                         "peak_memory_bytes": mem, "params": cost.params,
                         "memory_measure": "CUDA allocator peak of the timed runs" if mem is not None
                         else "not measured",
                         "analytic_flops": b * cost.sample_flops_per_clip / cfg.new_frames,
                         "achieved_flops_per_s": achieved, "mfu": achieved / peak if peak else None,
                         "network_calls_per_frame": cost.network_calls_per_clip / cfg.new_frames,
                         "cache_bytes": cost.cache_bytes, "options": options, "note": ""})
            del model
    return rows


def run_profile(cfg: ProfileConfig, log=print) -> Path:
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    validate(cfg)
    for frames in cfg.frames:
        if frames <= cfg.new_frames:
            raise ConfigError(f"frames={list(cfg.frames)}: every clip length must exceed new_frames={cfg.new_frames}")
    for variant in cfg.variants:
        for frames in cfg.frames:
            try:
                new = profile_point(variant, frames, cfg, device)
            except torch.OutOfMemoryError as e:
                new = [{"variant": variant, "frames": frames, "measure": "oom", "note": str(e)[:200]}]
                torch.cuda.empty_cache()
            for row in new:
                log(f"[profile] {variant:>10} {frames:>4} frames {row['measure']:>16} {row.get('mode', ''):>16}: "
                    f"{row.get('seconds', float('nan')):.4f} s")
            rows.extend(new)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"profile_{'gpu' if device.type == 'cuda' else 'cpu'}_{cfg.size}{('_' + cfg.tag) if cfg.tag else ''}"
    record = {"config": asdict(cfg), "device": device_name(device), "torch": torch.__version__,
              "command": " ".join(["python -m bench profile", *_argv_echo(cfg)]),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    write_atomic(out / f"{stem}.json", json.dumps(record, indent=1, default=str))
    keys = ["variant", "frames", "measure", "mode", "seconds", "tokens_per_s", "peak_memory_bytes", "params",
            "analytic_flops", "achieved_flops_per_s", "mfu", "network_calls_per_frame", "cache_bytes", "device",
            "dtype", "size", "resolution", "batch_size"]
    tmp = out / f".{stem}.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / f"{stem}.csv")
    plot_profile(rows, out / f"{stem}.png", title=f"{record['device']} ({cfg.size}, {cfg.resolution}px)")
    log(f"[profile] wrote {out / stem}.json/.csv/.png")
    return out / f"{stem}.json"


def _argv_echo(cfg: ProfileConfig) -> list[str]:
    """The overrides that give ``cfg``, in the command line's grammar (``frames=[16,32]``)."""
    d = ProfileConfig()
    out = []
    for k, v in asdict(cfg).items():
        if v != getattr(d, k):
            out.append(f"{k}=[{','.join(map(str, v))}]" if isinstance(v, (tuple, list)) else
                       f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}")
    return out


def plot_profile(rows: list[dict], path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    series: dict[tuple, list] = {}
    for row in rows:
        if row.get("measure") in ("train_step", "sample_per_frame"):
            series.setdefault((row["variant"], row["measure"], row["mode"]), []).append(row)
    for (variant, measure, mode), pts in sorted(series.items()):
        pts = sorted(pts, key=lambda r: r["frames"])
        x = [p["frames"] for p in pts]
        label = f"{variant} {mode}".strip()
        if measure == "train_step":
            axes[0].plot(x, [p["seconds"] for p in pts], "o-", label=label)
        else:
            axes[1].plot(x, [p["seconds"] for p in pts], "o-", label=label)
        if all(p.get("peak_memory_bytes") for p in pts):
            axes[2].plot(x, [p["peak_memory_bytes"] / 2**20 for p in pts], "o-" if measure == "train_step" else "x--",
                         label=f"{label} ({'training' if measure == 'train_step' else 'sampling'})")
    cpu = any(str(r.get("memory_measure", "")).startswith("CPU") for r in rows)
    memory = "MiB (RSS growth, own process)" if cpu else "MiB (CUDA allocator peak)"
    for ax, t, y in zip(axes, ("training step", "sampling, per frame", "peak memory"),
                        ("seconds (median)", "seconds (median)", memory)):
        ax.set(title=t, xlabel="context length (frames)", ylabel=y, xscale="log", yscale="log")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured (cpu_memory=off)", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def schema():
    from bench.compose import Schema, Section
    return Schema([Section("", ProfileConfig(), label="profile options (key=value; lists as frames=[16,32])")])


def cli(argv: list[str]) -> int:
    """``python -m bench profile [model] [key=value ...]`` (see the module doc)."""
    from bench.compose import run_verb
    return run_verb("python -m bench profile model", __doc__.split("\n\n")[0], schema(),
                    lambda composed, _: (run_profile(composed[""]), 0)[1], argv)


def main(argv: list[str]) -> int:  # the former entry point
    return cli(argv)
