"""``bench run``: data -> model -> (train) -> sample -> store -> score -> record, grid and table row.

Reads top to bottom as the steps of a run:

1. the task at its scale (``quick`` by default: minutes on a CPU; ``paper`` is the protocol);
2. the data: the real dataset if a root is found (flag, ``data_root=`` key or environment),
   otherwise the task's procedural stand-in, written once in the real on-disk format;
3. the model: a given checkpoint, else official weights from the asset store, else trained here
   with the shared loop (``bench train``);
4. samples into a lossless store keyed by the model's identity (resumable, sharded over
   ``torchrun`` processes with per-sample seeds), then scores recomputed from the store;
5. a JSON run record with provenance, a PNG grid, and a leaderboard row next to the ``dummy``
   model (repeat the last context frame) scored on the same clips.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from bench.grid import curve_path, has_curves, render_task_curves
from bench.registry import get_model_factory, get_task
from bench.tasks import Task
from bench.train import TrainConfig, barrier, dist_info, load_checkpoint, train


@dataclass
class RunConfig:
    model: str = "far"
    task: str = "dmlab_long"
    scale: str = "quick"
    data_root: str | None = None  # else $FARZOO_<DATASET>_ROOT, $FARZOO_DATA/<dataset>, or the stand-in
    checkpoint: str | None = None  # a bench training checkpoint or an official state dict
    workdir: str = "runs"  # checkpoints and sample stores
    results: str = "results"  # run records and grids (results/runs)
    device: str | None = None
    sample_batch_size: int = 8
    compare_dummy: bool = True
    train_only: bool = False
    progress: bool = True
    model_options: dict = field(default_factory=dict)  # model.<field>=value overrides
    train_options: dict = field(default_factory=dict)  # train.<field>=value overrides


# ----------------------------------------------------------------------------- sizes per scale

# How big a stand-in is written, per scale: (training videos, at least this many eval videos).
# UCF-101's test list holds 10x the eval count (FAR evaluates every 10th clip).
STANDIN_SIZE = {"quick": {"dmlab": (48, 16), "minecraft": (32, 16), "ucf101": (101, 16), "bair": (64, 8),
                          "greenearthnet": (16, 4)},
                "paper": {"dmlab": (4000, 256), "minecraft": (2000, 256), "ucf101": (2020, 256),
                          "bair": (2000, 256), "greenearthnet": (400, 64)}}


def default_train_config(task: Task, scale: str) -> TrainConfig:
    """``quick``: a few minutes on a 2-core CPU. ``paper``: the official FAR train config of the task's
    dataset (``bench.recipes.RECIPES``: steps, warm-up, batch, learning rate, EMA; expect days on GPUs)."""
    if scale == "quick":
        return TrainConfig(steps=600, batch_size=4, lr=1e-3, warmup_steps=50, ema_decay=0.995,
                           ckpt_every=100, log_every=10)
    from bench.recipes import recipe_for
    r = recipe_for(task)
    return TrainConfig(steps=r.steps, batch_size=r.batch_size, lr=r.lr, warmup_steps=r.warmup_steps,
                       ema_decay=r.ema_decay, ckpt_every=5000)


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class DataSource:
    dataset: str
    root: Path
    standin: bool

    @property
    def label(self) -> str:
        return "stand-in" if self.standin else "real"


def farzoo_home() -> Path:
    return Path(os.environ.get("FARZOO_HOME", "~/.cache/farzoo")).expanduser()


def prepare_data(task: Task, scale: str, data_root: str | None, log=print) -> DataSource:
    """The real dataset when a root is found; otherwise the stand-in (materialised once, on rank 0)."""
    from bench.data import resolve_root
    from bench.data.standins import is_standin, materialize
    root = resolve_root(task.dataset, flag=data_root)
    if root is not None:  # a given folder may itself hold a stand-in: it stays labelled as one
        return DataSource(task.dataset, Path(root), standin=is_standin(root))
    num_train, num_eval = STANDIN_SIZE[scale][task.dataset]
    root = farzoo_home() / "standins" / f"{task.dataset}-{scale}"
    rank, _ = dist_info()
    if rank == 0:
        log(f"[data] no {task.dataset} data found (flag, $FARZOO_{task.dataset.upper()}_ROOT, $FARZOO_DATA); "
            f"using the procedural STAND-IN at {root}")
        materialize(task.dataset, root, num_train=num_train, num_eval=num_eval)
    barrier()
    return DataSource(task.dataset, root, standin=True)


def eval_dataset(task: Task, source: DataSource):
    from bench.data import ClipDataset, eval_refs
    return ClipDataset(task, eval_refs(task, source.root), source.root)


def train_dataset(task: Task, source: DataSource):
    from bench.data import TrainClipDataset, train_refs
    return TrainClipDataset(task, train_refs(task, source.root), source.root, num_frames=task.num_frames)


# ----------------------------------------------------------------------------- model and weights

def sha256_file(path: Path, prefix: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:prefix] if prefix else h.hexdigest()


def load_weights(model, path: Path) -> str:
    """Load a bench checkpoint (EMA weights) or an official state dict; returns the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".pt":
        state = load_checkpoint(path)
        if isinstance(state, dict) and "ema" in state:
            model.trainable_module().load_state_dict(state["ema"])
            return sha256_file(path)
    if not hasattr(model, "load_official"):
        raise ValueError(f"{path}: not a bench training checkpoint (no 'ema' entry), and model "
                         f"{model.name!r} has no official-weights loader")
    model.load_official(path)
    return sha256_file(path)


def identity(run: RunConfig, model, weights: str) -> str:
    """A short hash of everything that determines the samples (model config and weights)."""
    blob = json.dumps({"model": run.model, "config": model.config(), "weights": weights}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def obtain_weights(run: RunConfig, task: Task, model, source: DataSource, run_dir: Path, device, log=print) -> str:
    """Given checkpoint, else official weights in the asset store, else train here. Returns a weights id."""
    if not getattr(model, "trainable", False):
        return "none"
    weights_asset, vae_asset = getattr(model, "official_assets", lambda: (None, None))()
    if run.scale == "paper" and vae_asset is not None:
        # the autoencoder is not trained here: a paper-scale run needs the released one
        from bench.assets import require
        model.load_codec_weights(require(vae_asset))
    if run.checkpoint:
        return f"sha256:{load_weights(model, Path(run.checkpoint))}"
    if run.scale == "paper" and weights_asset is not None:
        from bench.assets import AssetMissing, require
        try:
            path = require(weights_asset)
            log(f"[weights] official checkpoint {path}")
            return f"sha256:{load_weights(model, path)}"
        except AssetMissing as e:
            log(f"[weights] {e}; training instead")
    cfg = replace(default_train_config(task, run.scale), progress=run.progress)
    cfg = _apply(cfg, run.train_options, "train")
    log(f"[train] {run.model} on {task.name} ({source.label} data), {cfg.steps} steps at batch {cfg.batch_size}")
    result = train(model, train_dataset(task, source), cfg, run_dir / "train", device=device, log=log)
    if result.losses:
        k = max(1, len(result.losses) // 10)
        first, last = sum(result.losses[:k]) / k, sum(result.losses[-k:]) / k
        log(f"[train] loss {first:.4f} (first {k} steps) -> {last:.4f} (last {k} steps)")
    return f"trained:{result.checkpoint}:sha256:{sha256_file(result.checkpoint, 16)}"


def _apply(obj, options: dict, what: str):
    valid = {f.name: f for f in fields(obj)}
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return replace(obj, **options)


# ----------------------------------------------------------------------------- the run

def _store(run_dir: Path, ident: str, task: Task, scale: str, run: RunConfig, weights: str, config: dict) -> Path:
    """The sample store for this exact (task, scale, model identity); refuses a mismatched one."""
    store = run_dir / f"samples-{ident}"
    manifest = store / "STORE.json"
    want = {"task": task.name, "task_hash": task.hash(scale), "scale": scale, "model": run.model,
            "identity": ident, "weights": weights, "model_config": config}
    rank, _ = dist_info()
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if have != want:
            raise RuntimeError(f"{manifest} belongs to another run: {have} != {want}")
    elif rank == 0:
        store.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(want, indent=1))
        os.replace(tmp, manifest)
    barrier()
    return store


def evaluate_model(run: RunConfig, task: Task, model, name: str, weights: str, source: DataSource, device,
                   log=print) -> dict:
    """Sample into the store (this process's share), then score on rank 0. Returns the record fields."""
    from bench.evaluate import sample_to_store, score_store
    rank, world = dist_info()
    t_task = task.at_scale(run.scale)
    run_dir = Path(run.workdir) / f"{task.name}__{run.scale}" / name
    ident = identity(replace(run, model=name), model, weights)
    config = json.loads(json.dumps(model.config() if hasattr(model, "config") else {}, default=str))
    store = _store(run_dir, ident, t_task, run.scale, replace(run, model=name), weights, config)
    dataset = eval_dataset(t_task, source)
    progress = _progress(f"sample {name}", run.progress and rank == 0)
    t0 = time.perf_counter()
    made = sample_to_store(model, t_task, dataset, store, batch_size=run.sample_batch_size, rank=rank,
                           world=world, device=device, progress=progress)
    barrier()
    log(f"[sample] {name}: {made} new samples in {time.perf_counter() - t0:.1f}s ({store})")
    if rank != 0:
        return {}
    metrics = score_store(t_task, dataset, store, device=device, log=log)
    return {"metrics": metrics, "store": str(store), "identity": ident, "dataset": dataset}


def _progress(desc: str, enabled: bool):
    if not enabled:
        return lambda it: it
    from tqdm import tqdm
    return lambda it: tqdm(it, desc=desc, dynamic_ncols=True)


def run(run: RunConfig, log=print) -> list[Path]:
    """Do the whole run; returns the written record paths (rank 0) or [] (other ranks)."""
    from bench.conventions import record_conventions
    from bench.results import RunRecord, collect_provenance, write_record

    started = time.time()
    base_task = get_task(run.task)
    task = base_task.at_scale(run.scale)
    rank, world = dist_info()
    device = torch.device(run.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if rank == 0:
        log(f"[run] {run.model} on {task.name} at scale {run.scale!r} (protocol hash {base_task.hash(run.scale)})"
            + ("; use --scale paper for the protocol itself" if run.scale == "quick" else ""))
    source = prepare_data(base_task, run.scale, run.data_root, log=log)
    model = get_model_factory(run.model)(task=task, scale=run.scale, **run.model_options)
    if hasattr(model, "to"):
        model.to(device)
    run_dir = Path(run.workdir) / f"{task.name}__{run.scale}" / run.model
    weights = obtain_weights(run, task, model, source, run_dir, device, log=log)
    if run.train_only:
        return []

    entries = [(run.model, model, weights)]
    if run.compare_dummy and run.model != "dummy":
        entries.append(("dummy", get_model_factory("dummy")(task=task, scale=run.scale), "none"))
    paths, rows, evaluated = [], [], []
    for name, m, w in entries:
        t0 = time.time()
        out = evaluate_model(run, base_task, m, name, w, source, device, log=log)
        evaluated.append((name, m, w, out, time.time() - (started if name == run.model else t0)))
    if rank == 0:
        _reference_intervals(run, base_task, source, {name: out for name, _, _, out, _ in evaluated}, device, log)
    for name, m, w, out, wall in evaluated:
        if rank != 0:
            continue
        grid = _grid(run, task, out["store"], out["dataset"], name)
        curve = curve_path(grid) if has_curves(out["metrics"]) else None
        record = RunRecord(
            task=task.name, task_spec=base_task.spec(run.scale), task_hash=base_task.hash(run.scale),
            scale=run.scale, data=source.label, data_root=str(source.root), model=name,
            model_config=m.config() if hasattr(m, "config") else {}, checkpoint=w,
            seeds=list(task.seeds),
            counts={"videos": task.num_videos, "trajectories": task.trajectories,
                    "frames": task.num_frames},
            metrics=out["metrics"], wall_time_s=wall,
            started=started, finished=time.time(), command=" ".join(sys.argv),
            extra={"sample_store": out["store"], "grid": str(grid), "world_size": world,
                   "cost": asdict(m.cost(_clip(task))), **record_conventions(base_task, run.scale, m, device, w),
                   **({"curve": str(curve)} if curve else {})},
            **collect_provenance(device))
        paths.append(write_record(record, Path(run.results) / "runs"))
        rows.append(record)
    if rank == 0:
        for record in rows:  # every model with a record on this task, scale and data, one line each
            if record.extra.get("curve"):
                render_task_curves(Path(run.results) / "runs", record)
        log(leaderboard_rows(rows))
        log(f"[run] records: {', '.join(map(str, paths))}; grids next to them; "
            f"regenerate tables with `python -m bench table`")
    return paths


def _clip(task: Task):
    from bench.api import Clip
    part = task.parts[0]
    return Clip(frames=part.context_frames + part.predict_frames, height=task.resolution,
                width=task.resolution, context_frames=part.context_frames)


def _grid(run: RunConfig, task: Task, store: str, dataset, name: str) -> Path:
    from bench.grid import grid_for_store
    path = Path(run.results) / "runs" / "grids" / f"{task.name}__{name}__{run.scale}.png"
    return grid_for_store(task, dataset, Path(store), path, model=name, scale=run.scale)


def _reference_intervals(run: RunConfig, task: Task, source: DataSource, outs: dict, device, log=print) -> None:
    """Every evaluated model's paired-bootstrap interval against ``dummy`` (scored in this run, or from
    its latest sample store of this protocol in the workdir)."""
    from bench.compare import REFERENCE_MODEL, add_reference_intervals
    ref = outs.get(REFERENCE_MODEL, {}).get("metrics")
    why = ""
    if ref is None and any(name != REFERENCE_MODEL for name in outs):
        ref, why = _stored_reference(run, task, source, device, log)
    for name, out in outs.items():
        if name != REFERENCE_MODEL:
            add_reference_intervals(out["metrics"], ref, why_missing=why)


def _stored_reference(run: RunConfig, task: Task, source: DataSource, device, log=print) -> tuple[dict | None, str]:
    """Scores of the reference model's latest store of this protocol and scale, or (None, why not)."""
    from bench.compare import REFERENCE_MODEL
    from bench.evaluate import score_store
    run_dir = Path(run.workdir) / f"{task.name}__{run.scale}" / REFERENCE_MODEL
    for manifest in sorted(run_dir.glob("samples-*/STORE.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(manifest.read_text()).get("task_hash") == task.hash(run.scale):
            t_task = task.at_scale(run.scale)
            log(f"[score] {REFERENCE_MODEL} for the intervals: scoring {manifest.parent}")
            return score_store(t_task, eval_dataset(t_task, source), manifest.parent, device=device,
                               log=lambda _: None), ""
    return None, (f"no {REFERENCE_MODEL} samples of protocol {task.hash(run.scale)} under {run_dir}: run without "
                  f"--no-dummy (or `bench run --model {REFERENCE_MODEL}`) for the interval")


def _fmt(m: dict) -> str:
    if "unavailable" in m or "not_applicable" in m:
        return "n/a"
    text = f"{m['mean']:.4g}" + (f" ± {m['std']:.2g}" if m.get("n", 1) > 1 else "")
    ci = (m.get("vs_reference") or {}).get("ci")
    if ci:
        text += f" [{ci[0]:+.3g}, {ci[1]:+.3g}] vs {m['vs_reference']['reference']}"
    for split in ("seen", "new"):
        if (m.get(split) or {}).get("mean") is not None:
            text += f"; {split} {m[split]['mean']:.4g}"
    return text


def leaderboard_rows(records: list) -> str:
    """A markdown table of this run's rows (the full leaderboards come from ``bench table``)."""
    if not records:
        return ""
    names = list(records[0].metrics)
    head = ["model", "data", "scale", "hash", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        lines.append("| " + " | ".join([r.model, r.data, r.scale, r.task_hash,
                                         *(_fmt(r.metrics.get(n, {"unavailable": ""})) for n in names)]) + " |")
    notes = [f"{n}: unavailable ({m['unavailable']}); provide with `{m['provide']}`"
             for n, m in records[0].metrics.items() if "unavailable" in m]
    notes += [f"{n}: not applicable ({m['not_applicable']})" for n, m in records[0].metrics.items()
              if "not_applicable" in m]
    split = next((m["split"] for m in records[0].metrics.values() if isinstance(m, dict) and "split" in m), None)
    if split:
        notes.append(f"seen/new frames (rule {split['rule']}): {split['seen_frames']} seen, {split['new_frames']} new; "
                     f"{split['videos_with_seen']} videos have seen frames")
    return "\n".join(lines + notes)


def score(run: RunConfig, log=print) -> list[Path]:
    """Recompute the metrics of the latest sample store of (model, task, scale); write a new record."""
    from bench.evaluate import score_store
    from bench.results import RunRecord, collect_provenance, write_record
    base_task = get_task(run.task)
    task = base_task.at_scale(run.scale)
    run_dir = Path(run.workdir) / f"{task.name}__{run.scale}" / run.model
    stores = sorted(run_dir.glob("samples-*/STORE.json"), key=lambda p: p.stat().st_mtime)
    if not stores:
        raise SystemExit(f"no sample store under {run_dir}: run `python -m bench run --model {run.model} "
                         f"--task {run.task} --scale {run.scale}` first")
    manifest = json.loads(stores[-1].read_text())
    if manifest["task_hash"] != base_task.hash(run.scale):
        raise SystemExit(f"{stores[-1]}: samples were made for protocol hash {manifest['task_hash']}, the task "
                         f"is now {base_task.hash(run.scale)}; sample again with `bench run`")
    source = prepare_data(base_task, run.scale, run.data_root, log=log)
    device = torch.device(run.device or "cpu")
    t0 = time.time()
    dataset = eval_dataset(task, source)
    metrics = score_store(task, dataset, stores[-1].parent, device=device, log=log)
    _reference_intervals(run, base_task, source, {run.model: {"metrics": metrics}}, device, log)
    record = RunRecord(
        task=task.name, task_spec=base_task.spec(run.scale), task_hash=base_task.hash(run.scale), scale=run.scale,
        data=source.label, data_root=str(source.root), model=run.model, model_config=manifest["model_config"],
        checkpoint=manifest["weights"], seeds=list(task.seeds),
        counts={"videos": task.num_videos, "trajectories": task.trajectories, "frames": task.num_frames},
        metrics=metrics, wall_time_s=time.time() - t0, started=t0, finished=time.time(),
        command=" ".join(sys.argv), extra={"sample_store": str(stores[-1].parent), "rescored": True,
                                           "seed_kind": base_task.seed_kind},
        **collect_provenance(device))
    path = write_record(record, Path(run.results) / "runs")
    log(leaderboard_rows([record]))
    log(f"[score] record: {path}")
    return [path]
