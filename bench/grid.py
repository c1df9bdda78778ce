"""PNG grids of context | prediction | ground truth, for looking at what a run produced."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

GAP = 4  # pixels between frames
BAND = 14  # height of the text band above each block


MIN_FRAME = 96  # small frames are enlarged (nearest neighbour) to at least this many pixels


def _frames_row(frames: Tensor) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> (H', T * (W' + GAP) - GAP, 3) uint8 on a white background."""
    scale = max(1, MIN_FRAME // frames.shape[-1])
    if scale > 1:
        frames = frames.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    t, c, h, w = frames.shape
    if c == 1:
        frames = frames.expand(t, 3, h, w)
    elif c != 3:
        frames = frames[:, :3]
    row = np.full((h, t * (w + GAP) - GAP, 3), 255, np.uint8)
    pix = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i in range(t):
        row[:, i * (w + GAP):i * (w + GAP) + w] = pix[i]
    return row


def pick_frames(context: int, predicted: int, show_context: int = 2, show_predicted: int = 8) -> tuple[list[int], list[int]]:
    """The last few context frames and predicted frames spread evenly (always the first and the last)."""
    ctx = list(range(max(0, context - show_context), context))
    n = min(show_predicted, predicted)
    pred = sorted({round(i * (predicted - 1) / max(1, n - 1)) for i in range(n)}) if predicted else []
    return ctx, pred


def render_grid(context: Tensor, prediction: Tensor, truth: Tensor, path: Path, title: str = "",
                max_videos: int = 4) -> Path:
    """Save a grid: per video, a row 'context | prediction' above a row 'context | ground truth'.

    ``context`` (V, Tc, C, H, W), ``prediction`` and ``truth`` (V, Tp, C, H, W), all in [0, 1].
    Written atomically.
    """
    v = min(max_videos, prediction.shape[0])
    ctx_idx, pred_idx = pick_frames(context.shape[1], prediction.shape[1])
    frame_w = prediction.shape[-1] * max(1, MIN_FRAME // prediction.shape[-1])
    blocks = []
    for i in range(v):
        for name, future in (("prediction", prediction[i]), ("ground truth", truth[i])):
            frames = torch.cat([context[i, ctx_idx], future[pred_idx]]) if ctx_idx else future[pred_idx]
            blocks.append((f"video {i}: context {ctx_idx} | {name} frames {pred_idx}", _frames_row(frames)))
    width = max(b.shape[1] for _, b in blocks)
    height = sum(b.shape[0] + BAND for _, b in blocks) + BAND + 2
    canvas = Image.new("RGB", (width + 8, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 1), title, fill=(0, 0, 0))
    y = BAND + 2
    for label, block in blocks:
        draw.text((4, y), label, fill=(60, 60, 60))
        y += BAND
        canvas.paste(Image.fromarray(block), (4, y))
        if ctx_idx:  # a red rule between context and the future
            x = 4 + len(ctx_idx) * (frame_w + GAP) - GAP // 2 - 1
            draw.line([(x, y), (x, y + block.shape[0] - 1)], fill=(220, 0, 0), width=2)
        y += block.shape[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    try:
        canvas.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
