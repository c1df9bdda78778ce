"""FAR-Long: long short-term context.

The network side lives in :class:`far.model.FAR` (``context_patch_size`` set): the last
``short_term_ctx_winsize`` frames are the short-term window at full patches; every earlier frame is
long-term context, patchified at ``context_patch_size``, embedded by ``context_embedder``, attended
through the ``add_*`` projections, with row/column RoPE ids scaled onto the full-resolution grid and
its timestep doubled (official quirk). Decoding uses :class:`far.cache.MultiLevelKVCache`.

This module holds the training-side pieces: the official random clip draw and token accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from far.model import FARConfig


@dataclass(frozen=True)
class ClipWindow:
    start: int
    length: int
    num_long_term: int  # leading frames of the clip that are long-term context (always clean)


def sample_long_context_clip(num_frames: int, window: int, generator: torch.Generator | None = None
                             ) -> ClipWindow:
    """The official ``training_type: long_context`` draw: one clip length for the whole batch,
    uniform in [window, num_frames) (the upper end excluded, as ``torch.randint``), and a uniform start."""
    if num_frames <= window:
        raise ValueError(f"long-context training needs videos longer than the window ({window}), got {num_frames}")
    length = int(torch.randint(window, num_frames, (1,), generator=generator))
    start = int(torch.randint(0, num_frames - length + 1, (1,), generator=generator))
    return ClipWindow(start=start, length=length, num_long_term=length - window)


def tokens_per_step(cfg: FARConfig, num_frames: int, latent_hw: tuple[int, int]) -> int:
    """Sequence length the transformer sees for ``num_frames`` frames (FAR-Long compresses old frames)."""
    h, w = latent_hw
    full = (h // cfg.patch_size) * (w // cfg.patch_size)
    if not cfg.is_long or num_frames < cfg.short_term_ctx_winsize:
        return num_frames * full
    cp = cfg.context_patch_size
    n_long = num_frames - cfg.short_term_ctx_winsize
    return n_long * (h // cp) * (w // cp) + cfg.short_term_ctx_winsize * full
