"""Analytic cost of FAR: FLOPs of every network call, training and sampling, KV-cache bytes.

A multiply-add counts as 2 FLOPs; training is 3x the forward (forward + backward). Attention FLOPs
count only the (query, key) pairs the frame-causal mask allows. The call plan mirrors
``far.model.FAR._plan``, so these numbers describe exactly what the implementation computes.
"""

from __future__ import annotations

from dataclasses import dataclass

from far.flow import inference_schedule
from far.model import FARConfig

Segment = tuple[int, int]  # (frame id, tokens of that frame)


@dataclass(frozen=True)
class SampleCost:
    flops: float
    network_calls: int
    peak_cache_tokens: int


def _geometry(cfg: FARConfig, latent_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = latent_hw
    full = (h // cfg.patch_size) * (w // cfg.patch_size)
    ctx = (h // cfg.context_patch_size) * (w // cfg.context_patch_size) if cfg.is_long else full
    return full, ctx


def call_flops(cfg: FARConfig, queries: list[Segment], keys: list[Segment]) -> float:
    """FLOPs of one network call whose query frames are ``queries`` and visible key frames ``keys``."""
    d = cfg.dim
    n_q = sum(n for _, n in queries)
    pairs = sum(nq * sum(nk for fk, nk in keys if fk <= fq) for fq, nq in queries)
    per_layer = 2 * n_q * (4 * d * d + 2 * cfg.mlp_ratio * d * d) + 4 * pairs * d
    per_layer += 2 * len(queries) * 6 * d * d  # adaLN projections, once per frame
    token_io = 2 * n_q * d * cfg.in_channels * cfg.patch_size ** 2 * 2
    frame_emb = len(queries) * 2 * (256 * d + d * d + 2 * d * d)
    return cfg.num_layers * per_layer + token_io + frame_emb


def _n_long(cfg: FARConfig, frames: int) -> int:
    return frames - cfg.short_term_ctx_winsize if cfg.is_long and frames >= cfg.short_term_ctx_winsize else 0


def _sequence(cfg: FARConfig, frames: int, full: int, ctx: int) -> list[Segment]:
    n_long = _n_long(cfg, frames)
    return [(f, ctx) for f in range(n_long)] + [(f, full) for f in range(n_long, frames)]


def training_flops(cfg: FARConfig, frames: int, latent_hw: tuple[int, int]) -> float:
    full, ctx = _geometry(cfg, latent_hw)
    seq = _sequence(cfg, frames, full, ctx)
    return 3 * call_flops(cfg, seq, seq)


def sampling_cost(cfg: FARConfig, context_frames: int, new_frames: int, num_steps: int,
                  latent_hw: tuple[int, int], use_cache: bool = True, guidance: bool = False) -> SampleCost:
    """FLOPs and calls to sample ``new_frames`` after ``context_frames`` (CFG doubles the batch)."""
    full, ctx = _geometry(cfg, latent_hw)
    steps = len(inference_schedule(num_steps))
    flops, calls, peak = 0.0, 0, 0
    long_cached = window_cached = 0  # frames
    for j in range(new_frames):
        f = context_frames + j + 1  # sequence length including the noisy frame
        seq = _sequence(cfg, f, full, ctx)
        n_long = _n_long(cfg, f)
        for i in range(steps):
            calls += 1
            if not use_cache:
                flops += call_flops(cfg, seq, seq)
                continue
            if i == 0 and f > 1:  # cache step
                if n_long:
                    queries = seq[long_cached:n_long] + seq[n_long:]
                    long_cached, window_cached = n_long, f - 1 - n_long
                else:
                    queries = seq[window_cached:]
                    window_cached = f - 1
            else:
                queries = seq[-1:]
            flops += call_flops(cfg, queries, seq)
            peak = max(peak, long_cached * ctx + window_cached * full)
    return SampleCost(flops=flops * (2 if guidance else 1), network_calls=calls,
                      peak_cache_tokens=peak * (2 if guidance else 1))


def cache_bytes(cfg: FARConfig, tokens: int, bytes_per_element: int = 4) -> int:
    """Keys and values of every layer for ``tokens`` cached tokens (batch 1)."""
    return 2 * cfg.num_layers * tokens * cfg.dim * bytes_per_element
