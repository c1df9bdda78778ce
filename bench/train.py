"""One training loop for every model: AdamW, warm-up, EMA, gradient clipping, bf16 autocast on GPU,
atomic checkpoints with resume, and data parallelism under ``torchrun`` (gloo on CPU, NCCL on GPU).

The model only has to provide ``training_loss(VideoBatch)``; the loop owns optimisation and state.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench.api import VideoBatch


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8  # global batch (split over processes)
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    bf16: bool = True  # autocast on CUDA only
    ckpt_every: int = 200
    log_every: int = 25
    seed: int = 0
    num_workers: int = 0
    progress: bool = True


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
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
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
    return torch.load(path, map_location="cpu", weights_only=True)


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
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    ema.update(core, step)
    return loss.detach()


def train(model: nn.Module, dataset: Dataset, cfg: TrainConfig, out_dir: Path,
          device: torch.device | str | None = None, log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` (an ``nn.Module`` VideoModel) on ``dataset``; resume from ``out_dir/last.pt``.

    The final EMA weights are loaded into ``model`` and saved to ``out_dir/final.pt``.
    """
    rank, world = dist_info()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    torch.manual_seed(cfg.seed + rank)
    model.to(device).train()
    # Only the trainable part is optimised, averaged and checkpointed (not e.g. a frozen autoencoder).
    core: nn.Module = model.trainable_module() if hasattr(model, "trainable_module") else model
    params = [p for p in core.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(core, cfg.ema_decay)
    out_dir = Path(out_dir)
    last, final = out_dir / "last.pt", out_dir / "final.pt"
    start, losses = 0, []
    if final.exists():
        state = load_checkpoint(final)
        core.load_state_dict(state["ema"])
        log(f"[train] found finished run {final} ({state['step']} steps); reusing it")
        return TrainResult(state["step"], list(state.get("losses", [])), final, 0.0, state["step"])
    if last.exists():
        state = load_checkpoint(last)
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
        from tqdm import tqdm
        pbar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
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
                                   "step": step + 1, "losses": losses, "config": asdict(cfg), **rng})
        barrier()
    if pbar is not None:
        pbar.close()
    ema.copy_to(core)
    if rank == 0:
        save_checkpoint(final, {"ema": ema.shadow, "step": cfg.steps, "losses": losses, "config": asdict(cfg)})
        last.unlink(missing_ok=True)
    barrier()
    return TrainResult(cfg.steps, losses, final, time.perf_counter() - t0, resumed_from)
