"""DC-AE, the deep-compression autoencoder FAR works in (32 latent channels; 8x, 16x, 32x).

The official autoencoder is diffusers' ``AutoencoderDC`` (diffusers 0.32) under another class name,
with identical modules and state-dict keys, so we use diffusers' class directly (pinned; the parity
case ``E_dcae`` checks it). ``LatentCodec`` adds the video conventions of the FAR pipeline: pixels in
[0, 1] are encoded from ``2x - 1`` frame by frame, latents are multiplied by ``scaling_factor``, and
decoding returns ``clamp(y / 2 + 0.5, 0, 1)``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import torch
from torch import Tensor, nn

_COMMON: dict[str, Any] = {
    "_class_name": "AutoencoderDC",
    "attention_head_dim": 32,
    "downsample_block_type": "pixel_unshuffle",
    "upsample_block_type": "pixel_shuffle",
    "in_channels": 3,
    "latent_channels": 32,
    "scaling_factor": 0.2889,
}


def _dcae_config(stages: int) -> dict[str, Any]:
    """Official ``options/model_cfg/dcae/model_{8,16,32}x_c32_config.json`` (3 + 1, 2 or 3 ViT stages)."""
    vit = stages - 3
    return {
        **_COMMON,
        "encoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * vit,
        "decoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * vit,
        "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024][:stages],
        "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024][:stages],
        "encoder_layers_per_block": [0, 4, 8, 2, 2, 2][:stages],
        "decoder_layers_per_block": [0, 5, 10, 2, 2, 2][:stages],
        "encoder_qkv_multiscales": [[] for _ in range(stages)],
        "decoder_qkv_multiscales": [[] for _ in range(stages)],
        "decoder_norm_types": ["batch_norm"] * 3 + ["rms_norm"] * vit,
        "decoder_act_fns": ["relu"] * 3 + ["silu"] * vit,
    }


# Spatial compression -> config. 8x: 64 px -> 8x8 latents (DMLab, BAIR, UCF-64); 16x: Minecraft-128.
DCAE_CONFIGS: dict[str, dict[str, Any]] = {
    "dcae-8x": _dcae_config(4),
    "dcae-16x": _dcae_config(5),
    "dcae-32x": _dcae_config(6),
}


def build_dcae(config: str | Mapping[str, Any] | os.PathLike) -> nn.Module:
    """A diffusers ``AutoencoderDC`` from a preset name, a config dict, or a JSON config file."""
    from diffusers import AutoencoderDC

    if isinstance(config, str) and config in DCAE_CONFIGS:
        cfg = DCAE_CONFIGS[config]
    elif isinstance(config, Mapping):
        cfg = dict(config)
    else:
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise ValueError(f"unknown DC-AE config {config!r}: not one of {sorted(DCAE_CONFIGS)} nor a file")
        with open(path) as f:
            cfg = json.load(f)
    return AutoencoderDC.from_config(cfg)


class LatentCodec(nn.Module):
    """Pixels (B, T, 3, H, W) in [0, 1] <-> scaled latents (B, T, C, H/r, W/r), frame by frame."""

    def __init__(self, vae: nn.Module, frames_per_chunk: int = 64):
        super().__init__()
        self.vae = vae
        self.frames_per_chunk = frames_per_chunk

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def compression(self) -> int:
        return 2 ** (len(self.vae.config.encoder_block_out_channels) - 1)

    def _chunks(self, x: Tensor, fn) -> Tensor:
        return torch.cat([fn(x[i:i + self.frames_per_chunk])
                          for i in range(0, x.shape[0], self.frames_per_chunk)])

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        b, t = video.shape[:2]
        dtype = next(self.vae.parameters()).dtype
        flat = (video * 2 - 1).flatten(0, 1).to(dtype)
        z = self._chunks(flat, lambda x: self.vae.encode(x).latent)
        return (z * self.scaling_factor).unflatten(0, (b, t))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        b, t = latents.shape[:2]
        dtype = next(self.vae.parameters()).dtype
        flat = ((1 / self.scaling_factor) * latents).flatten(0, 1).to(dtype)
        y = self._chunks(flat, lambda z: self.vae.decode(z).sample)
        return (y / 2 + 0.5).clamp(0, 1).unflatten(0, (b, t))


class PixelUnshuffleCodec(nn.Module):
    """A lossless, parameter-free stand-in for the DC-AE: ``pixel_unshuffle`` of ``2x - 1``.

    An r x r block of pixels becomes one latent position with 3 r^2 channels, so the transformer
    sees the same token grid as with an r-times DC-AE. Used where no trained autoencoder exists
    (quick CPU runs); results are then not comparable with DC-AE latents and are labelled so.
    """

    def __init__(self, factor: int = 8):
        super().__init__()
        self.factor = factor

    @property
    def latent_channels(self) -> int:
        return 3 * self.factor ** 2

    @property
    def compression(self) -> int:
        return self.factor

    def encode(self, video: Tensor) -> Tensor:
        flat = torch.nn.functional.pixel_unshuffle(video.flatten(0, 1) * 2 - 1, self.factor)
        return flat.unflatten(0, video.shape[:2])

    def decode(self, latents: Tensor) -> Tensor:
        flat = torch.nn.functional.pixel_shuffle(latents.flatten(0, 1), self.factor)
        return (flat / 2 + 0.5).clamp(0, 1).unflatten(0, latents.shape[:2])


def build_codec(name: str, vae_weights: str | os.PathLike | None = None) -> nn.Module:
    """A frozen latent codec by name: ``dcae-8x|16x|32x`` (weights from ``vae_weights``, an official
    or diffusers-format state dict) or ``unshuffle<r>`` (lossless pixel-unshuffle by ``r``)."""
    if name.startswith("unshuffle"):
        codec: nn.Module = PixelUnshuffleCodec(int(name.removeprefix("unshuffle") or 8))
    else:
        vae = build_dcae(name).eval()
        if vae_weights:
            from far.official import read_state_dict
            vae.load_state_dict(read_state_dict(vae_weights), strict=True)
        codec = LatentCodec(vae)
    return codec.requires_grad_(False)
