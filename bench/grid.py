"""Pictures of what a run produced: PNG grids (context | prediction over ground truth) and, for the
long-context tasks, per-frame PSNR/SSIM curves of every model on the task with seen/new marked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from bench.paths import replacing

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


SEEN_COLOUR, NEW_COLOUR = (40, 160, 60), (235, 140, 20)  # marks under ground-truth frames
MARK = 4  # height of the seen/new mark
CHAR_W = 6  # width of a character of PIL's default font, for wrapping


def pick_frames(context: int, predicted: int, show_context: int = 2, every: int = 4) -> tuple[list[int], list[int]]:
    """The last ``show_context`` context frames and every ``every``-th predicted frame (from the first)."""
    ctx = list(range(max(0, context - show_context), context))
    return ctx, list(range(0, predicted, max(1, every)))


def _lines(indices: list[int], per_line: int) -> list[list[int]]:
    return [indices[i:i + per_line] for i in range(0, len(indices), per_line)] or [[]]


def render_grid(context: Tensor, prediction: Tensor, truth: Tensor, path: Path, title: str = "",
                max_videos: int = 4, every: int = 4, seen: np.ndarray | None = None,
                per_line: int = 16) -> Path:
    """Save a grid: per video, rows of 'context | prediction' each with 'context | ground truth' under
    it, showing every ``every``-th predicted frame (long rollouts wrap after ``per_line`` frames).

    ``context`` (V, Tc, C, H, W), ``prediction`` and ``truth`` (V, Tp, C, H, W), all in [0, 1];
    ``seen`` (V, Tp) bool marks each ground-truth frame green (its view was in the context) or
    orange (new). Written atomically.
    """
    v = min(max_videos, prediction.shape[0])
    ctx_idx, pred_idx = pick_frames(context.shape[1], prediction.shape[1], every=every)
    scale = max(1, MIN_FRAME // prediction.shape[-1])
    frame_w = prediction.shape[-1] * scale
    blocks = []  # (label, block, context frames in it, seen marks or None)
    for i in range(v):
        for j, idx in enumerate(_lines(pred_idx, per_line)):
            ctx = ctx_idx if j == 0 else []
            where = f"predicted frames {idx[0]}..{idx[-1]} every {every}" if idx else "no predicted frames"
            for name, future in (("prediction", prediction[i]), ("ground truth", truth[i])):
                frames = torch.cat([context[i, ctx], future[idx]]) if ctx else future[idx]
                label = (f"video {i}: {name}, " + (f"context {ctx[0]}..{ctx[-1]} | " if ctx else "") + where)
                marks = None
                if name == "ground truth" and seen is not None:
                    marks = [None] * len(ctx) + [bool(seen[i, k]) for k in idx]
                blocks.append((label, _frames_row(frames), len(ctx), marks))
    width = max(b.shape[1] for _, b, _, _ in blocks)
    legend = "red rule: end of context"
    if seen is not None:
        legend += "; bar under ground truth: green = view seen in the context, orange = new view"
    chars = max(40, width // CHAR_W)
    header = [(line, (0, 0, 0)) for line in textwrap.wrap(title, chars)]
    header += [(line, (90, 90, 90)) for line in textwrap.wrap(legend, chars)]
    height = sum(b.shape[0] + BAND + (MARK + 2 if m is not None else 0) for _, b, _, m in blocks)
    height += len(header) * BAND + 4
    canvas = Image.new("RGB", (width + 8, height), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (line, colour) in enumerate(header):
        draw.text((4, 1 + k * BAND), line, fill=colour)
    y = len(header) * BAND + 4
    for label, block, n_ctx, marks in blocks:
        draw.text((4, y), label, fill=(60, 60, 60))
        y += BAND
        canvas.paste(Image.fromarray(block), (4, y))
        if n_ctx:  # a red rule between context and the future
            x = 4 + n_ctx * (frame_w + GAP) - GAP // 2 - 1
            draw.line([(x, y), (x, y + block.shape[0] - 1)], fill=(220, 0, 0), width=2)
        y += block.shape[0]
        if marks is not None:
            for k, mark in enumerate(marks):
                if mark is not None:
                    x0 = 4 + k * (frame_w + GAP)
                    draw.rectangle([x0, y + 1, x0 + frame_w - 1, y + MARK], fill=SEEN_COLOUR if mark else NEW_COLOUR)
            y += MARK + 2
    path = Path(path)
    with replacing(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def grid_for_store(task, dataset, store: Path, path: Path, model: str, scale: str, videos: int = 4,
                   every: int = 4) -> Path:
    """The grid of a sample store: the first ``videos`` videos of the first part and seed, first
    trajectory, with seen/new marks on the long-context tasks."""
    from bench.evaluate import (is_generation, num_samples, quantized_clip, read_trajectories, seen_frames,
                                splits_memory)
    part = task.parts[0]
    tc, tp = part.context_frames, part.predict_frames
    chosen = range(min(videos, num_samples(task, dataset), len(dataset)))
    truth = torch.stack([quantized_clip(dataset, v, tc + tp) for v in chosen])
    pred = torch.stack([read_trajectories(task, part, store, task.seeds[0], v)[0] for v in chosen])
    seen = None
    if splits_memory(task, part) and not is_generation(part):
        seen = np.stack([seen_frames(dataset[v], part, task.dataset, truth[i])[0] for i, v in enumerate(chosen)])
    title = (f"{model} on {task.name} ({scale}), part {part.name}: {tc} context -> {tp} predicted frames; "
             f"every {every}th predicted frame (0 = first predicted)")
    return render_grid(truth[:, :tc], pred, truth[:, tc:], path, title=title, max_videos=videos, every=every,
                       seen=seen)


# ----------------------------------------------------------------------------- per-frame curves

CURVE_METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"))


def render_curves(records: list, path: Path, highlight: str | None = None) -> Path:
    """PSNR and SSIM against the predicted frame's index, one line per model (the newest record of
    each), over a band showing the fraction of videos whose frame at that index shows a view the
    context already showed. ``records``: run records of one task, scale and data."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    newest: dict[str, object] = {}
    for r in records:
        if all((r.metrics.get(k) or {}).get("per_frame") for k, _ in CURVE_METRICS):
            if r.model not in newest or (r.finished or "") >= (newest[r.model].finished or ""):
                newest[r.model] = r
    if not newest:
        raise ValueError("no record with per-frame psnr and ssim to draw")
    models = sorted(newest, key=lambda m: (m != highlight, m == "dummy", m))
    first = newest[models[0]]
    split = first.metrics["psnr"].get("split") or {}
    frac = np.array(split.get("seen_per_frame") or [], float)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes[:2], CURVE_METRICS):
        for x, f in enumerate(frac):  # shade: share of videos where this frame's view was seen
            if f > 0:
                ax.axvspan(x - 0.5, x + 0.5, color="tab:green", alpha=0.25 * f, lw=0)
        for i, model in enumerate(models):
            m = newest[model].metrics[key]
            y = np.array(m["per_frame"], float)
            parts = [f"{m['mean']:.3g}"]
            for s in ("seen", "new"):
                if (m.get(s) or {}).get("mean") is not None:
                    parts.append(f"{s} {m[s]['mean']:.3g}")
            ci = (m.get("vs_reference") or {}).get("ci")
            if ci:
                parts.append(f"vs dummy [{ci[0]:+.2g}, {ci[1]:+.2g}]")
            style = "--" if model == "dummy" else "-"
            ax.plot(np.arange(len(y)), y, style, marker="o", ms=3, color=colours[i % len(colours)],
                    lw=2.2 if model == highlight else 1.3, label=f"{model}: {', '.join(parts)}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    ax = axes[2]
    if len(frac):
        ax.bar(np.arange(len(frac)), frac, color="tab:green", alpha=0.6, width=1.0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("seen\nfraction")
    ax.set_xlabel("predicted frame index (0 = first frame after the context)")
    ax.grid(alpha=0.3)
    videos = len((first.metrics["psnr"].get("per_video") or [[]])[0])
    rule = split.get("rule", "none")
    fig.suptitle(f"{first.task} ({first.scale}, {first.data} data, protocol {first.task_hash}): per predicted frame, "
                 f"mean over {videos} videos\ngreen band and bars: share of videos whose frame shows a view the "
                 f"context showed (rule {rule})\nlegend: mean over all frames, over seen frames, over new frames; "
                 f"95% interval of the difference to dummy", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def has_curves(metrics: dict) -> bool:
    """Whether a run's metrics have per-frame curves with a seen/new split (the long-context tasks)."""
    return all(isinstance(metrics.get(k), dict) and metrics[k].get("per_frame") for k, _ in CURVE_METRICS) \
        and any(isinstance(m, dict) and "split" in m for m in metrics.values())


def curve_path(grid: Path) -> Path:
    """The per-frame curve next to a grid: ``<grid stem>__curve.png``."""
    return Path(grid).with_name(Path(grid).stem + "__curve.png")


def render_task_curves(records_dir: Path, record) -> Path:
    """``record``'s curve PNG (``record.extra["curve"]``, relative to ``records_dir``) with one line per
    model that has a record in ``records_dir`` on the same protocol, scale and data (the newest of each)."""
    from bench.results import load_records
    key = lambda r: (r.task_hash, r.scale, r.data, r.data_root)  # noqa: E731
    same = [r for r in load_records(records_dir) if key(r) == key(record)]
    if not any(r.model == record.model for r in same):
        same.append(record)
    return render_curves(same, Path(records_dir) / record.extra["curve"], highlight=record.model)
