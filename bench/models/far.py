"""FAR behind the harness contract: pixels in, pixels out.

At ``paper`` scale the adapter is the official setting for the task (FAR-B-Long + DC-AE 8x for
DMLab, FAR-M-Long + DC-AE 16x for Minecraft, FAR-B/L for UCF-101 and BAIR) and needs trained
weights. At ``quick`` scale it is a small FAR-Long in a lossless pixel-unshuffle latent space that
trains from scratch on the CPU in minutes. ``far_sliding`` is the paper's ablation baseline: FAR
with only the short-term window (no long-term context), as a config of the same model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.api import Clip, Cost, Prompt, VideoBatch
from bench.config import apply_options
from bench.recipes import recipe_for
from bench.tasks import Part, Task
from far.autoencoder import build_codec
from far.cost import cache_bytes, sampling_cost, training_flops
from far.flow import FlowLossConfig, flow_matching_loss
from far.long_context import ClipWindow, sample_long_context_clip
from far.model import FAR, FARConfig, PRESETS, count_parameters
from far.sample import SamplerConfig, rollout

# The official setting per task at paper scale (showlab/FAR configs and released weights):
# task -> (preset, codec, transformer weights asset, DC-AE weights asset) in bench.assets.ASSETS.
PAPER = {
    "dmlab_long": ("FAR-B-Long", "dcae-8x", "far_b_long_dmlab", "dcae_dmlab_res64"),
    "minecraft_long": ("FAR-M-Long", "dcae-16x", "far_m_long_minecraft", "dcae_minecraft_res128"),
    "bair_pred": ("FAR-B", "dcae-8x", "far_b_bair", "dcae_bair_res64"),
    "bair_pred14": ("FAR-B", "dcae-8x", "far_b_bair", "dcae_bair_res64"),
    "ucf101_pred": ("FAR-B", "dcae-8x", "far_b_ucf101", "dcae_ucf101_res64"),
    "ucf101_pred_mcvd": ("FAR-B", "dcae-8x", "far_b_ucf101", "dcae_ucf101_res64"),
    "ucf101_cond128": ("FAR-L", "dcae-16x", "far_l_ucf101_cond128", "dcae_ucf101_res128"),
    "ucf101_cond128_10k": ("FAR-L", "dcae-16x", "far_l_ucf101_cond128", "dcae_ucf101_res128"),
    "ucf101_uncond128": ("FAR-L", "dcae-16x", "far_l_ucf101_uncond128", "dcae_ucf101_res128"),
    "ucf101_cond256": ("FAR-L", "dcae-32x", "far_l_ucf101_cond256", "dcae_ucf101_res256"),
    "ucf101_uncond256": ("FAR-L", "dcae-32x", "far_l_ucf101_uncond256", "dcae_ucf101_res256"),
}
# Tasks FAR was not released for get FAR-B in an 8x DC-AE space and no official weights.
OTHER = ("FAR-B", "dcae-8x", None, None)
ACTION_CLASSES = {"dmlab": 4, "minecraft": 4}  # official tables: 4 actions + null


def conditioning(task: Task) -> tuple[str, int]:
    """(condition, number of classes) a model needs for ``task``: labels (101 UCF classes), per-frame
    actions (the dataset's action table), or none (weather covariates are not modelled yet)."""
    cond = task.parts[0].condition
    if cond == "label":
        return cond, 101
    if cond == "action":
        return cond, ACTION_CLASSES.get(task.dataset, 4)
    return "none", 0


def quick_unshuffle(resolution: int) -> int:
    """Pixel-unshuffle factor of the quick-scale latent space: 8x8 latent tokens per frame."""
    return max(1, resolution // 8)


@dataclass
class FARModelConfig:
    preset: str | None = None  # official preset, or None for the explicit architecture below
    num_layers: int = field(default=4, metadata={"ge": 1})
    num_heads: int = field(default=4, metadata={"ge": 1})
    head_dim: int = field(default=64, metadata={"ge": 1})
    patch_size: int = field(default=1, metadata={"ge": 1})
    long_context: bool = True
    context_patch_size: int = field(default=4, metadata={"ge": 1})
    short_term_ctx_winsize: int = field(default=8, metadata={"ge": 1})
    condition: str = field(default="none", metadata={"choices": ("none", "label", "action")})
    num_classes: int = field(default=0, metadata={"ge": 0})
    codec: str = "unshuffle8"  # "dcae-8x" | "dcae-16x" | "dcae-32x" | "unshuffle<r>"
    vae_weights: str | None = field(default=None, metadata={"path": True})
    official_weights: str | None = None  # asset names of the released transformer and DC-AE
    official_vae: str | None = None
    checkpoint: str | None = field(default=None, metadata={"path": True})
    # sampling knobs (identity False: they do not change what training produces)
    num_steps: int = field(default=50, metadata={"ge": 1, "identity": False})
    guidance_scale: float = field(default=1.0, metadata={"ge": 0, "identity": False})
    use_cache: bool = field(default=True, metadata={"identity": False})
    drop_conditions: bool = field(default=False, metadata={"identity": False})
    clean_context_ratio: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    condition_dropout: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    attention_backend: str = field(default="sdpa", metadata={"choices": ("sdpa", "flex", "triton")})
    gradient_checkpointing: bool = False
    # FAR-Long training clips: "random" (official: random length and start) or "full" (the whole
    # clip, as the profiler needs for a fixed sequence length)
    long_clip: str = field(default="random", metadata={"choices": ("random", "full")})
    # The paper's sliding-window ablation: train on window-length clips and generate each chunk of
    # window // 2 frames from only the last window - window // 2 frames (no long-term context).
    sliding_window: bool = False
    # Requested sampling precision (the task's): "bf16" samples as FAR's official test configs on
    # CUDA (DC-AE weights in bf16, noise drawn in bf16, latents kept in bf16, transformer under bf16
    # autocast); anywhere else, and with "fp32", everything runs in fp32 (``sampling_precision``).
    precision: str = "fp32"


def default_config(variant: str, task: Task, scale: str) -> FARModelConfig:
    cond, num_classes = conditioning(task)
    if scale == "paper":
        preset, codec, weights, vae = PAPER.get(task.name, OTHER)
        cfg = FARModelConfig(preset=preset, codec=codec, condition=cond, num_classes=num_classes,
                             long_context=preset.endswith("Long"),
                             short_term_ctx_winsize=recipe_for(task).short_term_ctx_winsize,
                             official_weights=weights, official_vae=vae)
    else:
        long = task.num_frames > 16
        factor = quick_unshuffle(task.resolution)
        cfg = FARModelConfig(codec=f"unshuffle{factor}", condition=cond, num_classes=num_classes,
                             long_context=long, context_patch_size=4 if task.resolution // factor >= 4 else 1,
                             short_term_ctx_winsize=8 if long else 16)
    cfg = replace(cfg, precision=task.precision)
    if variant == "far_sliding":
        cfg = replace(cfg, long_context=False, preset=cfg.preset.replace("-Long", "") if cfg.preset else None,
                      official_weights=None, sliding_window=True)  # no released sliding-window weights
    return cfg


class FARVideoModel(nn.Module):
    """FAR (or FAR-Long, or sliding-window FAR) as a ``VideoModel``."""

    def __init__(self, cfg: FARModelConfig, name: str = "far"):
        super().__init__()
        self.name = name
        self.model_config = cfg
        if cfg.long_clip not in ("random", "full"):
            raise ValueError(f"FAR option long_clip must be 'random' or 'full', got {cfg.long_clip!r}")
        if cfg.precision not in ("fp32", "bf16"):
            raise ValueError(f"FAR option precision must be 'fp32' or 'bf16', got {cfg.precision!r}")
        self.codec = build_codec(cfg.codec)
        if cfg.vae_weights:
            self.load_codec_weights(cfg.vae_weights)
        self.trainable = True
        self.conditions = frozenset({cfg.condition}) - {"none"}
        channels = self.codec.latent_channels
        arch = dict(in_channels=channels, out_channels=channels, condition=cfg.condition,
                    num_classes=cfg.num_classes, short_term_ctx_winsize=cfg.short_term_ctx_winsize,
                    attention_backend=cfg.attention_backend, gradient_checkpointing=cfg.gradient_checkpointing)
        if cfg.preset:
            fcfg = PRESETS[cfg.preset](**arch)
            if not cfg.long_context:
                fcfg = replace(fcfg, context_patch_size=None)
        else:
            fcfg = FARConfig(num_layers=cfg.num_layers, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                             patch_size=cfg.patch_size,
                             context_patch_size=cfg.context_patch_size if cfg.long_context else None, **arch)
        self.net = FAR(fcfg)
        if cfg.checkpoint:
            self.load_official(cfg.checkpoint)
        self.sampler = SamplerConfig(num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
                                     use_cache=cfg.use_cache, drop_conditions=cfg.drop_conditions)

    # -- harness hooks ------------------------------------------------------------------------
    def trainable_module(self) -> nn.Module:
        return self.net

    def config(self) -> dict:
        return {**asdict(self.model_config), "far_config": asdict(self.net.cfg)}

    def load_official(self, path: str | Path) -> None:
        """Load an official FAR checkpoint (official key names), checked against its pins first
        (``bench.assets.check_file``: the registry/pins.json sha256, or the file name's hash prefix)."""
        from bench.assets import read_checked_state_dict
        from far.official import load_official_state_dict
        load_official_state_dict(self.net, read_checked_state_dict(path), source=str(path))

    def official_assets(self) -> tuple[str | None, str | None]:
        """Asset-store names of the released (transformer, DC-AE) weights for this setting, if any."""
        return self.model_config.official_weights, self.model_config.official_vae

    def load_codec_weights(self, path: str | Path) -> None:
        """Load DC-AE weights, checked against their pins first (as ``load_official``)."""
        from bench.assets import read_checked_state_dict
        if not hasattr(self.codec, "vae"):
            raise ValueError(f"codec {self.model_config.codec!r} has no weights to load ({path})")
        self.codec.vae.load_state_dict(read_checked_state_dict(path), strict=True)
        self.__dict__.pop("_bf16_codec", None)  # a bf16 copy of the old weights is stale

    # -- sampling precision ---------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def uses_bf16(self, device: torch.device | str | None = None) -> bool:
        """Whether sampling on ``device`` (default: the model's) runs FAR's bf16 path: requested and CUDA."""
        device = torch.device(device) if device is not None else self._device()
        return self.model_config.precision == "bf16" and device.type == "cuda"

    def sampling_precision(self, device: torch.device | str | None = None) -> str:
        """The precision ``sample`` actually uses on ``device``, as a run record states it."""
        requested = self.model_config.precision
        if requested == "fp32" or self.uses_bf16(device):
            return requested
        device = torch.device(device) if device is not None else self._device()
        where = "CPU" if device.type == "cpu" else f"{device.type}, not CUDA"
        return f"fp32 ({requested} requested; {where})"

    def _sampling_codec(self, bf16: bool) -> nn.Module:
        """The codec sampling uses: FAR's bf16 path keeps a bf16 copy of the DC-AE (the official
        trainer casts the VAE to the mixed-precision dtype); the fp32 weights stay for training."""
        if not bf16 or not any(True for _ in self.codec.parameters()):
            return self.codec
        cached = self.__dict__.get("_bf16_codec")  # not a submodule: not in state_dict, not moved by .to()
        device = next(self.codec.parameters()).device
        if cached is None or next(cached.parameters()).device != device:
            import copy
            cached = copy.deepcopy(self.codec).to(dtype=torch.bfloat16)
            self.__dict__["_bf16_codec"] = cached
        return cached

    def use_protocol_sampling(self, part: Part) -> None:
        """The protocol pins guidance, steps and null conditioning for each part."""
        self.sampler = replace(self.sampler, num_steps=part.num_steps, guidance_scale=part.guidance_scale,
                               drop_conditions=part.drop_conditions)

    # -- VideoModel -----------------------------------------------------------------------------
    def training_loss(self, batch: VideoBatch) -> tuple[Tensor, dict[str, Tensor]]:
        video, actions = batch.video, batch.actions
        cfg = self.net.cfg
        num_long = 0
        if self.model_config.sliding_window and video.shape[1] > cfg.short_term_ctx_winsize:
            start = int(torch.randint(0, video.shape[1] - cfg.short_term_ctx_winsize + 1, (1,)))
            video = video[:, start:start + cfg.short_term_ctx_winsize]
            actions = actions[:, start:start + cfg.short_term_ctx_winsize] if actions is not None else None
        if cfg.is_long and video.shape[1] > cfg.short_term_ctx_winsize:
            if self.model_config.long_clip == "full":
                clip = ClipWindow(0, video.shape[1], video.shape[1] - cfg.short_term_ctx_winsize)
            else:
                clip = sample_long_context_clip(video.shape[1], cfg.short_term_ctx_winsize)
            video = video[:, clip.start:clip.start + clip.length]
            actions = actions[:, clip.start:clip.start + clip.length] if actions is not None else None
            num_long = clip.num_long_term
        with torch.no_grad():
            latents = self.codec.encode(video)
        loss_cfg = FlowLossConfig(self.model_config.clean_context_ratio, self.model_config.condition_dropout)
        return flow_matching_loss(
            self.net, latents, window=cfg.short_term_ctx_winsize, cfg=loss_cfg,
            labels=batch.labels if cfg.condition == "label" else None,
            actions=actions if cfg.condition == "action" else None,
            null_id=cfg.null_id if cfg.condition != "none" else None, num_long_term=num_long)

    @torch.no_grad()
    def sample(self, prompt: Prompt, num_frames: int,
               generator: torch.Generator | list[torch.Generator]) -> Tensor:
        """FAR's sampling pipeline; in bf16 on CUDA when the task asks for it (``uses_bf16``)."""
        device = self._device()
        bf16 = self.uses_bf16(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return self._sample(prompt, num_frames, generator, bf16=bf16)

    def _sample(self, prompt: Prompt, num_frames: int, generator: torch.Generator | list[torch.Generator],
                *, bf16: bool) -> Tensor:
        """The dtype flow of the official pipeline (``FARPipeline.generate``) with ``bf16``: context
        pixels cast to the DC-AE's dtype and encoded by the bf16 DC-AE; the initial noise drawn in bf16;
        latents kept in bf16 between network calls (``rollout(latent_dtype=...)``; the caller provides
        the autocast); the latents decoded by the bf16 DC-AE. Without ``bf16`` all of it is fp32."""
        b, tc, _, h, w = prompt.context.shape
        codec = self._sampling_codec(bf16)
        dtype = torch.bfloat16 if bf16 else torch.float32
        r = codec.compression
        device = self._device()
        with torch.autocast(device.type, enabled=False):  # the DC-AE runs in its weights' dtype
            context = codec.encode(prompt.context.to(device)).to(dtype) if tc else None
        shape = (num_frames, codec.latent_channels, h // r, w // r)
        if isinstance(generator, (list, tuple)):
            if len(generator) != b:
                raise ValueError(f"{len(generator)} generators for a batch of {b}")
            # One noise draw per sample from its own generator: results do not depend on batching.
            noise = torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in generator])
        else:
            noise = torch.randn((b, *shape), generator=generator, dtype=dtype)
        cond = self.net.cfg.condition
        labels = prompt.labels if cond == "label" else None
        actions = prompt.actions if cond == "action" else None

        def decode(latents: Tensor) -> Tensor:
            with torch.autocast(device.type, enabled=False):
                return codec.decode(latents).float()

        if not self.model_config.sliding_window:
            latents = rollout(self.net.eval(), context, num_frames, self.sampler, noise=noise, labels=labels,
                              actions=actions, latent_dtype=dtype)
            return decode(latents[:, tc:])
        window = self.net.cfg.short_term_ctx_winsize
        chunk = max(1, window // 2)
        seq = context if context is not None else noise[:, :0].to(device)
        done = 0
        while done < num_frames:
            n = min(chunk, num_frames - done)
            keep = min(seq.shape[1], window - n)  # context frames this chunk sees
            first = seq.shape[1] - keep  # absolute index of the first of them
            acts = actions[:, first:first + keep + n] if actions is not None else None
            out = rollout(self.net.eval(), seq[:, first:] if keep else None, n, self.sampler,
                          noise=noise[:, done:done + n], labels=labels, actions=acts, latent_dtype=dtype)
            seq = torch.cat([seq, out[:, keep:]], dim=1)
            done += n
        return decode(seq[:, tc:])

    @torch.no_grad()
    def reconstruct(self, context: Tensor) -> Tensor:
        """The context as FAR's pipeline shows it: encoded exactly as ``sample`` encodes it, decoded
        as the official pipeline decodes context and generated latents together (the codec works
        frame by frame, so decoding the context apart gives the same frames)."""
        device = next(self.net.parameters()).device
        return self.codec.decode(self.codec.encode(context.to(device))).float()

    def cost(self, clip: Clip) -> Cost:
        cfg = self.net.cfg
        r = self.codec.compression
        hw = (clip.height // r, clip.width // r)
        s = sampling_cost(cfg, clip.context_frames, clip.frames - clip.context_frames, self.sampler.num_steps,
                          hw, use_cache=self.sampler.use_cache,
                          guidance=self.sampler.guidance_scale > 1 and cfg.condition != "none")
        return Cost(params=count_parameters(self.net), train_flops_per_clip=training_flops(cfg, clip.frames, hw),
                    sample_flops_per_clip=s.flops, network_calls_per_clip=s.network_calls,
                    cache_bytes=cache_bytes(cfg, s.peak_cache_tokens),
                    notes=f"codec {self.model_config.codec} (not counted)")


def far_config(variant: str, task: Task, scale: str, **overrides) -> FARModelConfig:
    """The scale's default config with ``model.<field>=`` overrides; names, types and ranges checked."""
    return apply_options(default_config(variant, task, scale), overrides, "model")


def build_far_model(variant: str, task: Task, scale: str, **overrides) -> FARVideoModel:
    return FARVideoModel(far_config(variant, task, scale, **overrides), name=variant)
