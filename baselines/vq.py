"""A per-frame VQ tokenizer with finite scalar quantization (FSQ, Mentzer et al. 2023).

A small convolutional autoencoder maps each frame (3, H, W) in [0, 1] to a (h, w) = (H/r, W/r) grid
of latent vectors with ``len(levels)`` channels. FSQ bounds every channel to ``levels[i]`` values and
rounds it (straight-through gradient), so the codebook is the implicit grid of
``prod(levels)`` points: no codebook loss, no commitment loss, no dead codes to revive. A code is
the mixed-radix number of its per-channel integers (:meth:`FSQ.codes_to_indices`).

Layout: config, FSQ, blocks, the tokenizer, analytic cost, presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class VQConfig:
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels per latent channel: 1000 codes
    downsample: int = 8  # spatial compression r (a power of 2): 64 px -> 8 x 8 tokens
    channels: int = 64  # width at full resolution; doubled per downsampling, at most 4x
    in_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        if self.downsample < 1 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of 2, got {self.downsample}")
        if any(level < 2 for level in self.levels):
            raise ValueError(f"every FSQ level must be >= 2, got {self.levels}")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel width at each resolution, full resolution first."""
        stages = int(math.log2(self.downsample))
        return tuple(self.channels * min(2 ** i, 4) for i in range(stages + 1))


# ----------------------------------------------------------------------------- FSQ

class FSQ(nn.Module):
    """Finite scalar quantization over the last dimension (``len(levels)`` channels)."""

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        lv = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), lv[:-1]]), 0),
                             persistent=False)
        self.codebook_size = math.prod(levels)

    @property
    def _half_width(self) -> Tensor:
        return (self.levels // 2).float()

    def bound(self, z: Tensor) -> Tensor:
        """Squash every channel into (-L/2, L/2) so that rounding yields exactly L integer values."""
        lv = self.levels.float()
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: Tensor) -> Tensor:
        """Quantized codes in [-1, 1] (straight-through gradient), same shape as ``z``."""
        bounded = self.bound(z.float())
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return (rounded / self._half_width).to(z.dtype)

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Quantized codes (..., D) -> integer ids (...) in [0, codebook_size)."""
        digits = torch.round(codes.float() * self._half_width + self._half_width).long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Integer ids (...) -> quantized codes (..., D) in [-1, 1]."""
        digits = (indices[..., None] // self.basis) % self.levels
        return (digits.float() - self._half_width) / self._half_width


# ----------------------------------------------------------------------------- blocks

def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2, self.conv2 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """conv_in, then per halving a ResBlock and a stride-2 conv, a middle ResBlock, conv_out."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        w = cfg.widths
        self.conv_in = nn.Conv2d(cfg.in_channels, w[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i in range(len(w) - 1):
            layers += [ResBlock(w[i]), nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1)]
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(w[-1])
        self.norm_out, self.conv_out = _norm(w[-1]), nn.Conv2d(w[-1], len(cfg.levels), 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """The mirror image: conv_in, middle ResBlock, per doubling an upsampling conv and a ResBlock, conv_out."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        w = cfg.widths
        self.conv_in = nn.Conv2d(len(cfg.levels), w[-1], 3, padding=1)
        self.mid = ResBlock(w[-1])
        layers: list[nn.Module] = []
        for i in reversed(range(len(w) - 1)):
            layers += [Upsample(w[i + 1], w[i]), ResBlock(w[i])]
        self.up = nn.Sequential(*layers)
        self.norm_out, self.conv_out = _norm(w[0]), nn.Conv2d(w[0], cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------- the tokenizer

class FrameTokenizer(nn.Module):
    """Videos (B, T, 3, H, W) in [0, 1] <-> token ids (B, T, H/r, W/r), frame by frame."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = FSQ(cfg.levels)
        self.decoder = Decoder(cfg)

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def compression(self) -> int:
        return self.cfg.downsample

    def _check(self, video: Tensor) -> None:
        r = self.cfg.downsample
        if video.dim() != 5 or video.shape[-1] % r or video.shape[-2] % r:
            raise ValueError(f"expected (B, T, C, H, W) with H, W divisible by {r}, got {tuple(video.shape)}")

    def quantize(self, video: Tensor) -> Tensor:
        """Quantized codes (B, T, h, w, D) in [-1, 1], straight-through differentiable."""
        self._check(video)
        z = self.encoder(video.flatten(0, 1) * 2 - 1)  # (BT, D, h, w)
        return self.quantizer(z.movedim(1, -1)).unflatten(0, video.shape[:2])

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes (B, T, h, w, D) -> pixels in [-1, 1] (unclamped; the training target's scale)."""
        y = self.decoder(codes.flatten(0, 1).movedim(-1, 1))
        return y.unflatten(0, codes.shape[:2])

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Token ids (B, T, h, w) int64."""
        return self.quantizer.codes_to_indices(self.quantize(video))

    @torch.no_grad()
    def decode(self, ids: Tensor) -> Tensor:
        """Token ids (B, T, h, w) -> frames (B, T, 3, H, W) in [0, 1]."""
        codes = self.quantizer.indices_to_codes(ids).to(next(self.parameters()).dtype)
        return (self.decode_codes(codes) / 2 + 0.5).clamp(0, 1)

    def reconstruction_loss(self, video: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """MSE of the straight-through reconstruction in [-1, 1], with codebook-usage diagnostics."""
        codes = self.quantize(video)
        recon = self.decode_codes(codes)
        loss = F.mse_loss(recon.float(), video.float() * 2 - 1)
        with torch.no_grad():
            ids = self.quantizer.codes_to_indices(codes)
            counts = torch.bincount(ids.flatten(), minlength=self.codebook_size).float()
            p = counts / counts.sum()
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        return loss, {"codebook_usage": (counts > 0).float().mean(), "perplexity": perplexity}


# ----------------------------------------------------------------------------- analytic cost

def _conv(cin: int, cout: int, pixels: int, k: int = 3) -> float:
    return 2.0 * cin * cout * k * k * pixels


def encode_flops(cfg: VQConfig, height: int, width: int) -> float:
    """Convolution FLOPs to encode one frame (normalisations and activations not counted)."""
    w, px = cfg.widths, height * width
    total = _conv(cfg.in_channels, w[0], px)
    for i in range(len(w) - 1):
        total += 2 * _conv(w[i], w[i], px >> (2 * i)) + _conv(w[i], w[i + 1], px >> (2 * i + 2))
    low = px >> (2 * (len(w) - 1))
    return total + 2 * _conv(w[-1], w[-1], low) + _conv(w[-1], len(cfg.levels), low)


def decode_flops(cfg: VQConfig, height: int, width: int) -> float:
    """Convolution FLOPs to decode one frame."""
    w, px = cfg.widths, height * width
    low = px >> (2 * (len(w) - 1))
    total = _conv(len(cfg.levels), w[-1], low) + 2 * _conv(w[-1], w[-1], low)
    for i in range(len(w) - 1):
        total += _conv(w[i + 1], w[i], px >> (2 * i)) + 2 * _conv(w[i], w[i], px >> (2 * i))
    return total + _conv(w[0], cfg.in_channels, px)


# ----------------------------------------------------------------------------- presets

def _preset(downsample: int, channels: int, levels: tuple[int, ...] = (8, 5, 5, 5)) -> Callable[..., VQConfig]:
    def make(**overrides) -> VQConfig:
        return replace(VQConfig(levels=levels, downsample=downsample, channels=channels), **overrides)
    return make


PRESETS: dict[str, Callable[..., VQConfig]] = {
    "FSQ-8x": _preset(8, 64),  # 64 px -> 8 x 8 tokens per frame, 1000 codes
    "FSQ-16x": _preset(16, 64),  # 128 px -> 8 x 8 tokens per frame
    "FSQ-8x-small": _preset(8, 16),  # quick CPU runs
    "FSQ-16x-small": _preset(16, 16),
    "FSQ-tiny": _preset(16, 4, levels=(5, 3)),  # tests: 15 codes, 4 x 4 tokens per 64 px frame
}
