"""Fused frame-causal attention in Triton: forward and backward, the mask never materialised.

Idea. With keys in non-decreasing frame order (every FAR layout is), the keys a query may see are a
prefix of the key sequence: ``kv_end[i]`` = number of keys whose frame id is <= query ``i``'s frame
(a binary search over the frame boundaries, done once per layout on the host and cached). With
queries also in frame order, ``kv_end`` is non-decreasing, so for a query tile of rows ``m0..m1``:

- key tiles that end before ``kv_end[m0]`` are visible to every row: no element mask;
- key tiles in ``[kv_end[m0], kv_end[m1])`` straddle a frame boundary: element mask
  ``key < kv_end[row]`` (one int compare per element, from a (BLOCK_M,) vector of ``kv_end``);
- key tiles from ``kv_end[m1]`` on are masked for every row and never visited.

When tokens per frame are a multiple of the tile sizes (FAR: 256 tokens per frame) no tile needs
the element mask at all. Cached decoding (queries of one frame against all cached keys) is the same
kernel with ``kv_end == N_k`` everywhere. Unsorted layouts are handled by permuting keys and queries
into frame order first (attention is invariant to the order of keys and equivariant in queries).

Forward: FlashAttention-2 style online softmax in the log2 domain, fp32 accumulation, saves the
per-row log-sum-exp (base 2). Backward (FlashAttention-2): ``delta = rowsum(dO * O)``, then one
kernel parallel over key tiles accumulating dK, dV over the query tiles that see the key tile
(``q_lo`` / ``q_full`` per key tile bound the boundary rows and the fully visible rows, again from
``kv_end``), and one kernel parallel over query tiles accumulating dQ over the visible key tiles.
No atomics, deterministic.

Inputs (B, H, N, D) in fp32, bf16 or fp16 with any N (odd lengths fine) and any D <= 256 (padded
to a power of two >= 16). The optional official linear bias ``slope_scale * (j - i)`` is supported.

CPU: without a CUDA device (or with ``TRITON_INTERPRET=1``) the kernels are built for Triton's
interpreter (numpy; slow: for tests). The interpreter mis-computes ``tl.dot`` on bf16 operands in
triton 3.8, so there operands are widened to fp32 after the same rounding (``DOT_FP32``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from far.attention.reference import FrameLayout

# Decided once, at import. Without CUDA the kernels can only run in Triton's interpreter. The mode
# must be set before ``triton.language`` is first imported (its library functions are built then;
# ``far.attention`` sets it on import for that reason) and Triton reads it again at launch, so it
# stays set for the process. An explicit TRITON_INTERPRET=0 keeps compiled mode without CUDA
# (ahead-of-time checks, see :func:`compile_for_target`).
_FLAG = os.environ.get("TRITON_INTERPRET")
INTERPRET = _FLAG == "1" or (_FLAG != "0" and not torch.cuda.is_available())
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

if INTERPRET and not isinstance(tl.standard.zeros, InterpretedFunction):
    raise ImportError(
        "Triton was imported in compiled mode before TRITON_INTERPRET=1 was set, and this machine "
        "has no CUDA device: import far.attention before anything that imports triton (torch's "
        "flex_attention, torch.compile), or set TRITON_INTERPRET=1 in the environment")

LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------- device helpers

@triton.jit
def _dot(a, b, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    if DOT_FP32:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _load_rows(ptr, idx, stride, n, offs_d, D, CHECK_ROWS: tl.constexpr, EVEN_D: tl.constexpr):
    """Load rows ``idx`` (and the head dim) of a (N, D) slice with unit stride along D."""
    ptrs = ptr + idx[:, None] * stride + offs_d[None, :]
    if CHECK_ROWS:
        if EVEN_D:
            x = tl.load(ptrs, mask=idx[:, None] < n, other=0.0)
        else:
            x = tl.load(ptrs, mask=(idx[:, None] < n) & (offs_d[None, :] < D), other=0.0)
    else:
        if EVEN_D:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < D, other=0.0)
    return x


# ----------------------------------------------------------------------------- forward

@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
               start, stop, N_K, D, qk_scale, slope, offs_n, offs_d,
               BLOCK_N: tl.constexpr, MASKED: tl.constexpr, HAS_SLOPE: tl.constexpr,
               EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    for start_n in range(start, stop, BLOCK_N):
        cols = start_n + offs_n
        k = _load_rows(k_ptr, cols, stride_kn, N_K, offs_d, D, MASKED, EVEN_D)
        v = _load_rows(v_ptr, cols, stride_vn, N_K, offs_d, D, MASKED, EVEN_D)
        s = _dot(q, tl.trans(k), DOT_FP32, PRECISION) * qk_scale
        if HAS_SLOPE:
            kf = tl.load(KF + cols, mask=cols < N_K, other=0.0)
            s += (kf[None, :] - qf[:, None]) * slope
        if MASKED:
            s = tl.where(cols[None, :] < kv_end[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASKED:  # a row may have seen nothing yet: keep exp2 away from (-inf) - (-inf)
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_use = m_new
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, DOT_FP32, PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, KV_END, QF, KF,
                stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om,
                H, N_Q, N_K, D, qk_scale, slope,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                HAS_SLOPE: tl.constexpr, EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr,
                PRECISION: tl.constexpr):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # the longest rows (last frames) first
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    first = pid_m * BLOCK_M
    rows = first + offs_m
    row_ok = rows < N_Q

    q = _load_rows(Q + b * stride_qb + h * stride_qh, rows, stride_qm, N_Q, offs_d, D, True, EVEN_D)
    kv_end = tl.load(KV_END + rows, mask=row_ok, other=0)
    if HAS_SLOPE:
        qf = tl.load(QF + rows, mask=row_ok, other=0.0)
    else:
        qf = tl.zeros([BLOCK_M], dtype=tl.float32)
    lo = tl.load(KV_END + first)  # kv_end is non-decreasing: first row sees least, last row most
    hi = tl.load(KV_END + tl.minimum(first + BLOCK_M, N_Q) - 1)
    full_end = (lo // BLOCK_N) * BLOCK_N

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_ptr = K + b * stride_kb + h * stride_kh
    v_ptr = V + b * stride_vb + h * stride_vh
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
                               0, full_end, N_K, D, qk_scale, slope, offs_n, offs_d,
                               BLOCK_N, False, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
                               full_end, hi, N_K, D, qk_scale, slope, offs_n, offs_d,
                               BLOCK_N, True, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)

    seen = l_i > 0.0
    l_safe = tl.where(seen, l_i, 1.0)
    o = acc / l_safe[:, None]
    # A row that sees no key (never in FAR) outputs 0; lse = +inf makes its backward probabilities 0.
    lse = tl.where(seen, m_i + tl.log2(l_safe), float("inf"))
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_om + offs_d[None, :]
    tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < D))
    tl.store(LSE + pid_bh.to(tl.int64) * N_Q + rows, lse, mask=row_ok)


# ----------------------------------------------------------------------------- backward

@triton.jit
def _bwd_dq_tiles(dq, q, do, lse, delta, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
                  start, stop, N_K, D, qk_scale, slope, offs_n, offs_d,
                  BLOCK_N: tl.constexpr, MASKED: tl.constexpr, HAS_SLOPE: tl.constexpr,
                  EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    for start_n in range(start, stop, BLOCK_N):
        cols = start_n + offs_n
        k = _load_rows(k_ptr, cols, stride_kn, N_K, offs_d, D, MASKED, EVEN_D)
        v = _load_rows(v_ptr, cols, stride_vn, N_K, offs_d, D, MASKED, EVEN_D)
        s = _dot(q, tl.trans(k), DOT_FP32, PRECISION) * qk_scale
        if HAS_SLOPE:
            kf = tl.load(KF + cols, mask=cols < N_K, other=0.0)
            s += (kf[None, :] - qf[:, None]) * slope
        if MASKED:
            s = tl.where(cols[None, :] < kv_end[:, None], s, float("-inf"))
        p = tl.exp2(s - lse[:, None])
        dp = _dot(do, tl.trans(v), DOT_FP32, PRECISION)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, DOT_FP32, PRECISION)
    return dq


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, KV_END, QF, KF,
                   stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                   stride_dqb, stride_dqh, stride_dqm,
                   H, N_Q, N_K, D, qk_scale, sm_scale, slope,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   HAS_SLOPE: tl.constexpr, EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr,
                   PRECISION: tl.constexpr):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    first = pid_m * BLOCK_M
    rows = first + offs_m
    row_ok = rows < N_Q

    q = _load_rows(Q + b * stride_qb + h * stride_qh, rows, stride_qm, N_Q, offs_d, D, True, EVEN_D)
    do = _load_rows(DO + b * stride_dob + h * stride_doh, rows, stride_dom, N_Q, offs_d, D, True, EVEN_D)
    lse = tl.load(LSE + pid_bh.to(tl.int64) * N_Q + rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * N_Q + rows, mask=row_ok, other=0.0)
    kv_end = tl.load(KV_END + rows, mask=row_ok, other=0)
    if HAS_SLOPE:
        qf = tl.load(QF + rows, mask=row_ok, other=0.0)
    else:
        qf = tl.zeros([BLOCK_M], dtype=tl.float32)
    lo = tl.load(KV_END + first)
    hi = tl.load(KV_END + tl.minimum(first + BLOCK_M, N_Q) - 1)
    full_end = (lo // BLOCK_N) * BLOCK_N

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_ptr = K + b * stride_kb + h * stride_kh
    v_ptr = V + b * stride_vb + h * stride_vh
    dq = _bwd_dq_tiles(dq, q, do, lse, delta, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
                       0, full_end, N_K, D, qk_scale, slope, offs_n, offs_d,
                       BLOCK_N, False, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)
    dq = _bwd_dq_tiles(dq, q, do, lse, delta, qf, kv_end, k_ptr, v_ptr, stride_kn, stride_vn, KF,
                       full_end, hi, N_K, D, qk_scale, slope, offs_n, offs_d,
                       BLOCK_N, True, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)
    dq *= sm_scale
    dq_ptrs = DQ + b * stride_dqb + h * stride_dqh + rows[:, None] * stride_dqm + offs_d[None, :]
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < D))


@triton.jit
def _bwd_dkdv_tiles(dk, dv, k, v, kf, cols, q_ptr, do_ptr, stride_qm, stride_dom, LSE_ROW, DELTA_ROW,
                    KV_END, QF, start, stop, N_Q, D, qk_scale, slope, offs_m, offs_d,
                    BLOCK_M: tl.constexpr, MASKED: tl.constexpr, HAS_SLOPE: tl.constexpr,
                    EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    for start_m in range(start, stop, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < N_Q
        q = _load_rows(q_ptr, rows, stride_qm, N_Q, offs_d, D, True, EVEN_D)
        do = _load_rows(do_ptr, rows, stride_dom, N_Q, offs_d, D, True, EVEN_D)
        lse = tl.load(LSE_ROW + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA_ROW + rows, mask=row_ok, other=0.0)
        st = _dot(k, tl.trans(q), DOT_FP32, PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M): keys x queries
        if HAS_SLOPE:
            qf = tl.load(QF + rows, mask=row_ok, other=0.0)
            st += (kf[:, None] - qf[None, :]) * slope
        if MASKED:
            kv_end = tl.load(KV_END + rows, mask=row_ok, other=0)
            st = tl.where(cols[:, None] < kv_end[None, :], st, float("-inf"))
        pt = tl.exp2(st - lse[None, :])
        dv += _dot(pt.to(do.dtype), do, DOT_FP32, PRECISION)
        dpt = _dot(v, tl.trans(do), DOT_FP32, PRECISION)
        dst = pt * (dpt - delta[None, :])
        dk += _dot(dst.to(q.dtype), q, DOT_FP32, PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, KV_END, QF, KF, Q_LO, Q_FULL,
                     stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                     stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                     stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
                     H, N_Q, N_K, D, qk_scale, sm_scale, slope,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                     HAS_SLOPE: tl.constexpr, EVEN_D: tl.constexpr, DOT_FP32: tl.constexpr,
                     PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)  # early keys are seen by the most queries: they go first
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    cols = pid_n * BLOCK_N + offs_n
    col_ok = cols < N_K

    k = _load_rows(K + b * stride_kb + h * stride_kh, cols, stride_kn, N_K, offs_d, D, True, EVEN_D)
    v = _load_rows(V + b * stride_vb + h * stride_vh, cols, stride_vn, N_K, offs_d, D, True, EVEN_D)
    if HAS_SLOPE:
        kf = tl.load(KF + cols, mask=col_ok, other=0.0)
    else:
        kf = tl.zeros([BLOCK_N], dtype=tl.float32)
    q_lo = tl.load(Q_LO + pid_n)  # first query row that sees any key of this tile
    q_full = tl.load(Q_FULL + pid_n)  # first query row that sees every key of this tile
    unmasked_start = q_lo + tl.cdiv(q_full - q_lo, BLOCK_M) * BLOCK_M

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    q_ptr = Q + b * stride_qb + h * stride_qh
    do_ptr = DO + b * stride_dob + h * stride_doh
    lse_row = LSE + pid_bh.to(tl.int64) * N_Q
    delta_row = DELTA + pid_bh.to(tl.int64) * N_Q
    dk, dv = _bwd_dkdv_tiles(dk, dv, k, v, kf, cols, q_ptr, do_ptr, stride_qm, stride_dom, lse_row,
                             delta_row, KV_END, QF, q_lo, q_full, N_Q, D, qk_scale, slope, offs_m,
                             offs_d, BLOCK_M, True, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)
    dk, dv = _bwd_dkdv_tiles(dk, dv, k, v, kf, cols, q_ptr, do_ptr, stride_qm, stride_dom, lse_row,
                             delta_row, KV_END, QF, unmasked_start, N_Q, N_Q, D, qk_scale, slope,
                             offs_m, offs_d, BLOCK_M, False, HAS_SLOPE, EVEN_D, DOT_FP32, PRECISION)
    dk *= sm_scale
    mask = col_ok[:, None] & (offs_d[None, :] < D)
    dk_ptrs = DK + b * stride_dkb + h * stride_dkh + cols[:, None] * stride_dkn + offs_d[None, :]
    dv_ptrs = DV + b * stride_dvb + h * stride_dvh + cols[:, None] * stride_dvn + offs_d[None, :]
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=mask)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- host side

@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch parameters (forward; backward dK/dV; backward dQ)."""

    fwd_m: int = 128
    fwd_n: int = 64
    dkdv_m: int = 32
    dkdv_n: int = 128
    dq_m: int = 128
    dq_n: int = 32
    num_warps: int = 4
    num_stages: int = 3


INTERPRETER_TILES = TileConfig(16, 16, 16, 16, 16, 16, 1, 1)


def default_tiles(dtype: torch.dtype, head_dim: int) -> TileConfig:
    if INTERPRET:
        return INTERPRETER_TILES
    if dtype == torch.float32 or head_dim > 128:  # twice the shared memory per element
        return TileConfig(64, 32, 32, 64, 64, 32, num_warps=4, num_stages=2)
    if head_dim > 64:
        return TileConfig(128, 64, 32, 128, 128, 32, num_warps=8, num_stages=2)
    return TileConfig()


@dataclass(frozen=True, eq=False)  # identity hash: a cache key for _key_tile_bounds
class _Plan:
    """Per-layout data shared by every layer and head (cached)."""

    kv_end: Tensor  # (N_q,) int32: keys visible to each query (sorted order)
    q_perm: Tensor | None  # sorts queries into frame order (None: already sorted)
    q_inv: Tensor | None
    k_perm: Tensor | None  # sorts keys into frame order
    q_frames: Tensor  # (N_q,) float32 frame ids, sorted order (for the linear bias)
    k_frames: Tensor  # (N_k,) float32


@lru_cache(maxsize=128)
def _plan(q_layout: FrameLayout, k_layout: FrameLayout, device: str) -> _Plan:
    qf, kf = q_layout.frame_ids(), k_layout.frame_ids()
    q_perm = None if q_layout.is_sorted else torch.sort(qf, stable=True).indices
    k_perm = None if k_layout.is_sorted else torch.sort(kf, stable=True).indices
    if q_perm is not None:
        qf = qf[q_perm]
    if k_perm is not None:
        kf = kf[k_perm]
    kv_end = torch.searchsorted(kf, qf, right=True).to(torch.int32)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return _Plan(kv_end=kv_end.to(device), q_perm=to(q_perm),
                 q_inv=None if q_perm is None else to(torch.argsort(q_perm)), k_perm=to(k_perm),
                 q_frames=qf.float().to(device), k_frames=kf.float().to(device))


@lru_cache(maxsize=128)
def _key_tile_bounds(plan: _Plan, block_n: int) -> tuple[Tensor, Tensor]:
    """Per key tile: first query row that sees any of its keys, first that sees all of them."""
    kv_end = plan.kv_end.long()
    n_k = plan.k_frames.numel()
    starts = torch.arange(0, n_k, block_n, device=kv_end.device)
    ends = torch.clamp(starts + block_n, max=n_k)
    q_lo = torch.searchsorted(kv_end, starts, right=True)
    q_full = torch.searchsorted(kv_end, ends, right=False)
    return q_lo.to(torch.int32), q_full.to(torch.int32)


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _precision(dtype: torch.dtype) -> str | None:
    if INTERPRET:
        return "ieee"
    if dtype == torch.float32:  # follow torch's own fp32 matmul setting (default "highest": no TF32)
        return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return None


class _FrameCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan: _Plan, sm_scale: float, slope: float, tiles: TileConfig):
        b, h, n_q, d = q.shape
        n_k = k.shape[2]
        o = torch.empty((b, h, n_q, d), dtype=q.dtype, device=q.device)
        lse = torch.empty((b, h, n_q), dtype=torch.float32, device=q.device)
        bd = _block_d(d)
        grid = (triton.cdiv(n_q, tiles.fwd_m), b * h)
        _fwd_kernel[grid](
            q, k, v, o, lse, plan.kv_end, plan.q_frames, plan.k_frames,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
            h, n_q, n_k, d, sm_scale * LOG2E, slope * LOG2E,
            BLOCK_M=tiles.fwd_m, BLOCK_N=tiles.fwd_n, BLOCK_D=bd, HAS_SLOPE=slope != 0.0,
            EVEN_D=bd == d, DOT_FP32=INTERPRET, PRECISION=_precision(q.dtype),
            num_warps=tiles.num_warps, num_stages=tiles.num_stages)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.plan, ctx.sm_scale, ctx.slope, ctx.tiles = plan, sm_scale, slope, tiles
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        plan, sm_scale, slope, tiles = ctx.plan, ctx.sm_scale, ctx.slope, ctx.tiles
        b, h, n_q, d = q.shape
        n_k = k.shape[2]
        if do.stride(-1) != 1:
            do = do.contiguous()
        delta = (o.float() * do.float()).sum(-1).contiguous()  # (B, H, N_q)
        dq = torch.empty((b, h, n_q, d), dtype=q.dtype, device=q.device)
        dk = torch.empty((b, h, n_k, d), dtype=k.dtype, device=k.device)
        dv = torch.empty((b, h, n_k, d), dtype=v.dtype, device=v.device)
        bd = _block_d(d)
        common = dict(HAS_SLOPE=slope != 0.0, EVEN_D=bd == d, DOT_FP32=INTERPRET,
                      PRECISION=_precision(q.dtype), num_warps=tiles.num_warps,
                      num_stages=tiles.num_stages)
        q_lo, q_full = _key_tile_bounds(plan, tiles.dkdv_n)
        _bwd_dkdv_kernel[(triton.cdiv(n_k, tiles.dkdv_n), b * h)](
            q, k, v, do, dk, dv, lse, delta, plan.kv_end, plan.q_frames, plan.k_frames, q_lo, q_full,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
            dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
            h, n_q, n_k, d, sm_scale * LOG2E, sm_scale, slope * LOG2E,
            BLOCK_M=tiles.dkdv_m, BLOCK_N=tiles.dkdv_n, BLOCK_D=bd, **common)
        _bwd_dq_kernel[(triton.cdiv(n_q, tiles.dq_m), b * h)](
            q, k, v, do, dq, lse, delta, plan.kv_end, plan.q_frames, plan.k_frames,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
            dq.stride(0), dq.stride(1), dq.stride(2),
            h, n_q, n_k, d, sm_scale * LOG2E, sm_scale, slope * LOG2E,
            BLOCK_M=tiles.dq_m, BLOCK_N=tiles.dq_n, BLOCK_D=bd, **common)
        return dq, dk, dv, None, None, None, None


def triton_frame_causal_attention(q: Tensor, k: Tensor, v: Tensor, q_layout: FrameLayout,
                                  k_layout: FrameLayout, slope_scale: float = 0.0,
                                  sm_scale: float | None = None, tiles: TileConfig | None = None
                                  ) -> Tensor:
    """Attention of ``q`` (B, H, Lq, d) over ``k``/``v`` (B, H, Lk, d) under the frame-causal mask."""
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q (B, H, Lq, d) and k, v (B, H, Lk, d); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16) or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"triton attention takes fp32/bf16/fp16 q, k, v of one dtype; got {q.dtype}, "
                        f"{k.dtype}, {v.dtype}")
    if q.shape[-1] > 256:
        raise ValueError(f"head dim {q.shape[-1]} > 256 is not supported")
    if not INTERPRET and q.device.type != "cuda":
        raise ValueError("the triton backend was built for CUDA; its inputs must be CUDA tensors "
                         "(set TRITON_INTERPRET=1 before importing it to run on the CPU)")
    if q_layout.num_tokens != q.shape[2] or k_layout.num_tokens != k.shape[2]:
        raise ValueError(f"layouts of {q_layout.num_tokens} queries / {k_layout.num_tokens} keys do not "
                         f"match the sequences ({q.shape[2]} / {k.shape[2]})")
    if q.shape[2] == 0:
        return q.new_empty(q.shape)
    if k.shape[2] == 0:
        raise ValueError("no keys to attend to")
    plan = _plan(q_layout, k_layout, str(q.device))
    if plan.k_perm is not None:
        k, v = k.index_select(2, plan.k_perm), v.index_select(2, plan.k_perm)
    if plan.q_perm is not None:
        q = q.index_select(2, plan.q_perm)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    sm_scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    tiles = tiles or default_tiles(q.dtype, q.shape[-1])
    o = _FrameCausalAttention.apply(q, k, v, plan, sm_scale, float(slope_scale), tiles)
    return o if plan.q_inv is None else o.index_select(2, plan.q_inv)


def compile_for_target(dtype: torch.dtype = torch.bfloat16, head_dim: int = 64, slope: bool = False,
                       arch: int = 90, tiles: TileConfig | None = None) -> dict[str, int]:
    """Compile the three kernels ahead of time for a CUDA target (no GPU needed, only ptxas).

    Checks that what the interpreter tests also lowers for the GPU. Needs compiled mode
    (``TRITON_INTERPRET=0`` on a machine without CUDA). Returns shared memory bytes per kernel.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource
    if INTERPRET:
        raise RuntimeError("compile_for_target needs compiled mode: set TRITON_INTERPRET=0")
    elem = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    tiles = tiles or default_tiles(dtype, head_dim)
    bd = _block_d(head_dim)
    flags = dict(HAS_SLOPE=slope, EVEN_D=bd == head_dim, DOT_FP32=False, BLOCK_D=bd,
                 PRECISION="ieee" if dtype == torch.float32 else None)
    fp32_ptrs = {"LSE", "DELTA", "QF", "KF"}
    int_ptrs = {"KV_END", "Q_LO", "Q_FULL"}
    jobs = {_fwd_kernel: (tiles.fwd_m, tiles.fwd_n), _bwd_dq_kernel: (tiles.dq_m, tiles.dq_n),
            _bwd_dkdv_kernel: (tiles.dkdv_m, tiles.dkdv_n)}
    shared = {}
    for kernel, (bm, bn) in jobs.items():
        constexprs = dict(flags, BLOCK_M=bm, BLOCK_N=bn)
        signature = {}
        for name in kernel.arg_names:
            if name in constexprs:
                signature[name] = "constexpr"
            elif name in fp32_ptrs:
                signature[name] = "*fp32"
            elif name in int_ptrs:
                signature[name] = "*i32"
            elif name.isupper() and name not in ("H", "N_Q", "N_K", "D"):
                signature[name] = f"*{elem}"
            elif name in ("qk_scale", "sm_scale", "slope"):
                signature[name] = "fp32"
            else:
                signature[name] = "i32"
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", arch, 32),
                                  options=dict(num_warps=tiles.num_warps, num_stages=tiles.num_stages))
        shared[kernel.__name__] = compiled.metadata.shared
    return shared
