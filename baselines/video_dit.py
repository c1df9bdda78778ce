"""A Latte-style video DiT: full-sequence flow matching on the same latents as FAR.

Where FAR denoises one frame at a time under a frame-causal mask, this model denoises a whole
window of ``window`` frames at once with bidirectional attention and *one* timestep per clip
(Latte, Ma et al. 2024). Two attention layouts are offered:

- ``"joint"``: every block attends over all tokens of all frames (full space-time attention);
- ``"alternating"``: Latte's variant 1, spatial blocks (attention inside each frame) alternating
  with temporal blocks (attention across frames at each spatial position), spatial first.

Everything else is FAR's (``far.model``): adaLN-zero blocks with per-frame modulation, QK RMSNorm,
3-axis (frame, row, column) RoPE, sinusoidal timestep MLP, patchify, and FAR's flow matching
(``far.flow``: logit-normal timesteps, ``sigma = t / 1000``, velocity target, Euler schedule), so a
comparison with FAR isolates the modelling choice.

Prediction from context frames: context latents are kept clean (timestep ``CLEAN_TIMESTEP``, no
noise, no loss) inside the window, in training (a random-length clean prefix) and in sampling.
Videos longer than the window are sampled by a sliding window: each window after the first keeps
the last ``window - stride`` frames as clean context and generates ``stride`` new ones
(:func:`sliding_windows`).

Layout of the file: config, blocks, the network, the diffusion process (loss, sampler, cost), presets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from far.flow import (CLEAN_TIMESTEP, euler_step, inference_schedule, sample_train_indices, train_sigmas,
                      velocity_error)
from far.model import (MLP, TIMESTEP_EMBED_CHANNELS, HeadRMSNorm, Modulation, TimestepMLP, apply_rope,
                       patchify, rope_tables, timestep_embedding, unpatchify)

CONDITIONS = ("none", "label", "action")
ATTENTION_LAYOUTS = ("joint", "alternating")


@dataclass(frozen=True)
class VideoDiTConfig:
    """Architecture; defaults are the FAR-B-sized model (12 layers, 12 heads of 64)."""

    num_layers: int = 12
    num_heads: int = 12
    head_dim: int = 64
    in_channels: int = 32
    out_channels: int = 32
    patch_size: int = 1
    window: int = 16  # frames denoised together (the training clip length)
    attention: str = "joint"  # "joint" | "alternating" (spatial, temporal, spatial, ...)
    axes_dims_rope: tuple[int, int, int] = (16, 24, 24)
    rope_theta: float = 10000.0
    condition: str = "none"  # "none" | "label" | "action"
    num_classes: int = 0  # class labels or discrete actions; the null id is ``num_classes``
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes_dims_rope", tuple(self.axes_dims_rope))
        if sum(self.axes_dims_rope) != self.head_dim or any(a % 2 for a in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must be even and sum to head_dim {self.head_dim}")
        if self.attention not in ATTENTION_LAYOUTS:
            raise ValueError(f"attention must be one of {ATTENTION_LAYOUTS}, got {self.attention!r}")
        if self.attention == "alternating" and self.num_layers % 2:
            raise ValueError("alternating attention needs an even number of layers (spatial/temporal pairs)")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.condition != "none" and self.num_classes <= 0:
            raise ValueError(f"condition {self.condition!r} needs num_classes > 0")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def null_id(self) -> int:
        """Id of the null class / null action (classifier-free guidance, condition dropout)."""
        if self.condition == "none":
            raise ValueError("an unconditional model has no null id")
        return self.num_classes

    def block_layouts(self) -> tuple[str, ...]:
        """Attention layout of every block: "joint", or "spatial"/"temporal" alternating."""
        if self.attention == "joint":
            return ("joint",) * self.num_layers
        return tuple("spatial" if i % 2 == 0 else "temporal" for i in range(self.num_layers))


# ----------------------------------------------------------------------------- blocks

def grid_ids(frames: int, rows: int, cols: int) -> Tensor:
    """(frames * rows * cols, 3) integer (frame, row, column) ids in frame-major token order."""
    f, r, c = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack([f, r, c], dim=-1).reshape(-1, 3)


def check_conditions(condition: str, b: int, f: int, labels: Tensor | None, actions: Tensor | None) -> None:
    """Labels (B,) for a label model, actions (B, F) for an action model, nothing otherwise."""
    if condition == "label" and (labels is None or labels.shape != (b,)):
        raise ValueError(f"a label-conditioned model needs labels of shape ({b},), got "
                         f"{None if labels is None else tuple(labels.shape)}")
    if condition == "action" and (actions is None or actions.shape != (b, f)):
        raise ValueError(f"an action-conditioned model needs actions of shape ({b}, {f}), got "
                         f"{None if actions is None else tuple(actions.shape)}")
    if condition != "label" and labels is not None:
        raise ValueError(f"model with condition {condition!r} was given labels")
    if condition != "action" and actions is not None:
        raise ValueError(f"model with condition {condition!r} was given actions")


class Attention(nn.Module):
    """Bidirectional QK-RMSNorm rotary attention over all tokens, within frames, or across frames."""

    def __init__(self, cfg: VideoDiTConfig, layout: str):
        super().__init__()
        dim = cfg.dim
        self.heads, self.layout = cfg.num_heads, layout
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = HeadRMSNorm(cfg.head_dim), HeadRMSNorm(cfg.head_dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, frames: int) -> Tensor:
        def heads(t: Tensor) -> Tensor:  # (B, S, D) -> (B, H, S, d)
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        q, k, v = self.norm_q(heads(self.to_q(x))), self.norm_k(heads(self.to_k(x))), heads(self.to_v(x))
        # 3-axis RoPE on the full sequence: inside a frame the frame rotation cancels, across frames
        # at one position the row/column rotations cancel, so one table serves every layout.
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.layout == "joint":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            # (B, H, F, N, d): attend over N (spatial) or, transposed, over F (temporal).
            q, k, v = (t.unflatten(2, (frames, -1)) for t in (q, k, v))
            if self.layout == "temporal":
                q, k, v = (t.transpose(2, 3) for t in (q, k, v))
            o = F.scaled_dot_product_attention(q, k, v)
            if self.layout == "temporal":
                o = o.transpose(2, 3)
            o = o.flatten(2, 3)
        return self.to_out(o.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    """adaLN-zero block (as FAR's): modulated LayerNorm, attention, modulated GELU MLP."""

    def __init__(self, cfg: VideoDiTConfig, layout: str):
        super().__init__()
        self.norm1 = Modulation(cfg.dim, 3)
        self.attn = Attention(cfg, layout)
        self.norm2 = Modulation(cfg.dim, 3)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio)

    def forward(self, x: Tensor, silu_emb: Tensor, tok2frame: Tensor, cos: Tensor, sin: Tensor,
                frames: int) -> Tensor:
        shift, scale, gate = self.norm1(silu_emb, tok2frame)
        x = x + gate * self.attn(_layer_norm(x) * (1 + scale) + shift, cos, sin, frames)
        shift, scale, gate = self.norm2(silu_emb, tok2frame)
        return x + gate * self.mlp(_layer_norm(x) * (1 + scale) + shift)


def _layer_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


# ----------------------------------------------------------------------------- the network

class VideoDiT(nn.Module):
    """``(latents, per-frame timesteps, conditions) -> velocity`` for every frame, bidirectionally."""

    def __init__(self, cfg: VideoDiTConfig):
        super().__init__()
        self.cfg = cfg
        dim, p = cfg.dim, cfg.patch_size
        self.x_embedder = nn.Linear(cfg.in_channels * p * p, dim)
        self.timestep_embedder = TimestepMLP(TIMESTEP_EMBED_CHANNELS, dim)
        if cfg.condition != "none":
            self.condition_embedder = nn.Embedding(cfg.num_classes + 1, dim)
        self.blocks = nn.ModuleList(DiTBlock(cfg, layout) for layout in cfg.block_layouts())
        self.norm_out = Modulation(dim, 2)
        self.proj_out = nn.Linear(dim, p * p * cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT init: Xavier linears, N(0, 0.02) embeddings and timestep MLP, zero adaLN and output."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.condition != "none":
            nn.init.normal_(self.condition_embedder.weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_2.weight, std=0.02)
        for m in [self.norm_out.linear, self.proj_out] + [b.norm1.linear for b in self.blocks] + [
                b.norm2.linear for b in self.blocks]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, latents: Tensor, timesteps: Tensor, *, labels: Tensor | None = None,
                actions: Tensor | None = None) -> Tensor:
        """latents (B, F, C, h, w); timesteps (B,) one per clip or (B, F) per frame (``CLEAN_TIMESTEP``
        marks a clean context frame); labels (B,) or actions (B, F). Returns (B, F, C_out, h, w)."""
        cfg = self.cfg
        b, f, c, h, w = latents.shape
        p = cfg.patch_size
        if c != cfg.in_channels:
            raise ValueError(f"latents have {c} channels, the model expects {cfg.in_channels}")
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by patch_size {p}")
        if timesteps.dim() == 1:
            timesteps = timesteps[:, None].expand(b, f)
        if timesteps.shape != (b, f):
            raise ValueError(f"timesteps must have shape (B,) or (B, F) = {(b, f)}, got {tuple(timesteps.shape)}")
        check_conditions(cfg.condition, b, f, labels, actions)

        rows, cols = h // p, w // p
        x = self.x_embedder(patchify(latents, p))
        cos, sin = rope_tables(grid_ids(f, rows, cols).to(latents.device), cfg.axes_dims_rope, cfg.rope_theta)
        tok2frame = torch.arange(f, device=latents.device).repeat_interleave(rows * cols)
        emb = self.timestep_embedder(timestep_embedding(timesteps.flatten())).unflatten(0, (b, f))
        if cfg.condition == "label":
            emb = emb + self.condition_embedder(labels)[:, None]
        elif cfg.condition == "action":
            emb = emb + self.condition_embedder(actions)
        silu_emb = F.silu(emb)
        for block in self.blocks:
            x = block(x, silu_emb, tok2frame, cos, sin, f)
        scale, shift = self.norm_out(silu_emb, tok2frame)
        x = _layer_norm(x) * (1 + scale) + shift
        return unpatchify(self.proj_out(x), f, cfg.out_channels, h, w, p)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- training

@dataclass(frozen=True)
class DiTLossConfig:
    # Each training clip gets a clean context prefix with this probability, of a length uniform in
    # [1, max_context_frames] (None: window - 1); the rest of the clip shares one noise level.
    context_prob: float = 0.5
    max_context_frames: int | None = None
    condition_dropout: float = 0.1  # ids replaced by the null id (classifier-free guidance)


def video_dit_loss(network: Callable[..., Tensor], x0: Tensor, *, cfg: DiTLossConfig = DiTLossConfig(),
                   labels: Tensor | None = None, actions: Tensor | None = None, null_id: int | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Full-sequence flow matching on latents ``x0`` (B, F, C, h, w): one logit-normal timestep per
    clip, a random clean context prefix, velocity MSE averaged over the noisy frames of each clip."""
    b, f = x0.shape[:2]
    device = x0.device
    sigma = train_sigmas().to(device)[sample_train_indices((b,), generator, device)]  # (B,)
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    max_ctx = min(f - 1, cfg.max_context_frames if cfg.max_context_frames is not None else f - 1)
    n_ctx = torch.zeros(b, dtype=torch.long, device=device)
    if max_ctx >= 1 and cfg.context_prob > 0:
        lengths = torch.randint(1, max_ctx + 1, (b,), generator=generator, device=device)
        use = torch.rand((b,), generator=generator, device=device) < cfg.context_prob
        n_ctx = torch.where(use, lengths, n_ctx)
    clean = torch.arange(f, device=device)[None, :] < n_ctx[:, None]  # (B, F)
    per_frame = velocity_error(network, x0, noise, sigma[:, None].expand(b, f), clean, labels=labels,
                               actions=actions, null_id=null_id, dropout=cfg.condition_dropout, generator=generator)
    weight = (~clean).float()
    loss = ((per_frame * weight).sum(1) / weight.sum(1)).mean()
    return loss, {"mse_per_frame": per_frame.detach(), "context_frames": n_ctx.float().mean()}


# ----------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class DiTSamplerConfig:
    num_steps: int = 50
    guidance_scale: float = 1.0  # 1.0 = no guidance
    stride: int | None = None  # new frames per window after the first (None: window // 2)
    drop_conditions: bool = False  # sample with every condition replaced by the null id


@dataclass(frozen=True)
class Window:
    """One denoising window over the whole sequence: frames [start, split) clean, [split, end) generated."""

    start: int
    split: int
    end: int


def resolve_stride(window: int, stride: int | None) -> int:
    stride = window // 2 if stride is None else stride
    if window >= 2 and not 1 <= stride <= window - 1:
        raise ValueError(f"stride must be in [1, {window - 1}] for a window of {window}, got {stride}")
    return max(stride, 1)


def sliding_windows(context_frames: int, new_frames: int, window: int, stride: int) -> list[Window]:
    """The windows that generate ``new_frames`` after ``context_frames``.

    Each window keeps the last ``min(seen, window - stride)`` frames as clean context and generates
    up to ``window - context`` frames (so the first window, with little context, generates more);
    a last, short window takes more context so every window is full when enough frames exist.
    """
    total, seen, out = context_frames + new_frames, context_frames, []
    while seen < total:
        ctx = min(seen, window - stride)
        new = min(total - seen, window - ctx)
        ctx = min(seen, window - new)
        out.append(Window(seen - ctx, seen, seen + new))
        seen += new
    return out


def is_guided(cfg: VideoDiTConfig, sampler: DiTSamplerConfig) -> bool:
    """Classifier-free guidance runs only for a conditioned model, a scale other than 1, real conditions."""
    return sampler.guidance_scale != 1.0 and cfg.condition != "none" and not sampler.drop_conditions


def _guided_conditions(cfg: VideoDiTConfig, labels: Tensor | None, actions: Tensor | None, guided: bool,
                       drop: bool) -> tuple[Tensor | None, Tensor | None]:
    """Conditions as the network sees them: null ids when dropped, ``[null; cond]`` under guidance."""
    if cfg.condition == "none":
        if labels is not None or actions is not None:
            raise ValueError("an unconditional model takes neither labels nor actions")
        return None, None
    ids = labels if cfg.condition == "label" else actions
    if ids is None:
        raise ValueError(f"this model is {cfg.condition}-conditioned: pass "
                         + ("labels (B,)" if cfg.condition == "label" else "actions (B, context + new frames)"))
    if drop:
        ids = torch.full_like(ids, cfg.null_id)
    if guided:
        ids = torch.cat([torch.full_like(ids, cfg.null_id), ids])
    return (ids, None) if cfg.condition == "label" else (None, ids)


@torch.no_grad()
def denoise_window(net: VideoDiT, context: Tensor, noise: Tensor, sampler: DiTSamplerConfig, *,
                   guided: bool = False, labels: Tensor | None = None, actions: Tensor | None = None) -> Tensor:
    """Generate the frames after clean ``context`` (B, Tc, C, h, w) from ``noise`` (B, Tn, C, h, w) by
    Euler steps on the whole window. Conditions come as :func:`_guided_conditions` returns them
    (``[null; cond]``, batch 2B, when ``guided``); ``actions`` cover the window (Tc + Tn frames).
    Returns the generated frames (B, Tn, C, h, w)."""
    b, tc, tn = noise.shape[0], context.shape[1], noise.shape[1]
    schedule = inference_schedule(sampler.num_steps)
    sigmas = schedule.sigmas.to(noise.device)
    x = noise
    for i in range(len(schedule)):
        inp = torch.cat([context, x], dim=1)
        t = torch.full((b, tc + tn), CLEAN_TIMESTEP, device=noise.device)
        t[:, tc:] = schedule.timesteps[i]
        if guided:
            inp, t = torch.cat([inp, inp]), torch.cat([t, t])
        v = net(inp, t, labels=labels, actions=actions)[:, tc:]
        if guided:
            v_u, v_c = v.chunk(2)
            v = v_u + sampler.guidance_scale * (v_c - v_u)
        x = euler_step(x, v, sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_video(net: VideoDiT, context: Tensor, noise: Tensor, sampler: DiTSamplerConfig = DiTSamplerConfig(),
                 *, labels: Tensor | None = None, actions: Tensor | None = None) -> Tensor:
    """Generate ``noise.shape[1]`` latent frames after ``context`` (B, Tc, C, h, w) (Tc may be 0) with a
    sliding window; ``noise`` (B, Tn, C, h, w) is the initial noise of every new frame (frame j's
    noise is used by the window that generates it). ``actions`` covers context and new frames.
    Returns the whole latent sequence (B, Tc + Tn, C, h, w)."""
    cfg = net.cfg
    b, tc, tn = noise.shape[0], context.shape[1], noise.shape[1]
    if actions is not None and actions.shape != (b, tc + tn):
        raise ValueError(f"actions must cover context and new frames: shape {(b, tc + tn)}, got {tuple(actions.shape)}")
    guided = is_guided(cfg, sampler)
    labels, actions = _guided_conditions(cfg, labels, actions, guided, sampler.drop_conditions)
    param = next(net.parameters())
    seq = context.to(param.device, param.dtype)
    noise = noise.to(param.device, param.dtype)
    for win in sliding_windows(tc, tn, cfg.window, resolve_stride(cfg.window, sampler.stride)):
        acts = actions[:, win.start:win.end] if actions is not None else None
        new = denoise_window(net, seq[:, win.start:win.split], noise[:, win.split - tc:win.end - tc], sampler,
                             guided=guided, labels=labels, actions=acts)
        seq = torch.cat([seq, new], dim=1)
    return seq


# ----------------------------------------------------------------------------- analytic cost

def forward_flops(cfg: VideoDiTConfig, frames: int, latent_hw: tuple[int, int]) -> float:
    """FLOPs of one forward on ``frames`` frames (multiply-add = 2; matmuls only, as FlopCounterMode)."""
    d, r = cfg.dim, cfg.mlp_ratio
    n = (latent_hw[0] // cfg.patch_size) * (latent_hw[1] // cfg.patch_size)
    s = frames * n
    pairs = {"joint": s * s, "spatial": frames * n * n, "temporal": n * frames * frames}
    total = 0.0
    for layout in cfg.block_layouts():
        total += 2 * s * (4 * d * d + 2 * r * d * d) + 4 * pairs[layout] * d + 2 * frames * 6 * d * d
    patch = cfg.patch_size ** 2
    total += 2 * s * d * patch * (cfg.in_channels + cfg.out_channels)  # embed + output projection
    total += 2 * frames * (TIMESTEP_EMBED_CHANNELS * d + d * d + 2 * d * d)  # timestep MLP + norm_out
    return total


def training_flops(cfg: VideoDiTConfig, frames: int, latent_hw: tuple[int, int]) -> float:
    """Forward + backward (3x forward) on one training clip, cropped to the window."""
    return 3 * forward_flops(cfg, min(frames, cfg.window), latent_hw)


@dataclass(frozen=True)
class SampleCost:
    flops: float
    network_calls: int
    windows: int


def sampling_cost(cfg: VideoDiTConfig, context_frames: int, new_frames: int, sampler: DiTSamplerConfig,
                  latent_hw: tuple[int, int]) -> SampleCost:
    """FLOPs and network calls of :func:`sample_video` (guidance doubles the batch, not the calls)."""
    steps = len(inference_schedule(sampler.num_steps))
    wins = sliding_windows(context_frames, new_frames, cfg.window, resolve_stride(cfg.window, sampler.stride))
    flops = sum(steps * forward_flops(cfg, w.end - w.start, latent_hw) for w in wins)
    guided = is_guided(cfg, sampler)
    return SampleCost(flops=flops * (2 if guided else 1), network_calls=steps * len(wins), windows=len(wins))


# ----------------------------------------------------------------------------- presets

def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FAR's split of the head dimension over (frame, row, column): (16, 24, 24) for 64."""
    f = head_dim // 8 * 2
    r = (head_dim - f) // 4 * 2
    return f, r, head_dim - f - r


def _preset(num_layers: int, num_heads: int, head_dim: int = 64, axes: tuple[int, int, int] = (16, 24, 24)
            ) -> Callable[..., VideoDiTConfig]:
    def make(**overrides) -> VideoDiTConfig:
        return replace(VideoDiTConfig(num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
                                      axes_dims_rope=axes), **overrides)
    return make


# Sized like FAR-B / FAR-M / FAR-L (same depth, width and latents); "-tiny" is for tests.
PRESETS: dict[str, Callable[..., VideoDiTConfig]] = {
    "VideoDiT-B": _preset(12, 12),
    "VideoDiT-M": _preset(12, 16),
    "VideoDiT-L": _preset(24, 16),
    "VideoDiT-tiny": _preset(2, 2, head_dim=16, axes=(4, 6, 6)),
}


def build_video_dit(preset: str, **overrides) -> VideoDiT:
    """Build a preset by name, e.g. ``build_video_dit("VideoDiT-B", attention="alternating")``."""
    if preset not in PRESETS:
        import difflib
        close = difflib.get_close_matches(preset, PRESETS, n=3)
        raise KeyError(f"unknown VideoDiT preset {preset!r}; did you mean {close or sorted(PRESETS)}?")
    return VideoDiT(PRESETS[preset](**overrides))
