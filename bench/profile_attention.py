"""Micro-benchmark of the frame-causal attention backends (``far.attention``).

    python -m bench profile attention                                   # GPU sweep into results/profiles/attention
    python -m bench profile attention cpu_small=true out=/tmp/attn      # CPU smoke run

(``--help`` lists every option; ``AttentionProfileConfig``.)

Sweeps FAR-B-like shapes (12 heads, head dim 64, 256 tokens per frame, 16/32/64 frames), FAR-Long
shapes (a 16-frame window at 256 tokens after 16/48/112 long-term frames of 16 tokens), and the
cached-decode step (one frame's queries against 16/32/64 frames of keys), for every backend plus
``sdpa_dense``: SDPA without a mask (flash kernel where available) on the same sizes -- the speed
of light for attention over that many pairs, had the mask been dense.

Timing: CUDA is synchronised around every measured call, warm-up (incl. compilation, block-mask
and layout planning) is excluded, the median of ``iters`` calls is reported. Throughput is given
twice: ``tflops`` counts only the unmasked (query, key) pairs, ``tflops_dense`` counts every pair
of the rectangle, i.e. what a dense kernel would have had to do in the same time. FLOPs: forward
4 d per pair (QK^T and PV), backward 2.5x the forward (five matmuls for two).
"""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from far.attention import BACKENDS, FrameLayout, frame_causal_attention

DENSE = "sdpa_dense"
ALL_BACKENDS = (*BACKENDS, DENSE)
BWD_FACTOR = 2.5


@dataclass(frozen=True)
class AttnShape:
    name: str
    batch: int
    heads: int
    head_dim: int
    q_layout: FrameLayout
    k_layout: FrameLayout

    @property
    def n_q(self) -> int:
        return self.q_layout.num_tokens

    @property
    def n_k(self) -> int:
        return self.k_layout.num_tokens

    def flops(self, fwd_bwd: bool, dense: bool) -> float:
        pairs = self.n_q * self.n_k if dense else self.q_layout.visible_pairs(self.k_layout)
        fwd = 4.0 * self.batch * self.heads * self.head_dim * pairs
        return fwd * (1 + BWD_FACTOR) if fwd_bwd else fwd

    def describe(self) -> dict:
        return dict(shape=self.name, batch=self.batch, heads=self.heads, head_dim=self.head_dim,
                    n_q=self.n_q, n_k=self.n_k,
                    visible_fraction=self.q_layout.visible_pairs(self.k_layout) / (self.n_q * self.n_k))


def far_shape(frames: int, tokens_per_frame: int = 256, heads: int = 12, head_dim: int = 64,
              batch: int = 1) -> AttnShape:
    """Training / uncached forward of FAR: ``frames`` frames of ``tokens_per_frame`` tokens."""
    layout = FrameLayout.uniform(frames, tokens_per_frame)
    return AttnShape(f"far_f{frames}_t{tokens_per_frame}", batch, heads, head_dim, layout, layout)


def far_long_shape(num_long: int, window: int = 16, long_tokens: int = 16, tokens_per_frame: int = 256,
                   heads: int = 12, head_dim: int = 64, batch: int = 1) -> AttnShape:
    """FAR-Long training forward: compressed long-term frames, then the full-patch window."""
    layout = FrameLayout.long_short(num_long, long_tokens, window, tokens_per_frame)
    return AttnShape(f"far_long_l{num_long}x{long_tokens}_w{window}x{tokens_per_frame}", batch, heads,
                     head_dim, layout, layout)


def decode_shape(frames: int, tokens_per_frame: int = 256, heads: int = 12, head_dim: int = 64,
                 batch: int = 1) -> AttnShape:
    """Cached decoding: the newest frame's queries against all ``frames`` frames of keys."""
    return AttnShape(f"decode_f{frames}_t{tokens_per_frame}", batch, heads, head_dim,
                     FrameLayout((frames - 1,), (tokens_per_frame,)),
                     FrameLayout.uniform(frames, tokens_per_frame))


def _dense_sdpa(q, k, v):
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def time_attention(backend: str, shape: AttnShape, dtype: torch.dtype = torch.bfloat16,
                   device: str | torch.device = "cuda", fwd_bwd: bool = True, warmup: int = 3,
                   iters: int = 10) -> dict:
    """Median wall time of one attention call (forward, or forward + backward) and its throughput.

    Returns a flat dict (one CSV row). A backend that cannot run the case (e.g. flex backward on
    CPU, out of memory) gives a row with ``error`` set instead of raising.
    """
    if backend not in ALL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {ALL_BACKENDS}")
    device = torch.device(device)
    row = dict(backend=backend, dtype=str(dtype).removeprefix("torch."), mode="fwd_bwd" if fwd_bwd else "fwd",
               **shape.describe(), device=_device_name(device), warmup=warmup, iters=iters)
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda n: torch.randn(shape.batch, shape.heads, n, shape.head_dim, generator=g).to(  # noqa: E731
        device=device, dtype=dtype).requires_grad_(fwd_bwd)
    try:
        q, k, v = mk(shape.n_q), mk(shape.n_k), mk(shape.n_k)
        do = torch.randn(q.shape, generator=g).to(device=device, dtype=dtype)

        def attend():
            if backend == DENSE:
                return _dense_sdpa(q, k, v)
            return frame_causal_attention(q, k, v, shape.q_layout, shape.k_layout, backend=backend)

        def step():
            if fwd_bwd:
                torch.autograd.grad(attend(), (q, k, v), do)
            else:
                with torch.no_grad():
                    attend()

        from bench.profile import timed
        median, times, peak = timed(step, device, warmup, iters)
    except Exception as e:  # noqa: BLE001 -- recorded in the row, the sweep goes on
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    flops = shape.flops(fwd_bwd, dense=backend == DENSE)
    dense_flops = shape.flops(fwd_bwd, dense=True)
    row.update(time_ms=median * 1e3, time_ms_min=min(times) * 1e3, flops=flops,
               tflops=flops / median / 1e12, tflops_dense=dense_flops / median / 1e12,
               peak_mem_mb=peak / 2**20 if peak is not None else None, error=None)
    return row


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def default_shapes(cpu_small: bool) -> list[AttnShape]:
    if cpu_small:  # tiny: the triton backend runs in Triton's interpreter on the CPU
        small = dict(heads=2, head_dim=32)
        return [far_shape(4, 16, **small), far_shape(8, 16, **small),
                far_long_shape(4, window=4, long_tokens=4, tokens_per_frame=16, **small),
                decode_shape(8, 16, **small)]
    return ([far_shape(f) for f in (16, 32, 64)]
            + [far_long_shape(n) for n in (16, 48, 112)]
            + [decode_shape(f) for f in (16, 32, 64)])


def sweep(shapes: list[AttnShape], backends: tuple[str, ...], dtype: torch.dtype, device: str,
          modes: tuple[bool, ...], warmup: int, iters: int, verbose: bool = True) -> list[dict]:
    rows = []
    for shape in shapes:
        for fwd_bwd in modes:
            for backend in backends:
                row = time_attention(backend, shape, dtype, device, fwd_bwd, warmup, iters)
                rows.append(row)
                if verbose:
                    what = (f"{row['time_ms']:9.3f} ms  {row['tflops']:7.2f} TFLOP/s  "
                            f"(dense-equivalent {row['tflops_dense']:7.2f})" if row["error"] is None
                            else f"error: {row['error']}")
                    print(f"{shape.name:32s} {row['mode']:8s} {backend:11s} {what}", flush=True)
    return rows


def write(rows: list[dict], out: Path, meta: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = "attention_" + meta["device"].replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "")
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
    tmp_json, tmp_csv = (p.with_name(f".{p.name}.tmp{os.getpid()}") for p in (json_path, csv_path))
    tmp_json.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with tmp_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp_json, json_path)
    os.replace(tmp_csv, csv_path)
    return json_path, csv_path


@dataclass(frozen=True)
class AttentionProfileConfig:
    """``python -m bench profile attention key=value ...``."""

    out: str = field(default="results/profiles/attention", metadata={"path": True})
    cpu_small: bool = False  # tiny shapes on the CPU (smoke run)
    dtype: str | None = field(default=None, metadata={"choices": ("bf16", "fp16", "fp32")})  # None: bf16 on CUDA, fp32 on CPU
    backends: tuple[str, ...] = field(default=ALL_BACKENDS, metadata={"choices": ALL_BACKENDS})
    modes: tuple[str, ...] = field(default=("fwd", "fwd_bwd"), metadata={"choices": ("fwd", "fwd_bwd")})
    batch: int = field(default=1, metadata={"ge": 1})
    warmup: int | None = field(default=None, metadata={"ge": 0})  # None: 1 on the CPU, 5 on CUDA
    iters: int | None = field(default=None, metadata={"ge": 1})  # None: 2 on the CPU, 20 on CUDA


def schema():
    from bench.compose import Schema, Section
    return Schema([Section("", AttentionProfileConfig(), label="attention profile options (key=value)")])


def cli(argv: list[str]) -> int:
    """``python -m bench profile attention [key=value ...]``."""
    from bench.compose import run_verb
    return run_verb("python -m bench profile attention", __doc__.split("\n\n")[0], schema(),
                    lambda composed, _: (profile_attention(composed[""]), 0)[1], argv)


def profile_attention(cfg: AttentionProfileConfig) -> list[dict]:
    from bench.errors import ConfigError
    device = "cpu" if cfg.cpu_small or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not cfg.cpu_small:
        raise ConfigError("no CUDA device: run the CPU smoke sweep with cpu_small=true")
    dtype_name = cfg.dtype or ("fp32" if device == "cpu" else "bf16")
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=torch.float32)[dtype_name]
    modes = tuple(dict(fwd=False, fwd_bwd=True)[m] for m in cfg.modes)
    warmup = cfg.warmup if cfg.warmup is not None else (1 if cfg.cpu_small else 5)
    iters = cfg.iters if cfg.iters is not None else (2 if cfg.cpu_small else 20)
    shapes = [AttnShape(s.name, cfg.batch, s.heads, s.head_dim, s.q_layout, s.k_layout)
              for s in default_shapes(cfg.cpu_small)]

    import triton  # noqa: PLC0415 -- version for the record only
    meta = dict(device=_device_name(torch.device(device)), dtype=dtype_name, torch=torch.__version__,
                triton=triton.__version__, cuda=torch.version.cuda, batch=cfg.batch, warmup=warmup,
                iters=iters, time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                shapes=[dict(name=s.name, q=asdict(s.q_layout), k=asdict(s.k_layout)) for s in shapes],
                notes="tflops counts unmasked pairs only; tflops_dense counts the whole Nq x Nk rectangle")
    rows = sweep(shapes, cfg.backends, dtype, device, modes, warmup, iters)
    json_path, csv_path = write(rows, Path(cfg.out), meta)
    print(f"wrote {json_path} and {csv_path}")
    return rows


if __name__ == "__main__":  # the former entry point, now a thin wrapper of the one CLI
    import sys

    from bench.__main__ import main
    sys.exit(main(["profile", "attention", *sys.argv[1:]]))
