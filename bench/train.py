"""One training loop for every model: AdamW, warm-up, EMA, gradient clipping, bf16 autocast on GPU,
atomic checkpoints with resume, and data parallelism under ``torchrun`` (gloo on CPU, NCCL on GPU).

The model only has to provide ``training_loss(VideoBatch)``; the loop owns optimisation and state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench.api import VideoBatch
from bench.config import identity as config_identity
from bench.config import validate
from bench.errors import CheckpointError, ConfigError, one_line


@dataclass(frozen=True)
class TrainConfig:
    """The shared training recipe. Ranges are in the field metadata (checked by ``bench.config``);
    fields marked ``identity: False`` do not change the trained weights."""

    steps: int = field(default=1000, metadata={"ge": 1})
    batch_size: int = field(default=8, metadata={"ge": 1})  # global batch (split over processes)
    lr: float = field(default=1e-4, metadata={"gt": 0})
    weight_decay: float = field(default=0.0, metadata={"ge": 0})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"ge": 0, "lt": 1})
    warmup_steps: int = field(default=100, metadata={"ge": 0})
    # after the linear warm-up: "constant" (the official FAR configs' constant_with_warmup) or "cosine"
    # decay to 10% of the peak at ``steps``
    schedule: str = field(default="cosine", metadata={"choices": ("cosine", "constant")})
    ema_decay: float = field(default=0.999, metadata={"ge": 0, "le": 1})
    grad_clip: float = field(default=1.0, metadata={"ge": 0})  # 0: no clipping
    bf16: bool = True  # autocast on CUDA only
    ckpt_every: int = field(default=200, metadata={"ge": 1, "identity": False})
    log_every: int = field(default=25, metadata={"ge": 1, "identity": False})
    seed: int = field(default=0, metadata={"ge": 0})
    num_workers: int = field(default=0, metadata={"ge": 0})
    progress: bool = field(default=True, metadata={"identity": False})


TIMING_STEPS = 3  # steps timed (after the first) for the estimate of a run


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    checkpoint: Path
    wall_time_s: float
    resumed_from: int


# ----------------------------------------------------------------------------- distributed

def dist_info() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- pieces

def collate(items: list[dict]) -> VideoBatch:
    """Stack loader clips (dicts with ``video`` and optional ``actions``, ``label``, ``covariates``,
    ``mask``) into a VideoBatch."""
    def stacked(key: str):
        return torch.stack([it[key] for it in items]) if items[0].get(key) is not None else None

    labels = torch.tensor([it["label"] for it in items]) if items[0].get("label") is not None else None
    return VideoBatch(video=stacked("video"), labels=labels, actions=stacked("actions"),
                      covariates=stacked("covariates"), masks=stacked("mask"))


class EMA:
    """Exponential moving average of the trainable parameters (and a copy of the buffers)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm-up of the decay, as usual
        floats, shadows = [], []
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                floats.append(v.detach())
                shadows.append(self.shadow[k])
            else:
                self.shadow[k].copy_(v)
        if floats:  # one multi-tensor kernel instead of two ops per tensor (the same arithmetic)
            torch._foreach_mul_(shadows, d)
            torch._foreach_add_(shadows, floats, alpha=1 - d)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def make_optimizer(params: list, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW as the recipe says, with PyTorch's fused kernel (CPU and CUDA): the same update rule as the
    default per-tensor loop, which dominated a small model's CPU training step (see
    ``tests/test_benchmarks.py::test_optimizer_step``)."""
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then the peak (``schedule="constant"``) or a cosine decay to 10% of it."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: write a temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (or any tensor-only file); unreadable files raise
    :class:`CheckpointError` naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({one_line(e)[:200]})") from None
    return state


def seed_everything(seed: int) -> None:
    """Seed every random stream the harness draws from (torch CPU and CUDA, numpy, ``random``).
    Call it before building a model: its initial weights are drawn from these streams."""
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def canonical(identity: dict) -> str:
    """The stable text of a training identity (what is stored in checkpoints and compared)."""
    return json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))


def identity_diff(have: str | None, want: str) -> str:
    """Which entries of two canonical identities differ, e.g. ``train.lr: 0.0001 -> 0.0003``."""
    if have is None:
        return "the checkpoint stores no training configuration (made by an older version)"
    a, b = json.loads(have), json.loads(want)

    def flat(d, prefix=""):
        out = {}
        for k, v in (d.items() if isinstance(d, dict) else []):
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    fa, fb = flat(a), flat(b)
    diffs = [f"{k}: {fa.get(k, '(unset)')} -> {fb.get(k, '(unset)')}" for k in sorted(set(fa) | set(fb))
             if fa.get(k) != fb.get(k)]
    return "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else "") or "(no difference)"


def _move_aside(path: Path, reason: str, log) -> None:
    """Rename an unreadable checkpoint to ``<name>.corrupt-<UTC time>`` (kept for inspection)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, target)
    log(f"[train] {reason}; moved it aside to {target} and starting from the previous good state "
        "(the start of training)")


def _load_own(path: Path, rank: int, world: int, log) -> dict | None:
    """Load a checkpoint this loop wrote; an unreadable one (e.g. truncated by a full disk) is moved
    aside on rank 0 and None returned, so a rerun does not fail forever."""
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        if not isinstance(state, dict) or "step" not in state:
            raise CheckpointError(f"{path}: holds no training state (no 'step' entry)")
        error = None
    except CheckpointError as e:
        state, error = None, e
    barrier()
    if error is not None and rank == 0:
        _move_aside(path, str(error), log)
    barrier()
    return state


class _LossModule(nn.Module):
    """Lets DDP wrap any VideoModel: forward(batch) = training_loss(batch)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: VideoBatch):
        return self.model.training_loss(batch)


def _batches(loader: DataLoader, sampler: DistributedSampler | None) -> Iterator[VideoBatch]:
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _gather(state: torch.Tensor, world: int) -> list[torch.Tensor]:
    """Every process's RNG state, in rank order."""
    if world == 1:
        return [state]
    states: list = [None] * world
    dist.all_gather_object(states, state)
    return states


def _to(batch: VideoBatch, device: torch.device) -> VideoBatch:
    return VideoBatch(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.__dict__.items()})


# ----------------------------------------------------------------------------- the loop

def optimizer_step(loss_fn, batch: VideoBatch, step: int, opt: torch.optim.Optimizer, params: list, ema: EMA,
                   core: nn.Module, cfg: TrainConfig, autocast=None) -> torch.Tensor:
    """One step of the shared recipe: scheduled lr, (autocast) loss, backward, clipping, AdamW, EMA.
    Returns the detached loss."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    with autocast if autocast is not None else contextlib.nullcontext():
        loss, _ = loss_fn(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
    opt.step()
    ema.update(core, step)
    return loss.detach()


def train(model: nn.Module, dataset: Dataset, cfg: TrainConfig, out_dir: Path,
          device: torch.device | str | None = None, log: Callable[[str], None] = print,
          identity: dict | None = None, timing: Callable[[float, int], None] | None = None) -> TrainResult:
    """Train ``model`` (an ``nn.Module`` VideoModel) on ``dataset``; resume from ``out_dir/last.pt``.

    The final EMA weights are loaded into ``model`` and saved to ``out_dir/final.pt``. ``identity``
    describes everything the weights depend on (default: the identity fields of ``cfg``); it is
    stored in every checkpoint, and a ``final.pt`` or ``last.pt`` made with another identity is never
    reused or resumed (:class:`CheckpointError`). ``timing(seconds_per_step, steps_left)`` is called
    once, after a few steps timed past the first (for an estimate of the run). An unreadable checkpoint of this loop is moved aside
    as ``<name>.corrupt-<time>`` and training restarts. Seed before building ``model``
    (:func:`seed_everything`): its initial weights are not drawn here.
    """
    rank, world = dist_info()
    validate(cfg, "train")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.batch_size % world:
        raise ConfigError(f"train.batch_size={cfg.batch_size}: expected a multiple of the {world} processes "
                          f"(torchrun --nproc_per_node); use e.g. train.batch_size={world * max(1, cfg.batch_size // world)}")
    want = canonical(identity if identity is not None else {"train": config_identity(cfg)})
    torch.manual_seed(cfg.seed + rank)
    model.to(device).train()
    # Only the trainable part is optimised, averaged and checkpointed (not e.g. a frozen autoencoder).
    core: nn.Module = model.trainable_module() if hasattr(model, "trainable_module") else model
    params = [p for p in core.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    ema = EMA(core, cfg.ema_decay)
    out_dir = Path(out_dir)
    last, final = out_dir / "last.pt", out_dir / "final.pt"
    start, losses = 0, []
    for path in (final, last):
        state = _load_own(path, rank, world, log)
        if state is not None and state.get("identity") != want:
            raise CheckpointError(
                f"{path} was trained with another configuration ({identity_diff(state.get('identity'), want)}); "
                f"it is never reused for this one: move it away (mv {path} {path}.old) or use another --workdir")
        if state is not None and path == final:
            core.load_state_dict(state["ema"])
            log(f"[train] found finished run {final} ({state['step']} steps, same configuration); reusing it")
            return TrainResult(state["step"], list(state.get("losses", [])), final, 0.0, state["step"])
        if state is not None:
            core.load_state_dict(state["model"])
            ema.shadow = state["ema"]
            opt.load_state_dict(state["opt"])
            start, losses = state["step"], list(state["losses"])
            log(f"[train] resuming {last} at step {start}")
    resumed_from = start

    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=cfg.seed) if world > 1 else None
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size // world, shuffle=sampler is None,
                        sampler=sampler, collate_fn=collate, drop_last=True, num_workers=cfg.num_workers,
                        generator=g)
    batches = _batches(loader, sampler)
    # Skip what a resumed run already consumed so the data order is that of an uninterrupted run.
    for _ in range(start):
        next(batches)
    if start:
        # After the skip (fetching data may draw random crops): the random streams of the loss and
        # of the data continue exactly where the checkpoint left them, per process.
        if len(state["rng"]) == world:
            torch.set_rng_state(state["rng"][rank])
            if "cuda_rng" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"][rank], device)
        else:
            log(f"[train] {last} was written by {len(state['rng'])} processes, now {world}: "
                "random streams restart")
    wrapped: nn.Module = _LossModule(model)
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.bf16 and device.type == "cuda") else None

    pbar = None
    if cfg.progress and rank == 0:
        from bench.progress import bar
        pbar = bar(cfg.steps, "train", "steps", initial=start)
    t0 = time.perf_counter()
    timed_from = None  # (step, time) after the first step, for ``timing``
    timed = min(TIMING_STEPS, cfg.steps - start - 2)  # steps timed (none for a run of 2 steps or less)
    for step in range(start, cfg.steps):
        if timing is not None and timed >= 1 and step - start in (1, 1 + timed):
            if timed_from is None:
                timed_from = (step, time.perf_counter())
            else:
                timing((time.perf_counter() - timed_from[1]) / (step - timed_from[0]), cfg.steps - step)
        value = optimizer_step(wrapped, _to(next(batches), device), step, opt, params, ema, core, cfg, autocast)
        if world > 1:
            dist.all_reduce(value)
            value /= world
        losses.append(value.item())
        if pbar is not None:
            pbar.update(1)
            if step % cfg.log_every == 0:
                pbar.set_postfix(loss=f"{losses[-1]:.4f}")
        if ((step + 1) % cfg.ckpt_every == 0) and step + 1 < cfg.steps:
            rng = {"rng": _gather(torch.get_rng_state(), world)}
            if device.type == "cuda":
                rng["cuda_rng"] = _gather(torch.cuda.get_rng_state(device), world)
        if rank == 0 and ((step + 1) % cfg.ckpt_every == 0) and step + 1 < cfg.steps:
            save_checkpoint(last, {"model": core.state_dict(), "ema": ema.shadow, "opt": opt.state_dict(),
                                   "step": step + 1, "losses": losses, "config": asdict(cfg), "identity": want,
                                   **rng})
        barrier()
    if pbar is not None:
        pbar.close()
    ema.copy_to(core)
    if rank == 0:
        save_checkpoint(final, {"ema": ema.shadow, "step": cfg.steps, "losses": losses, "config": asdict(cfg),
                                "identity": want})
        last.unlink(missing_ok=True)
    barrier()
    return TrainResult(cfg.steps, losses, final, time.perf_counter() - t0, resumed_from)
