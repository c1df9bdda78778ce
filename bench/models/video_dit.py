"""The Latte-style video DiT (``baselines.video_dit``) behind the harness contract.

It works in FAR's latent space for the task (DC-AE at ``paper`` scale, the lossless pixel-unshuffle
codec at ``quick`` scale, exactly as ``bench.models.far``), so a FAR-vs-DiT row differs only in the
modelling choice. Paper scale uses the FAR-sized preset of the task (VideoDiT-L for UCF-101,
VideoDiT-M for Minecraft, VideoDiT-B otherwise), a 16-frame window and needs training; quick scale is
a small model that trains on the CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from baselines.video_dit import (PRESETS, DiTLossConfig, DiTSamplerConfig, VideoDiT, VideoDiTConfig,
                                 count_parameters, resolve_stride, rope_axes, sample_video, sampling_cost,
                                 sliding_windows, training_flops, video_dit_loss)
from bench.api import Clip, Cost, Prompt, VideoBatch
from bench.config import apply_options
from bench.models.far import OTHER, PAPER, conditioning, quick_unshuffle
from bench.tasks import Part, Task
from far.autoencoder import build_codec

PAPER_PRESET = {"ucf101": "VideoDiT-L", "minecraft": "VideoDiT-M"}  # else VideoDiT-B
# Registry variants: the joint space-time model, and Latte's alternating spatial/temporal blocks.
VARIANTS: dict[str, dict[str, object]] = {"video_dit": {}, "video_dit_alt": {"attention": "alternating"}}


@dataclass
class VideoDiTModelConfig:
    preset: str | None = None  # a baselines.video_dit preset, or None for the explicit architecture
    num_layers: int = field(default=4, metadata={"ge": 1})
    num_heads: int = field(default=4, metadata={"ge": 1})
    head_dim: int = field(default=64, metadata={"ge": 1})  # RoPE axes split as FAR's (16, 24, 24) for 64
    patch_size: int = field(default=1, metadata={"ge": 1})
    # Latte's joint or spatial/temporal ("alternating") blocks
    attention: str = field(default="joint", metadata={"choices": ("joint", "alternating")})
    window: int = field(default=16, metadata={"ge": 1})  # frames denoised together; training clips are cropped to it
    # new frames per window when sampling past the window (None: window // 2); sampling only
    stride: int | None = field(default=None, metadata={"ge": 1, "identity": False})
    condition: str = field(default="none", metadata={"choices": ("none", "label", "action")})
    num_classes: int = field(default=0, metadata={"ge": 0})
    codec: str = "unshuffle8"  # "dcae-8x" | "dcae-16x" | "dcae-32x" | "unshuffle<r>"
    vae_weights: str | None = field(default=None, metadata={"path": True})
    # sampling knobs (identity False: they do not change what training produces)
    num_steps: int = field(default=50, metadata={"ge": 1, "identity": False})
    guidance_scale: float = field(default=1.0, metadata={"ge": 0, "identity": False})
    drop_conditions: bool = field(default=False, metadata={"identity": False})
    context_prob: float = field(default=0.5, metadata={"ge": 0, "le": 1})  # training clips with a clean context prefix
    condition_dropout: float = field(default=0.1, metadata={"ge": 0, "le": 1})


def default_config(task: Task, scale: str) -> VideoDiTModelConfig:
    t = task.at_scale(scale)
    cond, num_classes = conditioning(t)
    if scale == "paper":
        return VideoDiTModelConfig(preset=PAPER_PRESET.get(t.dataset, "VideoDiT-B"), codec=PAPER.get(t.name, OTHER)[1],
                                   window=16, condition=cond, num_classes=num_classes)
    factor = quick_unshuffle(t.resolution)
    return VideoDiTModelConfig(codec=f"unshuffle{factor}", window=min(16, t.num_frames), condition=cond,
                               num_classes=num_classes)


class VideoDiTVideoModel(nn.Module):
    """A full-sequence video DiT as a ``VideoModel``."""

    def __init__(self, cfg: VideoDiTModelConfig, name: str = "video_dit"):
        super().__init__()
        self.name = name
        self.model_config = cfg
        self.codec = build_codec(cfg.codec)
        if cfg.vae_weights:  # DC-AE weights, checked against their pins first
            from bench.assets import read_checked_state_dict
            if not hasattr(self.codec, "vae"):
                raise ValueError(f"codec {cfg.codec!r} has no weights to load ({cfg.vae_weights})")
            self.codec.vae.load_state_dict(read_checked_state_dict(cfg.vae_weights), strict=True)
        self.codec.requires_grad_(False)
        self.trainable = True
        self.conditions = frozenset({cfg.condition}) - {"none"}
        c = self.codec.latent_channels
        arch = dict(in_channels=c, out_channels=c, window=cfg.window, attention=cfg.attention,
                    condition=cfg.condition, num_classes=cfg.num_classes)
        if cfg.preset:
            dcfg = PRESETS[cfg.preset](**arch)
        else:
            dcfg = VideoDiTConfig(num_layers=cfg.num_layers, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                                  axes_dims_rope=rope_axes(cfg.head_dim), patch_size=cfg.patch_size, **arch)
        self.net = VideoDiT(dcfg)
        self.sampler = DiTSamplerConfig(num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
                                        stride=resolve_stride(cfg.window, cfg.stride),
                                        drop_conditions=cfg.drop_conditions)

    # -- harness hooks ------------------------------------------------------------------------
    def trainable_module(self) -> nn.Module:
        return self.net

    def config(self) -> dict:
        return {**asdict(self.model_config), "dit_config": asdict(self.net.cfg)}

    def use_protocol_sampling(self, part: Part) -> None:
        self.sampler = replace(self.sampler, num_steps=part.num_steps, guidance_scale=part.guidance_scale,
                               drop_conditions=part.drop_conditions)

    # -- VideoModel -----------------------------------------------------------------------------
    def training_loss(self, batch: VideoBatch) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.net.cfg
        video, actions = batch.video, batch.actions
        if video.shape[1] > cfg.window:  # a random window-sized crop, as the model is trained
            start = int(torch.randint(0, video.shape[1] - cfg.window + 1, (1,)))
            video = video[:, start:start + cfg.window]
            actions = actions[:, start:start + cfg.window] if actions is not None else None
        with torch.no_grad():
            latents = self.codec.encode(video)
        loss_cfg = DiTLossConfig(context_prob=self.model_config.context_prob,
                                 condition_dropout=self.model_config.condition_dropout)
        return video_dit_loss(self.net, latents, cfg=loss_cfg,
                              labels=batch.labels if cfg.condition == "label" else None,
                              actions=actions if cfg.condition == "action" else None,
                              null_id=cfg.null_id if cfg.condition != "none" else None)

    @torch.no_grad()
    def sample(self, prompt: Prompt, num_frames: int,
               generator: torch.Generator | list[torch.Generator]) -> Tensor:
        cfg = self.net.cfg
        b, tc, _, h, w = prompt.context.shape
        r = self.codec.compression
        device = next(self.net.parameters()).device
        # Only the context frames the first window sees are encoded.
        first = sliding_windows(tc, num_frames, cfg.window, self.sampler.stride)[0].start
        ctx = prompt.context[:, first:].to(device)
        context = self.codec.encode(ctx) if ctx.shape[1] else ctx.new_zeros(
            b, 0, self.codec.latent_channels, h // r, w // r)
        shape = (num_frames, self.codec.latent_channels, h // r, w // r)
        if isinstance(generator, (list, tuple)):
            if len(generator) != b:
                raise ValueError(f"{len(generator)} generators for a batch of {b}")
            noise = torch.stack([torch.randn(shape, generator=g) for g in generator])
        else:
            noise = torch.randn((b, *shape), generator=generator)
        actions = prompt.actions[:, first:] if cfg.condition == "action" and prompt.actions is not None else None
        if cfg.condition == "action" and actions is None:
            raise ValueError("this model is action-conditioned: the prompt needs actions")
        latents = sample_video(self.net, context, noise, self.sampler,
                               labels=prompt.labels if cfg.condition == "label" else None, actions=actions)
        return self.codec.decode(latents[:, context.shape[1]:]).float()

    @torch.no_grad()
    def reconstruct(self, context: Tensor) -> Tensor:
        """The context through the codec, encoded and decoded as ``sample`` round-trips latents."""
        device = next(self.net.parameters()).device
        return self.codec.decode(self.codec.encode(context.to(device))).float()

    def cost(self, clip: Clip) -> Cost:
        cfg = self.net.cfg
        r = self.codec.compression
        hw = (clip.height // r, clip.width // r)
        s = sampling_cost(cfg, clip.context_frames, clip.frames - clip.context_frames, self.sampler, hw)
        return Cost(params=count_parameters(self.net), train_flops_per_clip=training_flops(cfg, clip.frames, hw),
                    sample_flops_per_clip=s.flops, network_calls_per_clip=s.network_calls, cache_bytes=0,
                    notes=f"codec {self.model_config.codec} (not counted); {s.windows} window(s) of "
                          f"<= {cfg.window} frames, stride {self.sampler.stride}; trains on {cfg.window}-frame crops")


def video_dit_config(task: Task, scale: str, *, variant: str = "video_dit", **overrides) -> VideoDiTModelConfig:
    """The variant's default config with ``model.<field>=`` overrides; names, types and ranges checked."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown video_dit variant {variant!r}; valid: {sorted(VARIANTS)}")
    return apply_options(replace(default_config(task, scale), **VARIANTS[variant]), overrides, "model")


def build_video_dit_model(task: Task, scale: str, *, variant: str = "video_dit", **overrides) -> VideoDiTVideoModel:
    """The registry factory: ``build_video_dit_model(task, scale, key=value, ...)``."""
    return VideoDiTVideoModel(video_dit_config(task, scale, variant=variant, **overrides), name=variant)
