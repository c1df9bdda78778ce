"""Speed of the training step's pieces (pytest-benchmark).

pyproject's ``--benchmark-disable`` runs each benchmark once, as a smoke test; measure side by side
with ``python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-group-by=func``.
"""
from __future__ import annotations

import pytest
import torch

from bench.train import EMA, TrainConfig, make_optimizer


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    """The shapes of a small FAR (4 blocks of width 256: ~6M parameters in ~300 tensors)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(256, 256)] * 96 + [(256,)] * 200
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


@pytest.mark.parametrize("impl", ["fused", "foreach", "per_tensor"])
def test_optimizer_step(benchmark, impl):
    """AdamW's step: the harness uses the fused kernel (``make_optimizer``)."""
    params = _params()
    cfg = TrainConfig()
    opt = make_optimizer(params, cfg) if impl == "fused" else torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=impl == "foreach")
    benchmark(opt.step)


def test_fused_adamw_is_adamw():
    """The fused kernel computes the per-tensor AdamW update (to float rounding)."""
    a, b = _params(1), _params(1)
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    fused = make_optimizer(a, cfg)
    ref = torch.optim.AdamW(b, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=False)
    for _ in range(3):
        fused.step()
        ref.step()
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 1e-5


def test_ema_update(benchmark):
    module = torch.nn.ParameterList(_params())
    ema = EMA(module, 0.999)
    benchmark(ema.update, module, 1000)
