"""Speed of the attention backends (pytest-benchmark).

pyproject's ``--benchmark-disable`` makes every benchmark run its function once, as a smoke test;
measure with ``pytest tests/test_attention_bench.py --benchmark-enable`` (on a GPU for real numbers;
there the shapes are FAR-B's). Tests never assert on time.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench.profile_attention import (ALL_BACKENDS, AttentionProfileConfig, decode_shape, far_long_shape, far_shape,
                                     profile_attention, time_attention)
from far.attention import frame_causal_attention

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
DTYPE = torch.bfloat16 if CUDA else torch.float32
SHAPES = ({"far": far_shape(16), "far_long": far_long_shape(16), "decode": decode_shape(16)} if CUDA else
          {"far": far_shape(3, 16, heads=2, head_dim=32),
           "far_long": far_long_shape(2, window=2, long_tokens=4, tokens_per_frame=16, heads=2, head_dim=32),
           "decode": decode_shape(3, 16, heads=2, head_dim=32)})


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("backend", ["sdpa", "flex", "triton"])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_bench_attention(benchmark, backend, shape, mode):
    if backend == "flex" and mode == "fwd_bwd" and not CUDA:
        pytest.skip("flex_attention has no CPU backward")
    s = SHAPES[shape]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(s.batch, s.heads, n, s.head_dim, generator=g).to(DEV, DTYPE).requires_grad_(mode != "fwd")
               for n in (s.n_q, s.n_k, s.n_k))

    def step():
        o = frame_causal_attention(q, k, v, s.q_layout, s.k_layout, backend=backend)
        if mode == "fwd_bwd":
            torch.autograd.grad(o, (q, k, v), torch.ones_like(o))
        if CUDA:
            torch.cuda.synchronize()

    step()  # warm-up: compilation, block masks and tile plans
    benchmark(step)


def test_time_attention_row():
    s = SHAPES["far"]
    row = time_attention("sdpa", s, DTYPE, DEV, fwd_bwd=True, warmup=1, iters=2)
    assert row["error"] is None and row["time_ms"] > 0
    assert row["tflops_dense"] > row["tflops"] > 0  # the mask hides pairs: fewer useful FLOPs
    visible = s.q_layout.visible_pairs(s.k_layout)
    assert row["flops"] == 4 * s.batch * s.heads * s.head_dim * visible * 3.5
    dense = time_attention("sdpa_dense", s, DTYPE, DEV, fwd_bwd=False, warmup=0, iters=1)
    assert dense["tflops"] == pytest.approx(dense["tflops_dense"])
    with pytest.raises(ValueError, match="unknown backend"):
        time_attention("xformers", s, DTYPE, DEV)


@pytest.mark.skipif(CUDA, reason="the CPU smoke sweep; on a GPU run the module itself")
def test_cpu_small_sweep_writes_csv_and_json(tmp_path):
    from bench.__main__ import main
    assert main(["profile", "attention", "--cfg", "job", "cpu_small=true"]) == 0  # the verb reads the same config
    rows = profile_attention(AttentionProfileConfig(cpu_small=True, out=str(tmp_path), modes=("fwd",), iters=1,
                                                    warmup=0))
    assert {r["backend"] for r in rows} == set(ALL_BACKENDS)
    assert all(r["error"] is None for r in rows)
    (json_file,) = tmp_path.glob("attention_*.json")
    record = json.loads(json_file.read_text())
    assert record["meta"]["device"].startswith("cpu") and len(record["rows"]) == len(rows)
    assert len(list(tmp_path.glob("attention_*.csv"))) == 1
