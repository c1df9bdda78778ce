"""The token-level AR transformer (``baselines.token_ar``) over a per-frame FSQ tokenizer
(``baselines.vq``) behind the harness contract.

The model trains its own tokenizer, in two phases of the shared training loop: the first
``tokenizer_steps`` calls of ``training_loss`` (in training mode) train the tokenizer on
``tokenizer_frames`` random frames of each clip (reconstruction MSE); after that the tokenizer is
frozen and the transformer trains on its codes (next-token cross-entropy). The phase counter is a
buffer of the module, so it is checkpointed and resumed with the weights.

Because the tokenizer is trained here, it is part of ``trainable_module()`` and counted in
``Cost.params`` (``Cost.notes`` gives the split); FAR's and the DiT's frozen codecs are not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from baselines import vq
from baselines.token_ar import (PRESETS, ARSamplerConfig, TokenAR, TokenARConfig, count_parameters, generate,
                                sampling_cost, token_ar_loss, training_flops)
from baselines.video_dit import resolve_stride, rope_axes, sliding_windows
from bench.api import Clip, Cost, Prompt, VideoBatch
from bench.config import apply_options
from bench.models.far import conditioning
from bench.tasks import Part, Task

PAPER_PRESET = {"ucf101": "TokenAR-L", "minecraft": "TokenAR-M"}  # else TokenAR-B


@dataclass
class TokenARModelConfig:
    preset: str | None = None  # a baselines.token_ar preset, or None for the explicit architecture
    num_layers: int = field(default=4, metadata={"ge": 1})
    num_heads: int = field(default=4, metadata={"ge": 1})
    head_dim: int = field(default=64, metadata={"ge": 1})
    max_frames: int = field(default=16, metadata={"ge": 1})  # frames in the context window (training crop, cache size)
    condition: str = field(default="none", metadata={"choices": ("none", "label", "action")})
    num_classes: int = field(default=0, metadata={"ge": 0})
    condition_mode: str = field(default="frame", metadata={"choices": ("prefix", "frame")})
    tokenizer: str = "FSQ-8x-small"  # a baselines.vq preset
    # training steps spent on the tokenizer before the transformer
    tokenizer_steps: int = field(default=200, metadata={"ge": 0})
    tokenizer_frames: int = field(default=2, metadata={"ge": 1})  # frames per clip the tokenizer trains on
    # sampling knobs (identity False: they do not change what training produces)
    temperature: float = field(default=1.0, metadata={"ge": 0, "identity": False})  # 0 = greedy
    top_k: int | None = field(default=None, metadata={"ge": 1, "identity": False})
    guidance_scale: float = field(default=1.0, metadata={"ge": 0, "identity": False})
    # frames added per window past max_frames (None: max_frames // 2)
    stride: int | None = field(default=None, metadata={"ge": 1, "identity": False})
    drop_conditions: bool = field(default=False, metadata={"identity": False})
    condition_dropout: float = field(default=0.1, metadata={"ge": 0, "le": 1})


def default_config(task: Task, scale: str) -> TokenARModelConfig:
    t = task.at_scale(scale)
    cond, num_classes = conditioning(t)
    if scale == "paper":
        return TokenARModelConfig(preset=PAPER_PRESET.get(t.dataset, "TokenAR-B"),
                                  tokenizer="FSQ-8x" if t.resolution <= 64 else "FSQ-16x", tokenizer_steps=50_000,
                                  condition=cond, num_classes=num_classes)
    return TokenARModelConfig(tokenizer="FSQ-8x-small" if t.resolution <= 64 else "FSQ-16x-small",
                              max_frames=min(16, t.num_frames), condition=cond, num_classes=num_classes)


class TokenARVideoModel(nn.Module):
    """FSQ tokenizer + causal token transformer as a ``VideoModel``, at one frame resolution."""

    def __init__(self, cfg: TokenARModelConfig, resolution: int, name: str = "token_ar"):
        super().__init__()
        self.name = name
        self.model_config = cfg
        self.trainable = True
        self.conditions = frozenset({cfg.condition}) - {"none"}
        if cfg.tokenizer not in vq.PRESETS:
            raise ValueError(f"unknown tokenizer preset {cfg.tokenizer!r}; valid: {sorted(vq.PRESETS)}")
        self.tokenizer = vq.FrameTokenizer(vq.PRESETS[cfg.tokenizer]())
        r = self.tokenizer.compression
        if resolution % r:
            raise ValueError(f"resolution {resolution} is not divisible by the tokenizer's {r}x downsampling")
        arch = dict(vocab_size=self.tokenizer.codebook_size, grid=(resolution // r, resolution // r),
                    max_frames=cfg.max_frames, condition=cfg.condition, num_classes=cfg.num_classes,
                    condition_mode=cfg.condition_mode)
        if cfg.preset:
            acfg = PRESETS[cfg.preset](**arch)
        else:
            acfg = TokenARConfig(num_layers=cfg.num_layers, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                                 axes_dims_rope=rope_axes(cfg.head_dim), **arch)
        self.net = TokenAR(acfg)
        self.register_buffer("tokenizer_updates", torch.zeros((), dtype=torch.long))
        self.sampler = ARSamplerConfig(temperature=cfg.temperature, top_k=cfg.top_k,
                                       guidance_scale=cfg.guidance_scale,
                                       stride=resolve_stride(cfg.max_frames, cfg.stride),
                                       drop_conditions=cfg.drop_conditions)

    # -- harness hooks ------------------------------------------------------------------------
    def trainable_module(self) -> nn.Module:
        return self  # tokenizer, transformer and the phase counter

    def config(self) -> dict:
        return {**asdict(self.model_config), "token_ar_config": asdict(self.net.cfg),
                "tokenizer_config": asdict(self.tokenizer.cfg)}

    def use_protocol_sampling(self, part: Part) -> None:
        """Guidance and null conditioning follow the protocol; ``num_steps`` has no meaning here."""
        self.sampler = replace(self.sampler, guidance_scale=part.guidance_scale,
                               drop_conditions=part.drop_conditions)

    @property
    def training_tokenizer(self) -> bool:
        return int(self.tokenizer_updates) < self.model_config.tokenizer_steps

    # -- VideoModel -----------------------------------------------------------------------------
    def training_loss(self, batch: VideoBatch) -> tuple[Tensor, dict[str, Tensor]]:
        video, actions = batch.video, batch.actions
        b, t = video.shape[:2]
        if self.training and self.training_tokenizer:
            self.tokenizer_updates += 1
            k = min(self.model_config.tokenizer_frames, t)
            idx = torch.rand(b, t, device=video.device).argsort(1)[:, :k]  # k distinct frames per clip
            frames = video[torch.arange(b, device=video.device)[:, None], idx]
            loss, logs = self.tokenizer.reconstruction_loss(frames)
            return loss, {**logs, "tokenizer_phase": torch.ones(())}
        cfg = self.net.cfg
        if t > cfg.max_frames:
            start = int(torch.randint(0, t - cfg.max_frames + 1, (1,)))
            video = video[:, start:start + cfg.max_frames]
            actions = actions[:, start:start + cfg.max_frames] if actions is not None else None
        tokens = self.tokenizer.encode(video).flatten(2)
        loss, logs = token_ar_loss(self.net, tokens, labels=batch.labels if cfg.condition == "label" else None,
                                   actions=actions if cfg.condition == "action" else None,
                                   condition_dropout_p=self.model_config.condition_dropout)
        return loss, {**logs, "tokenizer_phase": torch.zeros(())}

    @torch.no_grad()
    def sample(self, prompt: Prompt, num_frames: int,
               generator: torch.Generator | list[torch.Generator]) -> Tensor:
        cfg = self.net.cfg
        b, tc, _, h, w = prompt.context.shape
        r = self.tokenizer.compression
        if (h // r, w // r) != cfg.grid:
            raise ValueError(f"frames of {h}x{w} give a {h // r}x{w // r} token grid; "
                             f"the model was built for {cfg.grid}")
        first = sliding_windows(tc, num_frames, cfg.max_frames, self.sampler.stride)[0].start
        device = next(self.parameters()).device
        ctx = prompt.context[:, first:].to(device)
        tokens = (self.tokenizer.encode(ctx).flatten(2) if ctx.shape[1]
                  else torch.zeros(b, 0, cfg.tokens_per_frame, dtype=torch.long, device=device))
        shape = (num_frames, cfg.tokens_per_frame)
        if isinstance(generator, (list, tuple)):
            if len(generator) != b:
                raise ValueError(f"{len(generator)} generators for a batch of {b}")
            uniforms = torch.stack([torch.rand(shape, generator=g) for g in generator])
        else:
            uniforms = torch.rand((b, *shape), generator=generator)
        actions = prompt.actions[:, first:] if cfg.condition == "action" and prompt.actions is not None else None
        if cfg.condition == "action" and actions is None:
            raise ValueError("this model is action-conditioned: the prompt needs actions")
        out = generate(self.net, tokens, uniforms.to(device), self.sampler,
                       labels=prompt.labels if cfg.condition == "label" else None, actions=actions)
        return self.tokenizer.decode(out[:, tokens.shape[1]:].unflatten(2, cfg.grid)).float()

    @torch.no_grad()
    def reconstruct(self, context: Tensor) -> Tensor:
        """The context through the tokenizer (quantised and decoded), as ``sample`` tokenises it."""
        device = next(self.parameters()).device
        return self.tokenizer.decode(self.tokenizer.encode(context.to(device))).float()

    def cost(self, clip: Clip) -> Cost:
        cfg, tok = self.net.cfg, self.tokenizer.cfg
        enc = vq.encode_flops(tok, clip.height, clip.width)
        dec = vq.decode_flops(tok, clip.height, clip.width)
        new = clip.frames - clip.context_frames
        first = sliding_windows(clip.context_frames, new, cfg.max_frames, self.sampler.stride)[0].start
        s = sampling_cost(cfg, clip.context_frames, new, self.sampler)
        n_net, n_tok = count_parameters(self.net), count_parameters(self.tokenizer)
        return Cost(params=n_net + n_tok,
                    train_flops_per_clip=training_flops(cfg, clip.frames) + min(clip.frames, cfg.max_frames) * enc,
                    sample_flops_per_clip=s.flops + (clip.context_frames - first) * enc + new * dec,
                    network_calls_per_clip=s.network_calls, cache_bytes=s.cache_bytes,
                    notes=f"params: transformer {n_net} + tokenizer {n_tok} (trained here, {tok.downsample}x FSQ, "
                          f"{tok.codebook_size} codes); train FLOPs: a transformer step incl. tokenizer encode (the "
                          f"first {self.model_config.tokenizer_steps} steps train the tokenizer instead, "
                          f"{3 * (enc + dec):.3g} FLOPs/frame); static KV cache for {cfg.max_frames} frames")


def token_ar_config(task: Task, scale: str, **overrides) -> TokenARModelConfig:
    """The scale's default config with ``model.<field>=`` overrides; names, types and ranges checked."""
    return apply_options(default_config(task, scale), overrides, "model")


def build_token_ar_model(task: Task, scale: str, **overrides) -> TokenARVideoModel:
    """The registry factory: ``build_token_ar_model(task, scale, key=value, ...)``."""
    return TokenARVideoModel(token_ar_config(task, scale, **overrides), resolution=task.at_scale(scale).resolution)
