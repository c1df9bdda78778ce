"""The FAR transformer: latents and per-frame timesteps in, velocities out.

One class covers the short-context FAR and FAR-Long. FAR-Long (``context_patch_size`` set) treats
all but the last ``short_term_ctx_winsize`` frames of its input as long-term context: those frames
are cut into large patches, embedded by ``context_embedder`` and attended to through a second set of
projections, so a distant frame costs ``(h/4)(w/4)`` tokens instead of ``h w``.

The network is pure: it knows nothing of noise schedules or sampling (``far/flow.py``,
``far/sample.py``). Module names follow the official state dict wherever the structure allows;
``far/official.py`` maps the few that differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from far.attention import BACKENDS, frame_causal_attention
from far.cache import MultiLevelKVCache

CONDITIONS = ("none", "label", "action")
TIMESTEP_EMBED_CHANNELS = 256


@dataclass(frozen=True)
class FARConfig:
    """Architecture and runtime knobs; defaults are FAR-B's."""

    num_layers: int = 12
    num_heads: int = 12
    head_dim: int = 64
    in_channels: int = 32
    out_channels: int = 32
    patch_size: int = 1
    # FAR-Long: patch size of long-term context frames; None for the short-context model.
    context_patch_size: int | None = None
    short_term_ctx_winsize: int = 16
    axes_dims_rope: tuple[int, int, int] = (16, 24, 24)
    rope_theta: float = 10000.0
    slope_scale: float = 0.0
    condition: str = "none"  # "none" | "label" | "action"
    num_classes: int = 0  # class labels or discrete actions; the null id is ``num_classes``
    mlp_ratio: int = 4
    # Official quirk: FAR-Long embeds long-term frames at twice their timestep (clean -1 -> -2).
    long_timestep_scale: float = 2.0
    attention_backend: str = "sdpa"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if sum(self.axes_dims_rope) != self.head_dim:
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must sum to head_dim {self.head_dim}")
        if any(a % 2 for a in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must be even")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.condition != "none" and self.num_classes <= 0:
            raise ValueError(f"condition {self.condition!r} needs num_classes > 0")
        if self.context_patch_size is not None and self.context_patch_size % self.patch_size:
            raise ValueError("context_patch_size must be a multiple of patch_size")
        if self.attention_backend not in BACKENDS:
            raise ValueError(f"attention_backend must be one of {BACKENDS}, got {self.attention_backend!r}")
        object.__setattr__(self, "axes_dims_rope", tuple(self.axes_dims_rope))

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def is_long(self) -> bool:
        return self.context_patch_size is not None

    @property
    def null_id(self) -> int:
        """Id of the null class / null action (classifier-free guidance, condition dropout)."""
        if self.condition == "none":
            raise ValueError("an unconditional model has no null id")
        return self.num_classes


def _preset(num_layers: int, num_heads: int, long: bool = False) -> Callable[..., FARConfig]:
    def make(**overrides) -> FARConfig:
        base = FARConfig(num_layers=num_layers, num_heads=num_heads,
                         context_patch_size=4 if long else None)
        return replace(base, **overrides)
    return make


# Official presets (showlab/FAR ``far/models``): all patch 1, head dim 64, 32 latent channels.
PRESETS: dict[str, Callable[..., FARConfig]] = {
    "FAR-B": _preset(12, 12),
    "FAR-M": _preset(12, 16),
    "FAR-L": _preset(24, 16),
    "FAR-XL": _preset(28, 18),
    "FAR-B-Long": _preset(12, 12, long=True),
    "FAR-M-Long": _preset(12, 16, long=True),
}


# ----------------------------------------------------------------------------- building blocks

def timestep_embedding(t: Tensor, channels: int = TIMESTEP_EMBED_CHANNELS) -> Tensor:
    """Sinusoidal embedding of raw timestep values, cosine half first, frequency exponent / (half - 1)."""
    half = channels // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    args = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(ids: Tensor, axes_dims: tuple[int, ...], theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables (S, sum(axes_dims)) for integer ids (S, 3); frequencies in float64 as officially."""
    cos_parts, sin_parts = [], []
    pos = ids.to(torch.float64)
    for axis, dim in enumerate(axes_dims):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
        angles = torch.outer(pos[:, axis], freqs)
        cos_parts.append(angles.cos().repeat_interleave(2, dim=1))
        sin_parts.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos_parts, dim=-1).float(), torch.cat(sin_parts, dim=-1).float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent (interleaved) pairs of the last dimension of x (B, H, S, d)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    real, imag = pairs.unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(-2)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class HeadRMSNorm(nn.Module):
    """RMSNorm over the head dimension with a learnable scale (``norm_q``/``norm_k``)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class Modulation(nn.Module):
    """adaLN projection ``linear(SiLU(emb))`` split into ``chunks`` vectors (``norm1``/``norm2``/``norm_out``)."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, chunks * dim)

    def forward(self, silu_emb: Tensor, tok2frame: Tensor) -> tuple[Tensor, ...]:
        # The projection is computed once per frame and then spread over the frame's tokens.
        return self.linear(silu_emb).index_select(1, tok2frame).chunk(self.chunks, dim=-1)


def _layer_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


@dataclass
class _Tokens:
    """Geometry of one forward call: which frames are processed, and how they are tokenised."""

    n_ctx: int  # number of long-term (compressed) tokens at the front of the sequence
    cos: Tensor
    sin: Tensor
    frames: Tensor  # (S,) frame id of every token (on CPU)
    tok2frame: Tensor  # (S,) index of every token's frame in the per-frame embedding
    prefix_frames: Tensor | None  # (P,) frame ids of cached tokens
    slope_scale: float
    backend: str


class Attention(nn.Module):
    def __init__(self, cfg: FARConfig, context_proj: bool, context_out: bool):
        super().__init__()
        dim = cfg.dim
        self.heads = cfg.num_heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = HeadRMSNorm(cfg.head_dim), HeadRMSNorm(cfg.head_dim)
        self.to_out = nn.Linear(dim, dim)
        if context_proj:  # FAR-Long: separate projections for long-term tokens
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim) for _ in range(3))
            self.norm_added_q = HeadRMSNorm(cfg.head_dim)
            self.norm_added_k = HeadRMSNorm(cfg.head_dim)
            # The official last block has no output projection for long-term tokens.
            self.to_add_out = nn.Linear(dim, dim) if context_out else None

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _qkv(self, h: Tensor, n_ctx: int) -> tuple[Tensor, Tensor, Tensor]:
        def project(x, lin_q, lin_k, lin_v, nq, nk):
            return nq(self._heads(lin_q(x))), nk(self._heads(lin_k(x))), self._heads(lin_v(x))
        window = project(h[:, n_ctx:], self.to_q, self.to_k, self.to_v, self.norm_q, self.norm_k)
        if n_ctx == 0:
            return window
        ctx = project(h[:, :n_ctx], self.add_q_proj, self.add_k_proj, self.add_v_proj,
                      self.norm_added_q, self.norm_added_k)
        return tuple(torch.cat([c, w], dim=2) for c, w in zip(ctx, window))

    def forward(self, h: Tensor, tok: _Tokens, k_prefix: Tensor | None, v_prefix: Tensor | None
                ) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self._qkv(h, tok.n_ctx)
        q, k = apply_rope(q, tok.cos, tok.sin), apply_rope(k, tok.cos, tok.sin)
        if k_prefix is not None:
            k_all, v_all = torch.cat([k_prefix, k], dim=2), torch.cat([v_prefix, v], dim=2)
            k_frames = torch.cat([tok.prefix_frames, tok.frames])
        else:
            k_all, v_all, k_frames = k, v, tok.frames
        o = frame_causal_attention(q, k_all, v_all, tok.frames, k_frames,
                                   slope_scale=tok.slope_scale, backend=tok.backend)
        o = o.transpose(1, 2).flatten(2)
        out = self.to_out(o[:, tok.n_ctx:])
        if tok.n_ctx:
            ctx = o[:, :tok.n_ctx]
            ctx = self.to_add_out(ctx) if self.to_add_out is not None else ctx
            out = torch.cat([ctx, out], dim=1)
        return out, k, v


class FARBlock(nn.Module):
    """adaLN-zero block: modulated LayerNorm, QK-RMSNorm rotary attention, modulated GELU MLP."""

    def __init__(self, cfg: FARConfig, context_proj: bool = False, context_out: bool = False):
        super().__init__()
        self.norm1 = Modulation(cfg.dim, 3)
        self.attn = Attention(cfg, context_proj, context_out)
        self.norm2 = Modulation(cfg.dim, 3)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio)

    def forward(self, x: Tensor, silu_emb: Tensor, tok: _Tokens, k_prefix: Tensor | None = None,
                v_prefix: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        shift, scale, gate = self.norm1(silu_emb, tok.tok2frame)
        attn, k, v = self.attn(_layer_norm(x) * (1 + scale) + shift, tok, k_prefix, v_prefix)
        x = x + gate * attn
        shift, scale, gate = self.norm2(silu_emb, tok.tok2frame)
        x = x + gate * self.mlp(_layer_norm(x) * (1 + scale) + shift)
        return x, k, v


class TimestepMLP(nn.Module):
    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


# ----------------------------------------------------------------------------- patches

def patchify(x: Tensor, p: int) -> Tensor:
    """(B, F, C, H, W) -> (B, F*(H/p)*(W/p), C*p*p): frame-major, then row, column; (c, py, px) inside."""
    b, f, c, h, w = x.shape
    x = x.reshape(b, f, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, f * (h // p) * (w // p), c * p * p)


def unpatchify(tokens: Tensor, frames: int, channels: int, h: int, w: int, p: int) -> Tensor:
    """Exact inverse of :func:`patchify`."""
    b = tokens.shape[0]
    x = tokens.reshape(b, frames, h // p, w // p, channels, p, p).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, frames, channels, h, w)


def _grid_ids(frame0: int, frames: int, rows: int, cols: int, stride: int) -> Tensor:
    f = torch.arange(frame0, frame0 + frames).view(-1, 1, 1).expand(frames, rows, cols)
    r = (torch.arange(rows) * stride).view(1, -1, 1).expand(frames, rows, cols)
    c = (torch.arange(cols) * stride).view(1, 1, -1).expand(frames, rows, cols)
    return torch.stack([f, r, c], dim=-1).reshape(-1, 3)


# ----------------------------------------------------------------------------- the model

class FAR(nn.Module):
    """FAR / FAR-Long transformer. See :meth:`forward`."""

    def __init__(self, cfg: FARConfig):
        super().__init__()
        self.cfg = cfg
        dim, c, p = cfg.dim, cfg.in_channels, cfg.patch_size
        self.x_embedder = nn.Linear(c * p * p, dim)
        if cfg.is_long:
            self.context_embedder = nn.Linear(c * cfg.context_patch_size ** 2, dim)
        self.timestep_embedder = TimestepMLP(TIMESTEP_EMBED_CHANNELS, dim)
        if cfg.condition == "label":
            self.label_embedder = nn.Embedding(cfg.num_classes + 1, dim)
        elif cfg.condition == "action":
            self.action_embedder = nn.Embedding(cfg.num_classes + 1, dim)
        self.transformer_blocks = nn.ModuleList(
            FARBlock(cfg, context_proj=cfg.is_long, context_out=cfg.is_long and i < cfg.num_layers - 1)
            for i in range(cfg.num_layers))
        self.norm_out = Modulation(dim, 2)
        self.proj_out = nn.Linear(dim, p * p * cfg.out_channels)
        if cfg.is_long:
            self.context_proj_out = nn.Linear(dim, cfg.context_patch_size ** 2 * cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Training-from-scratch init: Xavier linears, N(0, 0.02) tables/timestep MLP, zero adaLN and outputs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for name in ("label_embedder", "action_embedder"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name).weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_2.weight, std=0.02)
        zero = [self.norm_out.linear, self.proj_out]
        zero += [getattr(self, "context_proj_out")] if self.cfg.is_long else []
        for block in self.transformer_blocks:
            zero += [block.norm1.linear, block.norm2.linear]
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def num_long_term_frames(self, num_frames: int) -> int:
        """How many leading frames of a ``num_frames`` input FAR-Long compresses (0 for FAR)."""
        w = self.cfg.short_term_ctx_winsize
        return num_frames - w if self.cfg.is_long and num_frames >= w else 0

    # -- forward ------------------------------------------------------------------------------
    def forward(self, latents: Tensor, timesteps: Tensor, *, labels: Tensor | None = None,
                actions: Tensor | None = None, cache: MultiLevelKVCache | None = None,
                cache_step: bool = False, last_frame_only: bool = False) -> Tensor:
        """Velocity prediction.

        latents (B, F, C, h, w); timesteps (B, F) float (``-1`` marks a clean frame, see
        ``far.flow.CLEAN_TIMESTEP``); labels (B,) or actions (B, F) int64 as the config requires.

        Without a cache: every frame is processed under the frame-causal mask and the prediction
        for every frame is returned (only the last with ``last_frame_only``). With a cache, the
        input is the whole sequence so far (clean frames then one noisy frame) and only the last
        frame's prediction (B, 1, C, h, w) is returned: on a ``cache_step`` the frames not yet
        cached are processed and all but the last are written to the cache; otherwise only the last
        frame is processed, against the cached keys and values.
        """
        cfg = self.cfg
        b, f, c, h, w = latents.shape
        if c != cfg.in_channels:
            raise ValueError(f"latents have {c} channels, the model expects {cfg.in_channels}")
        if timesteps.dim() == 1 and timesteps.shape[0] == b:  # one timestep per video, as officially
            timesteps = timesteps[:, None].expand(b, f)
        if timesteps.shape != (b, f):
            raise ValueError(f"timesteps must have shape (B, F) = {(b, f)}, got {tuple(timesteps.shape)}")
        self._check_conditions(b, f, labels, actions)
        n_long = self.num_long_term_frames(f)
        long_range, full_range, commit = self._plan(f, n_long, cache, cache_step)

        x, tok, temb_t = self._embed(latents, timesteps, long_range, full_range, cache)
        temb = self.timestep_embedder(timestep_embedding(temb_t.flatten())).unflatten(0, temb_t.shape)
        frame_index = torch.cat([torch.arange(*long_range), torch.arange(*full_range)]).to(latents.device)
        if cfg.condition == "label":
            temb = temb + self.label_embedder(labels)[:, None]
        elif cfg.condition == "action":
            temb = temb + self.action_embedder(actions.index_select(1, frame_index))
        silu_emb = F.silu(temb)

        n_commit_full = (full_range[1] - full_range[0] - 1) * (h // cfg.patch_size) * (w // cfg.patch_size)
        for i, block in enumerate(self.transformer_blocks):
            k_prefix, v_prefix = cache.prefix(i) if cache is not None else (None, None)
            if cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, k, v = checkpoint(block, x, silu_emb, tok, k_prefix, v_prefix, use_reentrant=False)
            else:
                x, k, v = block(x, silu_emb, tok, k_prefix, v_prefix)
            if commit:
                if tok.n_ctx:
                    cache.long.append(i, k[:, :, :tok.n_ctx], v[:, :, :tok.n_ctx])
                if n_commit_full:
                    sl = slice(tok.n_ctx, tok.n_ctx + n_commit_full)
                    cache.window.append(i, k[:, :, sl], v[:, :, sl])
        if commit:
            if tok.n_ctx:
                cache.long.commit_frames(tok.frames[:tok.n_ctx], long_range[1] - long_range[0])
            if n_commit_full:
                cache.window.commit_frames(tok.frames[tok.n_ctx:tok.n_ctx + n_commit_full],
                                           full_range[1] - full_range[0] - 1)
        return self._output(x, silu_emb, tok, long_range, full_range, (c, h, w),
                            last_frame_only or cache is not None)

    def _check_conditions(self, b: int, f: int, labels: Tensor | None, actions: Tensor | None) -> None:
        cond = self.cfg.condition
        if cond == "label" and (labels is None or labels.shape != (b,)):
            raise ValueError(f"a label-conditioned model needs labels of shape ({b},), got "
                             f"{None if labels is None else tuple(labels.shape)}")
        if cond == "action" and (actions is None or actions.shape != (b, f)):
            raise ValueError(f"an action-conditioned model needs actions of shape ({b}, {f}), got "
                             f"{None if actions is None else tuple(actions.shape)}")
        if cond != "label" and labels is not None:
            raise ValueError(f"model with condition {cond!r} was given labels")
        if cond != "action" and actions is not None:
            raise ValueError(f"model with condition {cond!r} was given actions")

    @staticmethod
    def _plan(f: int, n_long: int, cache: MultiLevelKVCache | None, cache_step: bool
              ) -> tuple[tuple[int, int], tuple[int, int], bool]:
        """Which frames to compress (long_range), which to process at full patches, whether to cache."""
        if cache is None:
            return (0, n_long), (n_long, f), False
        have_long = cache.long.num_frames
        if have_long > n_long:
            raise ValueError(f"cache holds {have_long} long-term frames but the input has only {n_long}")
        if cache_step:
            if n_long > 0:
                # Multi-level cache: extend level 2 with the frames that left the window, rebuild level 1.
                cache.window.reset(start_frame=n_long)
                return (have_long, n_long), (n_long, f), True
            if cache.window.start_frame != 0:
                raise ValueError("cache window does not start at frame 0 although no frame is long-term")
            return (0, 0), (cache.window.end_frame, f), True
        expected_start = n_long if n_long > 0 else 0
        if have_long != n_long or cache.window.end_frame != f - 1 or (
                cache.window.num_frames and cache.window.start_frame != expected_start):
            raise ValueError(
                f"non-cache step on {f} frames needs frames 0..{f - 2} cached (long-term 0..{n_long - 1}); "
                f"the cache holds long-term {have_long} frames and window frames "
                f"{cache.window.start_frame}..{cache.window.end_frame - 1}: run a cache step first")
        return (n_long, n_long), (f - 1, f), False

    def _embed(self, latents: Tensor, timesteps: Tensor, long_range: tuple[int, int],
               full_range: tuple[int, int], cache: MultiLevelKVCache | None
               ) -> tuple[Tensor, _Tokens, Tensor]:
        cfg = self.cfg
        _, _, _, h, w = latents.shape
        p = cfg.patch_size
        parts, ids, frames, t_parts = [], [], [], []
        n_ctx = 0
        (l0, l1), (f0, f1) = long_range, full_range
        if l1 > l0:
            cp = cfg.context_patch_size
            if h % cp or w % cp:
                raise ValueError(f"latent size {h}x{w} is not divisible by context_patch_size {cp}")
            parts.append(self.context_embedder(patchify(latents[:, l0:l1], cp)))
            grid = _grid_ids(l0, l1 - l0, h // cp, w // cp, cp // p)
            ids.append(grid)
            n_ctx = grid.shape[0]
            t_parts.append(timesteps[:, l0:l1] * cfg.long_timestep_scale)
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by patch_size {p}")
        parts.append(self.x_embedder(patchify(latents[:, f0:f1], p)))
        ids.append(_grid_ids(f0, f1 - f0, h // p, w // p, 1))
        t_parts.append(timesteps[:, f0:f1])
        ids_all = torch.cat(ids)
        frames = ids_all[:, 0].clone()
        tok2frame = frames - l0 if l1 > l0 else frames - f0
        if l1 > l0:  # frames are contiguous only when l1 == f0; index per-frame embeddings explicitly
            tok2frame = torch.where(frames < l1, frames - l0, frames - f0 + (l1 - l0))
        cos, sin = rope_tables(ids_all.to(latents.device), cfg.axes_dims_rope, cfg.rope_theta)
        tok = _Tokens(n_ctx=n_ctx, cos=cos, sin=sin, frames=frames,
                      tok2frame=tok2frame.to(latents.device),
                      prefix_frames=cache.prefix_frame_ids() if cache is not None else None,
                      slope_scale=cfg.slope_scale, backend=cfg.attention_backend)
        return torch.cat(parts, dim=1), tok, torch.cat(t_parts, dim=1)

    def _output(self, x: Tensor, silu_emb: Tensor, tok: _Tokens, long_range: tuple[int, int],
                full_range: tuple[int, int], chw: tuple[int, int, int], last_only: bool) -> Tensor:
        cfg = self.cfg
        c, h, w = chw
        p = cfg.patch_size
        tokens_per_frame = (h // p) * (w // p)
        if last_only:
            x, tok2frame = x[:, -tokens_per_frame:], tok.tok2frame[-tokens_per_frame:]
        else:
            tok2frame = tok.tok2frame
        scale, shift = self.norm_out(silu_emb, tok2frame)
        x = _layer_norm(x) * (1 + scale) + shift
        if last_only:
            return unpatchify(self.proj_out(x), 1, cfg.out_channels, h, w, p)
        out = unpatchify(self.proj_out(x[:, tok.n_ctx:]), full_range[1] - full_range[0],
                         cfg.out_channels, h, w, p)
        if tok.n_ctx:
            cp = cfg.context_patch_size
            ctx = unpatchify(self.context_proj_out(x[:, :tok.n_ctx]), long_range[1] - long_range[0],
                             cfg.out_channels, h, w, cp)
            out = torch.cat([ctx, out], dim=1)
        return out


def build_far(preset: str, **overrides) -> FAR:
    """Build a preset by name, e.g. ``build_far("FAR-B-Long", condition="action", num_classes=4)``."""
    if preset not in PRESETS:
        import difflib
        close = difflib.get_close_matches(preset, PRESETS, n=3)
        raise KeyError(f"unknown FAR preset {preset!r}; did you mean {close or sorted(PRESETS)}?")
    return FAR(PRESETS[preset](**overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
