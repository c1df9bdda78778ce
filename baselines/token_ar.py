"""A token-level autoregressive video transformer over per-frame VQ codes (``baselines.vq``).

Each frame is a (rows, cols) grid of code ids; a video is the frame-major, then row-major, sequence
of those ids, modelled left to right by a causal (GPT-style, pre-LN) transformer with FAR's QK
RMSNorm and 3-axis (frame, row, column) RoPE. Conditioning, for label or action models:

- ``"prefix"``: the condition comes first, as one label token or one token per action (the window's
  actions, each at its frame's rotary position);
- ``"frame"``: one condition token before every frame (the label, or that frame's action), so the
  first token of frame t is predicted right after seeing frame t's action.

An unconditional model starts from a learned BOS token. Classifier-free guidance mixes logits of the
conditional and null-condition sequences (batch ``[null; cond]``); sampling draws from the guided
logits at a temperature (0 = greedy), optionally restricted to the ``top_k`` most likely tokens, by
inverse-CDF sampling of one uniform per token (uniforms drawn up front per sample, so a sample does
not depend on its batch). Decoding uses :class:`StaticKVCache`, preallocated once for the longest
sequence; videos longer than ``max_frames`` slide by ``stride`` frames, re-filling the cache from the
kept frames (``baselines.video_dit.sliding_windows``).

Layout: config, KV cache, blocks, the network, loss, sampling, analytic cost, presets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from baselines.video_dit import resolve_stride, sliding_windows
from far.flow import condition_dropout
from far.model import MLP, HeadRMSNorm, apply_rope, rope_tables

CONDITIONS = ("none", "label", "action")
CONDITION_MODES = ("prefix", "frame")
NO_POSITION = -1  # rotary id of the axes a non-video token does not have (BOS, condition tokens)


@dataclass(frozen=True)
class TokenARConfig:
    """Architecture; defaults are the FAR-B-sized model (12 layers, 12 heads of 64)."""

    num_layers: int = 12
    num_heads: int = 12
    head_dim: int = 64
    vocab_size: int = 1000  # the tokenizer's codebook size
    grid: tuple[int, int] = (8, 8)  # tokens per frame (rows, cols)
    max_frames: int = 16  # frames in the context window; sets the static cache size
    condition: str = "none"  # "none" | "label" | "action"
    num_classes: int = 0  # the null id is ``num_classes``
    condition_mode: str = "frame"  # "prefix" | "frame"
    axes_dims_rope: tuple[int, int, int] = (16, 24, 24)
    rope_theta: float = 10000.0
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes_dims_rope", tuple(self.axes_dims_rope))
        object.__setattr__(self, "grid", tuple(self.grid))
        if sum(self.axes_dims_rope) != self.head_dim or any(a % 2 for a in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must be even and sum to head_dim {self.head_dim}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.condition != "none" and self.num_classes <= 0:
            raise ValueError(f"condition {self.condition!r} needs num_classes > 0")
        if self.condition_mode not in CONDITION_MODES:
            raise ValueError(f"condition_mode must be one of {CONDITION_MODES}, got {self.condition_mode!r}")

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def null_id(self) -> int:
        if self.condition == "none":
            raise ValueError("an unconditional model has no null id")
        return self.num_classes

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def separators(self) -> bool:
        """Whether every frame is preceded by a condition token."""
        return self.condition != "none" and self.condition_mode == "frame"

    @property
    def frame_length(self) -> int:
        return self.tokens_per_frame + int(self.separators)

    def prefix_length(self, frames: int) -> int:
        if self.condition == "none":
            return 1  # BOS
        if self.condition_mode == "frame":
            return 0
        return 1 if self.condition == "label" else frames

    def sequence_length(self, frames: int) -> int:
        return self.prefix_length(frames) + frames * self.frame_length

    @property
    def max_sequence_length(self) -> int:
        return self.sequence_length(self.max_frames)


# ----------------------------------------------------------------------------- KV cache

@dataclass
class StaticKVCache:
    """Keys and values of every layer, preallocated for ``capacity`` positions; ``length`` are valid.

    Keys are stored after QK RMSNorm and RoPE. Writes go to ``[length, length + n)`` of the fixed
    buffers; attention reads the valid prefix only, so nothing is reallocated while decoding.
    """

    keys: Tensor  # (layers, B, H, capacity, d)
    values: Tensor
    length: int = 0

    @classmethod
    def allocate(cls, cfg: TokenARConfig, batch: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> "StaticKVCache":
        shape = (cfg.num_layers, batch, cfg.num_heads, cfg.max_sequence_length, cfg.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k``/``v`` (B, H, n, d) after the valid prefix; return keys/values up to them."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} positions, capacity {self.capacity}")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0

    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()


# ----------------------------------------------------------------------------- blocks

class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TokenARConfig):
        super().__init__()
        dim = cfg.dim
        self.heads = cfg.num_heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = HeadRMSNorm(cfg.head_dim), HeadRMSNorm(cfg.head_dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: StaticKVCache | None, layer: int) -> Tensor:
        def heads(t: Tensor) -> Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        q, k, v = self.norm_q(heads(self.to_q(x))), self.norm_k(heads(self.to_k(x))), heads(self.to_v(x))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            past, n = cache.length, q.shape[2]
            k, v = cache.write(layer, k, v)
            mask = None
            if n > 1:  # causal among the new positions; every cached position is visible
                mask = torch.arange(past + n, device=x.device)[None, :] <= (
                    past + torch.arange(n, device=x.device))[:, None]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(o.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: TokenARConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: StaticKVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, cache, layer)
        return x + self.mlp(self.norm2(x))


# ----------------------------------------------------------------------------- the network

class TokenAR(nn.Module):
    """Embeddings of the token sequence pieces, the causal transformer, and the logit head."""

    def __init__(self, cfg: TokenARConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.token_embedder = nn.Embedding(cfg.vocab_size, d)
        if cfg.condition == "none":
            self.bos = nn.Parameter(torch.zeros(d))
        else:
            self.condition_embedder = nn.Embedding(cfg.num_classes + 1, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """GPT-2 style: N(0, 0.02) weights, zero biases, residual output projections scaled by depth."""
        for name, p in self.named_parameters():
            if p.dim() >= 2 or name == "bos":
                residual = name.endswith(("to_out.weight", "fc2.weight"))
                nn.init.normal_(p, std=0.02 / (2 * self.cfg.num_layers) ** 0.5 if residual else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    # -- the sequence -------------------------------------------------------------------------
    def _check(self, batch: int, frames: int, cond: Tensor | None) -> None:
        c = self.cfg.condition
        if c == "none":
            if cond is not None:
                raise ValueError("an unconditional model takes no condition")
        elif c == "label" and (cond is None or cond.shape != (batch,)):
            raise ValueError(f"a label model needs labels ({batch},), got "
                             f"{None if cond is None else tuple(cond.shape)}")
        elif c == "action" and (cond is None or cond.shape != (batch, frames)):
            raise ValueError(f"an action model needs actions ({batch}, {frames}), got "
                             f"{None if cond is None else tuple(cond.shape)}")

    @staticmethod
    def _ids(frame: Tensor, row: Tensor | int, col: Tensor | int) -> Tensor:
        """Rotary (frame, row, column) ids (S, 3), broadcasting the three parts."""
        parts = torch.broadcast_tensors(torch.as_tensor(frame), torch.as_tensor(row), torch.as_tensor(col))
        return torch.stack(parts, -1).reshape(-1, 3)

    def embed_prefix(self, cond: Tensor | None, frames: int, batch: int) -> tuple[Tensor, Tensor]:
        """The tokens before the first frame, (B, P, D), and their rotary ids (P, 3)."""
        cfg = self.cfg
        if cfg.condition == "none":
            return self.bos.expand(batch, 1, -1), self._ids(torch.tensor([NO_POSITION]), NO_POSITION, NO_POSITION)
        if cfg.condition_mode == "frame":
            return self.token_embedder.weight.new_zeros(batch, 0, cfg.dim), torch.zeros(0, 3, dtype=torch.long)
        if cfg.condition == "label":
            return self.condition_embedder(cond)[:, None], self._ids(torch.tensor([NO_POSITION]), NO_POSITION,
                                                                     NO_POSITION)
        return self.condition_embedder(cond[:, :frames]), self._ids(torch.arange(frames), NO_POSITION, NO_POSITION)

    def embed_separator(self, cond: Tensor, frame: int) -> tuple[Tensor, Tensor]:
        """Frame ``frame``'s condition token (frame mode only): (B, 1, D), ids (1, 3)."""
        ids = cond if self.cfg.condition == "label" else cond[:, frame]
        return self.condition_embedder(ids)[:, None], self._ids(torch.tensor([frame]), NO_POSITION, NO_POSITION)

    def embed_frames(self, tokens: Tensor, cond: Tensor | None, frame0: int = 0) -> tuple[Tensor, Tensor]:
        """Whole frames ``frame0 ..`` of ``tokens`` (B, F, N), each after its separator if any."""
        cfg = self.cfg
        b, f, n = tokens.shape
        rows, cols = cfg.grid
        frames = torch.arange(frame0, frame0 + f)
        x = self.token_embedder(tokens)  # (B, F, N, D)
        ids = self._ids(frames[:, None, None], torch.arange(rows)[None, :, None],
                        torch.arange(cols)[None, None, :]).view(f, n, 3)
        if cfg.separators:
            sep_ids = cond[:, None].expand(b, f) if cfg.condition == "label" else cond[:, frame0:frame0 + f]
            x = torch.cat([self.condition_embedder(sep_ids)[:, :, None], x], dim=2)
            ids = torch.cat([self._ids(frames[:, None], NO_POSITION, NO_POSITION).view(f, 1, 3), ids], dim=1)
        return x.flatten(1, 2), ids.reshape(-1, 3)

    def embed_token(self, token: Tensor, frame: int, index: int) -> tuple[Tensor, Tensor]:
        """One video token (B,) at position ``index`` of frame ``frame``: (B, 1, D), ids (1, 3)."""
        row, col = divmod(index, self.cfg.grid[1])
        return self.token_embedder(token)[:, None], self._ids(torch.tensor([frame]), row, col)

    # -- the transformer ----------------------------------------------------------------------
    def forward(self, x: Tensor, ids: Tensor, cache: StaticKVCache | None = None) -> Tensor:
        """Hidden states (B, S, D) of the embedded sequence ``x`` (B, S, D) with rotary ids (S, 3);
        with a cache, ``x`` continues the cached sequence and is appended to it."""
        cos, sin = rope_tables(ids.to(x.device), self.cfg.axes_dims_rope, self.cfg.rope_theta)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return x

    def logits(self, hidden: Tensor) -> Tensor:
        return self.head(self.norm_out(hidden))

    def token_logits(self, tokens: Tensor, cond: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, F, N, V): ``[:, t, n]`` predicts ``tokens[:, t, n]``."""
        cfg = self.cfg
        b, f, n = tokens.shape
        if n != cfg.tokens_per_frame:
            raise ValueError(f"frames have {n} tokens, the model expects {cfg.tokens_per_frame}")
        self._check(b, f, cond)
        xp, idp = self.embed_prefix(cond, f, b)
        xf, idf = self.embed_frames(tokens, cond)
        hidden = self(torch.cat([xp, xf], 1), torch.cat([idp, idf]))
        p, s, k = cfg.prefix_length(f), int(cfg.separators), cfg.frame_length
        positions = (p + s - 1 + torch.arange(f)[:, None] * k + torch.arange(n)[None, :]).flatten()
        return self.logits(hidden[:, positions.to(hidden.device)]).unflatten(1, (f, n))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- training

def token_ar_loss(net: TokenAR, tokens: Tensor, *, labels: Tensor | None = None, actions: Tensor | None = None,
                  condition_dropout_p: float = 0.1, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """Next-token cross-entropy on ``tokens`` (B, F, N); conditions dropped to the null id with
    probability ``condition_dropout_p`` each (label per clip, action per frame) for guidance."""
    cfg = net.cfg
    cond = labels if cfg.condition == "label" else actions if cfg.condition == "action" else None
    if cond is not None:
        cond = condition_dropout(cond, cfg.null_id, condition_dropout_p, generator)
    logits = net.token_logits(tokens, cond)
    loss = F.cross_entropy(logits.flatten(0, 2).float(), tokens.flatten())
    accuracy = (logits.detach().argmax(-1) == tokens).float().mean()
    return loss, {"accuracy": accuracy}


# ----------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class ARSamplerConfig:
    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int | None = None  # sample among the k most likely tokens; None = all
    guidance_scale: float = 1.0  # 1.0 = no guidance
    stride: int | None = None  # frames added per window once a video outgrows max_frames (None: half)
    drop_conditions: bool = False  # sample with every condition replaced by the null id


def is_guided(cfg: TokenARConfig, sampler: ARSamplerConfig) -> bool:
    return sampler.guidance_scale != 1.0 and cfg.condition != "none" and not sampler.drop_conditions


def select_tokens(logits: Tensor, uniforms: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """Draw one token per row of ``logits`` (B, V) by the inverse CDF at ``uniforms`` (B,) in [0, 1)."""
    if temperature == 0:
        return logits.argmax(-1)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        top = logits.topk(top_k, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter_(-1, top.indices, top.values)
    cdf = torch.softmax(logits, -1).cumsum(-1)
    target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_max(logits.shape[-1] - 1)


def guided_condition(cfg: TokenARConfig, labels: Tensor | None, actions: Tensor | None, guided: bool,
                     drop: bool) -> Tensor | None:
    """The condition ids as the network sees them: null when dropped, ``[null; cond]`` when guided."""
    if cfg.condition == "none":
        if labels is not None or actions is not None:
            raise ValueError("an unconditional model takes neither labels nor actions")
        return None
    cond = labels if cfg.condition == "label" else actions
    if cond is None:
        raise ValueError(f"this model is {cfg.condition}-conditioned: pass "
                         + ("labels (B,)" if cfg.condition == "label" else "actions (B, context + new frames)"))
    if drop:
        cond = torch.full_like(cond, cfg.null_id)
    if guided:
        cond = torch.cat([torch.full_like(cond, cfg.null_id), cond])
    return cond


@torch.no_grad()
def generate(net: TokenAR, context: Tensor, uniforms: Tensor, sampler: ARSamplerConfig = ARSamplerConfig(), *,
             labels: Tensor | None = None, actions: Tensor | None = None) -> Tensor:
    """Generate ``uniforms.shape[1]`` frames of tokens after ``context`` (B, Tc, N) (Tc may be 0).

    ``uniforms`` (B, Tn, N) in [0, 1) decide every sampled token; ``actions`` (B, Tc + Tn). Returns the
    whole token sequence (B, Tc + Tn, N).
    """
    cfg = net.cfg
    b, tc, tn = uniforms.shape[0], context.shape[1], uniforms.shape[1]
    n = cfg.tokens_per_frame
    if actions is not None and actions.shape != (b, tc + tn):
        raise ValueError(f"actions must cover context and new frames: shape {(b, tc + tn)}, got {tuple(actions.shape)}")
    guided = is_guided(cfg, sampler)
    cond = guided_condition(cfg, labels, actions, guided, sampler.drop_conditions)
    param = next(net.parameters())
    rows = 2 * b if guided else b
    cache = StaticKVCache.allocate(cfg, rows, param.device, param.dtype)
    seq = context.to(param.device)

    def step(x: Tensor, ids: Tensor) -> Tensor:
        """Run the pieces through the network and return the (guided) logits of the last position."""
        logits = net.logits(net(x, ids, cache)[:, -1])
        if guided:
            l_u, l_c = logits.float().chunk(2)
            logits = l_u + sampler.guidance_scale * (l_c - l_u)
        return logits

    for win in sliding_windows(tc, tn, cfg.max_frames, resolve_stride(cfg.max_frames, sampler.stride)):
        cache.reset()
        frames = win.end - win.start
        wcond = cond[:, win.start:win.end] if cfg.condition == "action" else cond
        kept = seq[:, win.start:win.split]
        kept = torch.cat([kept, kept]) if guided else kept
        pieces = [net.embed_prefix(wcond, frames, rows), net.embed_frames(kept, wcond)]
        first = win.split - win.start  # window-local index of the first generated frame
        if cfg.separators:
            pieces.append(net.embed_separator(wcond, first))
        logits = step(torch.cat([p[0] for p in pieces], 1), torch.cat([p[1] for p in pieces]))
        for f in range(first, frames):
            frame_tokens = []
            for i in range(n):
                u = uniforms[:, win.start + f - tc, i]
                tok = select_tokens(logits, u, sampler.temperature, sampler.top_k)
                frame_tokens.append(tok)
                if f == frames - 1 and i == n - 1:
                    break  # nothing left to predict in this window
                x, ids = net.embed_token(torch.cat([tok, tok]) if guided else tok, f, i)
                if i == n - 1 and cfg.separators:
                    xs, ids_s = net.embed_separator(wcond, f + 1)
                    x, ids = torch.cat([x, xs], 1), torch.cat([ids, ids_s])
                logits = step(x, ids)
            seq = torch.cat([seq, torch.stack(frame_tokens, 1)[:, None]], dim=1)
    return seq


# ----------------------------------------------------------------------------- analytic cost

def forward_flops(cfg: TokenARConfig, queries: int, past: int, logits: int) -> float:
    """FLOPs of one call: ``queries`` new positions after ``past`` cached ones (causal pairs only),
    logits at ``logits`` positions. Multiply-add = 2; matmuls only (embeddings and norms are free)."""
    d = cfg.dim
    pairs = queries * past + queries * (queries + 1) // 2
    per_layer = 2 * queries * (4 * d * d + 2 * cfg.mlp_ratio * d * d) + 4 * pairs * d
    return cfg.num_layers * per_layer + 2 * logits * d * cfg.vocab_size


def training_flops(cfg: TokenARConfig, frames: int) -> float:
    """Forward + backward (3x) of the transformer on one clip cropped to ``max_frames``."""
    f = min(frames, cfg.max_frames)
    return 3 * forward_flops(cfg, cfg.sequence_length(f), 0, f * cfg.tokens_per_frame)


@dataclass(frozen=True)
class SampleCost:
    flops: float
    network_calls: int
    cache_bytes: int  # the static cache, preallocated for batch 1 (2 rows under guidance)


def sampling_cost(cfg: TokenARConfig, context_frames: int, new_frames: int, sampler: ARSamplerConfig,
                  bytes_per_element: int = 4) -> SampleCost:
    """Transformer FLOPs and calls of :func:`generate`, call for call."""
    n, flops, calls = cfg.tokens_per_frame, 0.0, 0
    for win in sliding_windows(context_frames, new_frames, cfg.max_frames,
                               resolve_stride(cfg.max_frames, sampler.stride)):
        frames, first = win.end - win.start, win.split - win.start
        past = cfg.prefix_length(frames) + first * cfg.frame_length + int(cfg.separators)
        flops += forward_flops(cfg, past, 0, 1)
        calls += 1
        for f in range(first, frames):
            for i in range(n):
                if f == frames - 1 and i == n - 1:
                    break
                q = 2 if (i == n - 1 and cfg.separators) else 1
                flops += forward_flops(cfg, q, past, 1)
                past += q
                calls += 1
    rows = 2 if is_guided(cfg, sampler) else 1
    cache = 2 * cfg.num_layers * rows * cfg.max_sequence_length * cfg.dim * bytes_per_element
    return SampleCost(flops=flops * rows, network_calls=calls, cache_bytes=cache)


# ----------------------------------------------------------------------------- presets

def _preset(num_layers: int, num_heads: int, head_dim: int = 64, axes: tuple[int, int, int] = (16, 24, 24)
            ) -> Callable[..., TokenARConfig]:
    def make(**overrides) -> TokenARConfig:
        return replace(TokenARConfig(num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
                                     axes_dims_rope=axes), **overrides)
    return make


# Sized like FAR-B / FAR-M / FAR-L; "-tiny" is for tests.
PRESETS: dict[str, Callable[..., TokenARConfig]] = {
    "TokenAR-B": _preset(12, 12),
    "TokenAR-M": _preset(12, 16),
    "TokenAR-L": _preset(24, 16),
    "TokenAR-tiny": _preset(2, 2, head_dim=16, axes=(4, 6, 6)),
}


def build_token_ar(preset: str, **overrides) -> TokenAR:
    if preset not in PRESETS:
        import difflib
        close = difflib.get_close_matches(preset, PRESETS, n=3)
        raise KeyError(f"unknown TokenAR preset {preset!r}; did you mean {close or sorted(PRESETS)}?")
    return TokenAR(PRESETS[preset](**overrides))
