"""Convergence of FAR versus the video DiT at equal size (FAR's first claim).

``python -m bench study convergence [key=value ...] [model.key=value ...] [train.key=value ...]``
(``--help`` lists the options; ``--config recipe.yaml`` and ``--cfg job`` as for ``bench run``)

Both models are trained from scratch, one after the other, on the same stand-in task and evaluated
every ``eval_every`` steps; the curves go to ``results/convergence/`` as a table (``.csv``, ``.md``),
a plot (``.png``) and every knob (``.json``), all written atomically. What is held equal:

- latent space: the task's quick-scale codec (the lossless pixel-unshuffle of ``bench.models.far``),
  checked to be the same codec for both;
- size: both use the same ``model.*`` overrides (depth, heads, head width), so the parameter counts
  match (checked within ``max_param_gap``; for FAR without long-term context and the joint-attention
  DiT they are identical);
- training: one ``TrainConfig`` (AdamW, warm-up + cosine ``bench.train.lr_at``, clipping, EMA), the
  same seed and the *same sequence of training clips* (videos, windows and crops are drawn from
  seeds that depend only on the fetch count, not on each model's own random draws);
- evaluation: the same held-out clips, fixed noise and timesteps, fixed per-sample seeds.

The study task is derived from a registered task at quick scale: ``frames`` frames per clip (the
task's context, the rest predicted), PSNR and SSIM with one trajectory per clip (mean reduction);
eval clips are ``windows_per_video`` evenly spaced windows of each of the first ``eval_videos``
videos of the evaluation split (held out from training).

At each evaluation, on the EMA weights (as ``bench run`` evaluates):

- ``eval_loss``: each model's *own* training objective on the eval clips under a fixed random
  stream. These are defined differently: FAR draws a timestep per frame and makes ~10% of the frames
  clean context; the DiT draws one timestep per clip and a clean prefix of random length half the
  time. They are not comparable across models;
- ``common_loss``: one quantity computed identically for both: velocity MSE of the predicted frames
  given the clean context frames, all predicted frames at one noise level per clip (logit-normal, as
  in training), same noise and levels for both models. It is the DiT's training objective at the
  task's context length, and, for FAR, a case its per-frame timesteps include;
- ``psnr`` / ``ssim``: the harness's sample -> store -> score path (``bench.evaluate``) on the
  task's future frames, with per-sample seeds from ``derive_seed``; ``dummy`` (repeat the last
  context frame) is scored on the same clips as a reference line.

The training loop is ``bench.train.train``'s (same pieces: ``collate``, ``EMA``, ``lr_at``), single
process, pausing to evaluate; ``tests/test_convergence.py`` checks it matches ``train`` exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from bench.api import VideoBatch
from bench.errors import ConfigError, one_line
from bench.evaluate import derive_seed, load_part, sample_to_store, score_store
from bench.paths import portable, write_atomic
from bench.registry import get_model_factory, get_task
from bench.run import DataSource, eval_dataset, prepare_data, train_dataset
from bench.tasks import Metric, Task
from bench.train import EMA, TrainConfig, _batches, _to, collate, make_optimizer, optimizer_step
from far.flow import (CLEAN_TIMESTEP, NUM_TRAIN_TIMESTEPS, add_noise, sample_train_indices, train_sigmas,
                      velocity_target)
from far.model import count_parameters


@dataclass(frozen=True)
class StudyConfig:
    """The study's options (``key=value``); ``train.<field>=`` sets the shared TrainConfig (its steps are
    ``steps=``), ``model.<field>=`` an option of every model of the study."""

    task: str = "bair_pred"  # a registered task; its first part is used
    frames: int = field(default=8, metadata={"ge": 2})  # frames per clip (context + predicted) of the study task
    context: int | None = field(default=None, metadata={"ge": 1})  # context frames (None: the task's quick-scale context)
    models: tuple[str, ...] = ("far", "video_dit")
    steps: int = field(default=600, metadata={"ge": 1})
    eval_every: int = field(default=50, metadata={"ge": 1})
    eval_videos: int = field(default=8, metadata={"ge": 1})  # videos of the evaluation split
    windows_per_video: int = field(default=3, metadata={"ge": 1})  # evenly spaced eval windows per video
    trajectories: int = field(default=1, metadata={"ge": 1})  # samples per eval clip (metrics averaged over them)
    loss_draws: int = field(default=2, metadata={"ge": 1})  # fixed noise draws per eval clip for the held-out losses
    sample_batch_size: int = field(default=8, metadata={"ge": 1})
    max_param_gap: float = field(default=0.05, metadata={"ge": 0})
    # else the task's quick stand-in (bench.run.prepare_data)
    data_root: str | None = field(default=None, metadata={"path": True})
    out: str = field(default="results/convergence", metadata={"path": True})
    device: str | None = None
    note: str = ""  # a line for the report (e.g. the conditions the wall times were measured under)


def default_train(cfg: StudyConfig) -> TrainConfig:
    """The shared recipe: the quick-scale batch and peak LR of ``bench.run.default_train_config``, a
    shorter EMA horizon (0.99) so the EMA weights follow the curve at these step counts."""
    return TrainConfig(steps=cfg.steps, batch_size=4, lr=1e-3, warmup_steps=50, ema_decay=0.99, seed=0,
                       progress=False)


# ----------------------------------------------------------------------------- task and data

def study_task(cfg: StudyConfig) -> Task:
    """The registered task at quick scale, cut to ``frames`` frames per clip, PSNR/SSIM only."""
    base = get_task(cfg.task)
    part = base.at_scale("quick").parts[0]
    if part.condition != "none":
        raise ValueError(f"task {base.name} is {part.condition}-conditioned; the study covers unconditional "
                         "prediction tasks (e.g. bair_pred, ucf101_pred)")
    ctx = part.context_frames if cfg.context is None else cfg.context
    if not 1 <= ctx < cfg.frames:
        raise ValueError(f"need 1 <= context ({ctx}) < frames ({cfg.frames}): the study predicts from context")
    videos = cfg.eval_videos * cfg.windows_per_video
    part = replace(part, context_frames=ctx, predict_frames=cfg.frames - ctx,
                   metrics=(Metric("psnr", "mean"), Metric("ssim", "mean")))
    quick = replace(base.quick, num_videos=videos, trajectories=cfg.trajectories,
                    horizons=((ctx, cfg.frames - ctx),))
    task = replace(base, name=f"{base.name}_conv{cfg.frames}", num_frames=cfg.frames, num_videos=videos,
                   trajectories=cfg.trajectories, parts=(part,), quick=quick,
                   notes=f"derived from {base.name} for bench.convergence: {ctx} -> {cfg.frames - ctx} "
                         f"frames, {cfg.windows_per_video} windows per eval video; {base.notes}")
    return task.at_scale("quick")


def eval_clips(task: Task, source: DataSource, cfg: StudyConfig):
    """``windows_per_video`` evenly spaced windows of each of the first ``eval_videos`` eval videos."""
    from bench.data import ClipDataset
    base = eval_dataset(replace(task, num_videos=cfg.eval_videos), source)
    if len(base) < cfg.eval_videos:
        raise ValueError(f"{source.root} holds {len(base)} eval videos; eval_videos={cfg.eval_videos}")
    refs = []
    for ref, start in base.refs:
        span = max(1, base.module.count_frames(ref) - start - (task.num_frames - 1) * task.frame_stride)
        n = cfg.windows_per_video
        refs += [(ref, start + (round(i * (span - 1) / (n - 1)) if n > 1 else 0)) for i in range(n)]
    return ClipDataset(task, refs, source.root)


class SameDraws(Dataset):
    """A training dataset whose random draws (start, crop) depend only on how many items were
    fetched, so every model sees the same clips in the same order whatever else it draws."""

    def __init__(self, inner: Dataset, seed: int):
        self.inner, self.seed, self.fetched = inner, seed, 0

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("convergence-data", self.seed, self.fetched))
            self.fetched += 1
            return self.inner[index]


# ----------------------------------------------------------------------------- models

def build_models(task: Task, cfg: StudyConfig, options: dict, seed: int = 0) -> dict[str, object]:
    """The models, each initialised from ``seed``; checks parameter counts and latent codecs match."""
    models = {}
    for name in cfg.models:
        torch.manual_seed(seed)
        models[name] = get_model_factory(name)(task=task, scale="quick", **options)
    params = {name: count_parameters(m.trainable_module()) for name, m in models.items()}
    gap = (max(params.values()) - min(params.values())) / max(params.values())
    if gap > cfg.max_param_gap:
        raise ValueError(f"parameter counts {params} differ by {gap:.1%} > {cfg.max_param_gap:.0%}")
    codecs = {name: m.model_config.codec for name, m in models.items()}
    if len(set(codecs.values())) != 1:
        raise ValueError(f"the models use different latent codecs: {codecs}")
    return models


# ----------------------------------------------------------------------------- evaluation

class LossProbe:
    """Held-out losses on fixed eval clips with fixed noise and timesteps (see the module docstring)."""

    def __init__(self, clips: torch.Tensor, context: int, draws: int, seed: int, batch: int = 8):
        self.clips, self.context, self.draws, self.seed, self.batch = clips, context, draws, seed, batch
        self.latents: dict[str, tuple] = {}

    def _common_inputs(self, codec, device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per draw: latents, noise and per-clip sigma (the same for every model with this codec)."""
        x0 = codec.encode(self.clips).to(device)
        out = []
        for d in range(self.draws):
            g = torch.Generator().manual_seed(derive_seed("convergence-common-loss", self.seed, d))
            noise = torch.randn(x0.shape, generator=g)
            sigma = train_sigmas()[sample_train_indices((x0.shape[0],), g)]
            out.append((x0, noise.to(device), sigma.to(device)))
        return out

    @torch.no_grad()
    def common_loss(self, model, device) -> float:
        net, tc = model.trainable_module().eval(), self.context
        key = model.model_config.codec
        if key not in self.latents:
            self.latents[key] = self._common_inputs(model.codec, device)
        total, count = 0.0, 0
        for x0, noise, sigma in self.latents[key]:
            for i in range(0, x0.shape[0], self.batch):
                x, n, s = x0[i:i + self.batch], noise[i:i + self.batch], sigma[i:i + self.batch]
                b, f = x.shape[:2]
                s_f = s[:, None].expand(b, f).clone()
                s_f[:, :tc] = 0.0
                t = torch.where(torch.arange(f, device=x.device) < tc, torch.full_like(s_f, CLEAN_TIMESTEP),
                                s_f * NUM_TRAIN_TIMESTEPS)
                v = net(add_noise(x, n, s_f), t)
                err = (v.float() - velocity_target(x, n).float())[:, tc:].pow(2).flatten(1).mean(1)
                total, count = total + float(err.sum()), count + b
        return total / count

    @torch.no_grad()
    def own_loss(self, model) -> float:
        """The model's training objective on the eval clips under a fixed random stream."""
        total, count = 0.0, 0
        device = next(model.trainable_module().parameters()).device
        with torch.random.fork_rng(devices=[]):
            for d in range(self.draws):
                torch.manual_seed(derive_seed("convergence-own-loss", self.seed, d))
                for i in range(0, self.clips.shape[0], self.batch):
                    chunk = self.clips[i:i + self.batch].to(device)
                    loss, _ = model.training_loss(VideoBatch(video=chunk))
                    total, count = total + float(loss) * chunk.shape[0], count + chunk.shape[0]
        return total / count


def per_clip_psnr(task: Task, dataset, store: Path) -> list[float]:
    """PSNR of every eval clip (mean over predicted frames and trajectories), from the store."""
    from bench.metrics import per_frame_metric, video_values
    part = task.parts[0]
    pred, gt, _ = load_part(task, part, dataset, store, task.seeds[0])
    truth = gt[:, None, part.context_frames:].expand_as(pred)
    return video_values(per_frame_metric("psnr", pred, truth)).mean(-1).tolist()


def sample_scores(model, task: Task, dataset, store: Path, cfg: StudyConfig, device) -> dict:
    """PSNR/SSIM through the harness path: sample into a fresh store, score the store."""
    sample_to_store(model, task, dataset, store, batch_size=cfg.sample_batch_size, device=device)
    metrics = score_store(task, dataset, store, device=device, log=lambda _: None)
    return {"psnr": metrics["psnr"]["mean"], "ssim": metrics["ssim"]["mean"],
            "psnr_per_clip": per_clip_psnr(task, dataset, store)}


# ----------------------------------------------------------------------------- training

def train_with_evals(model, dataset: Dataset, cfg: TrainConfig, eval_steps: set[int],
                     on_eval: Callable[[int, dict, list[float], float], None], device=None) -> list[float]:
    """``bench.train.train``'s loop (one process, no checkpoint files) that calls
    ``on_eval(step, ema_state, losses, train_seconds)`` after each step in ``eval_steps`` (0 = before
    training) with the random state saved and restored around it, so evaluating does not change
    training. Returns the per-step training losses."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fork = dict(devices=[device]) if device.type == "cuda" else dict(devices=[])
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    core = model.trainable_module()
    params = [p for p in core.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    ema = EMA(core, cfg.ema_decay)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, drop_last=True,
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
    batches = _batches(loader, None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.bf16 and device.type == "cuda")
                else contextlib.nullcontext())
    losses: list[float] = []
    seconds = 0.0
    if 0 in eval_steps:
        with torch.random.fork_rng(**fork):
            on_eval(0, ema.shadow, losses, seconds)
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        loss = optimizer_step(model.training_loss, _to(next(batches), device), step, opt, params, ema, core, cfg,
                              autocast)
        losses.append(loss.item())
        seconds += time.perf_counter() - t0
        if step + 1 in eval_steps:
            with torch.random.fork_rng(**fork):
                on_eval(step + 1, ema.shadow, losses, seconds)
            model.train()
    ema.copy_to(core)
    return losses


# ----------------------------------------------------------------------------- the study

def run_study(cfg: StudyConfig, tcfg: TrainConfig, model_options: dict, command: str, log=print) -> dict:
    from bench.results import collect_provenance
    started = time.time()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task = study_task(cfg)
    source = prepare_data(get_task(cfg.task), "quick", cfg.data_root, log=log)
    dataset = eval_clips(task, source, cfg)
    train_set = train_dataset(task, source)
    tc = task.parts[0].context_frames
    probe = LossProbe(torch.stack([dataset[i]["video"] for i in range(len(dataset))]), tc, cfg.loss_draws,
                      tcfg.seed)
    models = build_models(task, cfg, model_options, seed=tcfg.seed)
    evaluators = build_models(task, cfg, model_options, seed=tcfg.seed)  # EMA weights are loaded into these
    params = {n: count_parameters(m.trainable_module()) for n, m in models.items()}
    states = [list(m.trainable_module().state_dict().values()) for m in models.values()]
    same_init = all(len(s) == len(states[0]) and all(x.shape == y.shape and torch.equal(x, y)
                                                     for x, y in zip(s, states[0])) for s in states)
    log(f"[convergence] {task.name} ({source.label} data at {source.root}): {tc} -> "
        f"{task.parts[0].predict_frames} frames at {task.resolution}px, {len(dataset)} eval clips; "
        f"params {params}; codec {models[cfg.models[0]].model_config.codec}; identical initial weights: "
        f"{same_init}; device {device}")
    rows: list[dict] = []
    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="convergence-") as tmp:
        t0 = time.perf_counter()
        dummy = get_model_factory("dummy")(task=task, scale="quick")
        ref = sample_scores(dummy, task, dataset, Path(tmp) / "dummy", cfg, device)
        ref["eval_s"] = time.perf_counter() - t0
        log(f"[convergence] dummy: psnr {ref['psnr']:.3f} ssim {ref['ssim']:.4f}")
        for name, model in models.items():
            evaluator = evaluators[name].to(device)
            seen = [0]  # training losses already summarised

            def on_eval(step: int, ema_state: dict, losses: list[float], seconds: float) -> None:
                e0 = time.perf_counter()
                evaluator.trainable_module().load_state_dict(ema_state)
                scores = sample_scores(evaluator, task, dataset, Path(tmp) / name / f"step{step:06d}", cfg, device)
                recent, seen[0] = losses[seen[0]:], len(losses)
                row = {"model": name, "params": params[name], "step": step,
                       "train_loss": sum(recent) / len(recent) if recent else math.nan,
                       "eval_loss": probe.own_loss(evaluator), "common_loss": probe.common_loss(evaluator, device),
                       "psnr": scores["psnr"], "ssim": scores["ssim"], "train_s": seconds,
                       "eval_s": time.perf_counter() - e0, "psnr_per_clip": scores["psnr_per_clip"]}
                rows.append(row)
                log(f"[convergence] {name} step {step:>5d}: train {row['train_loss']:.4f} "
                    f"eval {row['eval_loss']:.4f} common {row['common_loss']:.4f} psnr {row['psnr']:.3f} "
                    f"ssim {row['ssim']:.4f} ({seconds:.0f}s training, {row['eval_s']:.1f}s eval)")

            steps = set(range(0, tcfg.steps + 1, cfg.eval_every)) | {tcfg.steps}
            # a fresh fetch counter per model: both see the same clips in the same order
            curves[name] = train_with_evals(model, SameDraws(train_set, tcfg.seed), tcfg, steps, on_eval,
                                            device=device)
    return {"command": command, "config": asdict(cfg), "train_config": asdict(tcfg),
            "model_options": model_options, "task": task.spec("quick"), "task_hash": task.hash("quick"),
            # paths relative to $FARZOO_HOME or the repository: committed outputs name no machine path
            "data": {"label": source.label, "root": portable(Path(source.root).absolute()),
                     "eval_clips": [{"id": portable(Path(str(getattr(r, "path", r))).absolute()), "start": s}
                                    for r, s in dataset.refs]},
            "params": params, "same_initial_weights": same_init, "codec": models[cfg.models[0]].model_config.codec,
            "model_configs": {n: m.config() for n, m in models.items()}, "weights": "EMA",
            "note": cfg.note, "dummy": ref, "rows": rows, "train_loss_curves": curves,
            "torch_threads": torch.get_num_threads(), "started": started, "finished": time.time(),
            **collect_provenance(device)}


# ----------------------------------------------------------------------------- outputs

COLUMNS = ("model", "params", "step", "train_loss", "eval_loss", "common_loss", "psnr", "ssim", "train_s", "eval_s")


def _cell(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def render_csv(study: dict) -> str:
    import csv
    import io
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in study["rows"]:
        writer.writerow([r[c] if not isinstance(r[c], float) else f"{r[c]:.6g}" for c in COLUMNS])
    d = study["dummy"]
    writer.writerow(["dummy", 0, "", "", "", "", f"{d['psnr']:.6g}", f"{d['ssim']:.6g}", "", f"{d['eval_s']:.6g}"])
    return buf.getvalue()


def summarize(study: dict) -> list[str]:
    """Plain statements computed from the rows (no judgement beyond what the numbers say)."""
    rows, dummy = study["rows"], study["dummy"]
    names = list(study["params"])
    by = {n: [r for r in rows if r["model"] == n] for n in names}
    lines = []
    for n in names:
        rs = by[n]
        beat = next((r["step"] for r in rs if r["psnr"] > dummy["psnr"]), None)
        late = [r for r in rs if r["step"] >= rs[-1]["step"] / 2]
        lines.append(
            f"- **{n}**: final (step {rs[-1]['step']}) PSNR {rs[-1]['psnr']:.2f} dB, SSIM {rs[-1]['ssim']:.3f}, "
            f"common loss {rs[-1]['common_loss']:.4f}; best PSNR {max(r['psnr'] for r in rs):.2f} dB at step "
            f"{max(rs, key=lambda r: r['psnr'])['step']}; mean PSNR over the second half of training "
            f"{sum(r['psnr'] for r in late) / len(late):.2f} dB; first above the dummy "
            f"({dummy['psnr']:.2f} dB) at step {beat if beat is not None else 'never'}; "
            f"{rs[-1]['train_s']:.0f} s of training ({rs[-1]['train_s'] / max(rs[-1]['step'], 1):.2f} s/step).")
    if len(names) == 2:
        a, b = (by[n][-1]["psnr_per_clip"] for n in names)
        diff = [x - y for x, y in zip(a, b)]
        mean = sum(diff) / len(diff)
        se = (sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff)) ** 0.5 if len(diff) > 1 else math.nan
        lines.append(f"- final PSNR, {names[0]} minus {names[1]}, paired over the {len(diff)} eval clips: "
                     f"{mean:+.2f} ± {se:.2f} dB (mean ± standard error over clips; one training seed, so "
                     f"run-to-run noise is not included).")
        for key, label in (("common_loss", "common loss"), ("psnr", "PSNR")):
            pairs = [(x[key], y[key]) for x, y in zip(by[names[0]], by[names[1]]) if x["step"] > 0]
            better = sum((x < y) if key == "common_loss" else (x > y) for x, y in pairs)
            lines.append(f"- {label}: {names[0]} better than {names[1]} at {better} of {len(pairs)} evaluations "
                         f"after step 0.")
    return lines


def render_markdown(study: dict) -> str:
    cfg, t, task = study["config"], study["train_config"], study["task"]
    part = task["parts"][0]
    params = ", ".join(f"{n} {p:,}" for n, p in study["params"].items())
    lines = [
        f"# Convergence: {' vs '.join(study['params'])} at equal size ({task['name']}, {study['data']['label']})",
        "",
        "Command:",
        "",
        f"    {study['command']}",
        "",
        f"Device: {study['device']}, torch {study.get('packages', {}).get('torch', torch.__version__)}; "
        f"git {str(study.get('git_commit'))[:12]}{' (dirty)' if study.get('git_dirty') else ''}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(study['started']))}, "
        f"{(study['finished'] - study['started']) / 60:.1f} min in all.",
        "",
        *([f"Note: {study['note']}", ""] if study.get("note") else []),
        "Setup:",
        "",
        f"- task `{task['name']}` (hash {study['task_hash']}): `{cfg['task']}` at quick scale cut to "
        f"{task['num_frames']}-frame clips, {part['context_frames']} context -> {part['predict_frames']} "
        f"predicted frames at {task['resolution']}x{task['resolution']}; data: the {study['data']['label']} "
        f"at `{study['data']['root']}`; eval: {len(study['data']['eval_clips'])} held-out clips "
        f"({cfg['eval_videos']} eval videos x {cfg['windows_per_video']} windows), "
        f"{task['trajectories']} sample per clip, {part['num_steps']} sampling steps, per-sample seeds from "
        f"`derive_seed`;",
        f"- latent space: `{study['codec']}` for both; parameters: {params}; model options "
        f"{study['model_options'] or '(quick defaults)'}; initial weights "
        f"{'identical (same seed, same parameter layout)' if study['same_initial_weights'] else 'from the same seed'};",
        f"- training (shared TrainConfig): {t['steps']} steps, batch {t['batch_size']}, AdamW lr {t['lr']:g} "
        f"(warm-up {t['warmup_steps']}, cosine to 10%), grad clip {t['grad_clip']}, EMA {t['ema_decay']}, "
        f"seed {t['seed']}; the same training clips in the same order for both models;",
        f"- evaluated every {cfg['eval_every']} steps on the **{study['weights']}** weights.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in study["rows"]:
        lines.append("| " + " | ".join([r["model"], f"{r['params']:,}", str(r["step"]), _cell(r["train_loss"]),
                                         _cell(r["eval_loss"]), _cell(r["common_loss"]), _cell(r["psnr"], 2),
                                         _cell(r["ssim"], 4), _cell(r["train_s"], 0), _cell(r["eval_s"], 1)]) + " |")
    d = study["dummy"]
    lines.append(f"| dummy (repeat last frame) | 0 | | | | | {d['psnr']:.2f} | {d['ssim']:.4f} | | {d['eval_s']:.1f} |")
    lines += [
        "",
        "Columns: `train_loss` is the mean training loss over the steps since the previous row; `eval_loss` "
        "is each model's *own* training objective on the eval clips under a fixed random stream "
        f"({cfg['loss_draws']} draws per clip) - FAR's (a timestep per frame, ~10% of frames clean) and "
        "the DiT's (one timestep per clip, a clean prefix half the time) are different quantities, not "
        "comparable across models; `common_loss` is the same quantity for both: velocity MSE of the "
        "predicted frames given the clean context frames, one logit-normal noise level per clip, identical "
        "noise and levels for both models (the DiT's objective at this context length; a case FAR's "
        "per-frame timesteps include); `psnr`/`ssim` score the sampled future frames against the ground "
        "truth (`bench.evaluate` sample -> store -> score); `train_s` is cumulative training wall time "
        "(evaluation excluded), `eval_s` the time of that evaluation.",
        "",
        "Summary (computed from the rows):",
        "",
        *summarize(study),
        "",
        "![convergence](convergence.png)",
        "",
    ]
    return "\n".join(lines)


def render_plot(study: dict) -> bytes:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_train, ax_loss), (ax_psnr, ax_ssim) = axes
    colors = dict(zip(study["params"], ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    window = max(1, study["config"]["eval_every"] // 2)
    for name, curve in study["train_loss_curves"].items():
        c = colors[name]
        ax_train.plot(range(1, len(curve) + 1), curve, color=c, alpha=0.2, lw=0.7)
        smooth = [sum(curve[max(0, i - window + 1):i + 1]) / len(curve[max(0, i - window + 1):i + 1])
                  for i in range(len(curve))]
        ax_train.plot(range(1, len(curve) + 1), smooth, color=c, label=f"{name} (own objective, {window}-step mean)")
        rs = [r for r in study["rows"] if r["model"] == name]
        steps = [r["step"] for r in rs]
        ax_loss.plot(steps, [r["common_loss"] for r in rs], "o-", color=c, label=f"{name}: common loss")
        ax_loss.plot(steps, [r["eval_loss"] for r in rs], "x--", color=c, alpha=0.6, label=f"{name}: own objective")
        ax_psnr.plot(steps, [r["psnr"] for r in rs], "o-", color=c, label=f"{name} ({study['params'][name]:,} params)")
        ax_ssim.plot(steps, [r["ssim"] for r in rs], "o-", color=c, label=name)
    for ax, key in ((ax_psnr, "psnr"), (ax_ssim, "ssim")):
        ax.axhline(study["dummy"][key], color="gray", ls=":", label="dummy (repeat last frame)")
    ax_train.set(title="training loss (each model's own objective)", xlabel="training step", ylabel="loss",
                 yscale="log")
    ax_loss.set(title="held-out loss (EMA weights; fixed noise)", xlabel="training step",
                ylabel="velocity MSE", yscale="log")
    ax_psnr.set(title="future-frame PSNR (EMA weights, fixed seeds)", xlabel="training step", ylabel="dB")
    ax_ssim.set(title="future-frame SSIM", xlabel="training step", ylabel="SSIM")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    task, part = study["task"], study["task"]["parts"][0]
    fig.suptitle(f"{' vs '.join(study['params'])} on {task['name']} ({study['data']['label']}, "
                 f"{part['context_frames']} -> {part['predict_frames']} frames, codec {study['codec']}), "
                 f"{study['device']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(study: dict, out: Path) -> list[Path]:
    out = Path(out)
    paths = {name: out / f"convergence.{name}" for name in ("csv", "md", "png", "json")}
    write_atomic(paths["json"], json.dumps(study, indent=1, default=str))
    write_atomic(paths["csv"], render_csv(study))
    write_atomic(paths["png"], render_plot(study))
    write_atomic(paths["md"], render_markdown(study))
    return list(paths.values())


# ----------------------------------------------------------------------------- command line

def schema():
    """The study's structured config: StudyConfig at the top, the shared TrainConfig under ``train``
    (its steps are the study's ``steps``), the models' options under ``model``."""
    from bench.compose import Schema, Section
    return Schema([Section("", StudyConfig(), label="study options (key=value)"),
                   Section("train", default_train(StudyConfig()), hidden=("steps", "progress"),
                           label="training options (train.<field>=value), shared by the models"),
                   Section("model", free=True, label="model options (model.<field>=value), for every model")],
                  renamed={"train.steps": "the number of training steps is the study's steps=N"})


def check_models(cfg: StudyConfig, options: dict) -> None:
    """Every model name and every ``model.*`` option checked for every model, before any work."""
    from bench.registry import MODEL_CONFIGS, get_model_factory
    if not cfg.models:
        raise ConfigError("models=[]: expected at least one model, e.g. models=[far,video_dit]")
    task = study_task(cfg)
    for name in cfg.models:
        get_model_factory(name)
        MODEL_CONFIGS[name](task=task, scale="quick", **options)


def cli(argv: list[str]) -> int:
    """``python -m bench study convergence [options]`` (see the module doc)."""
    from bench.compose import run_verb
    return run_verb("python -m bench study convergence", __doc__.split("\n\n")[0], schema(), _main, argv)


def _main(composed: dict, argv: list[str]) -> int:
    cfg, model_opts = composed[""], composed["model"]
    tcfg = replace(composed["train"], steps=cfg.steps)
    try:
        check_models(cfg, model_opts)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(one_line(e)) from None
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    command = (f"{env} " if env else "") + "python -m bench study convergence" + (f" {shlex.join(argv)}" if argv else "")
    study = run_study(cfg, tcfg, model_opts, command)
    paths = write_outputs(study, Path(cfg.out))
    print("\n".join(summarize(study)))
    print(f"[convergence] wrote {', '.join(map(str, paths))}")
    return 0


def rerender(out: str | Path) -> list[Path]:
    """The table and the report rendered again from ``<out>/convergence.json`` (no training; the plot
    is left as it is)."""
    out = Path(out)
    study = json.loads((out / "convergence.json").read_text())
    write_atomic(out / "convergence.csv", render_csv(study))
    write_atomic(out / "convergence.md", render_markdown(study))
    return [out / "convergence.csv", out / "convergence.md"]


if __name__ == "__main__":  # the former entry point, now a thin wrapper of the one CLI
    from bench.__main__ import main
    raise SystemExit(main(["study", "convergence", *sys.argv[1:]]))
