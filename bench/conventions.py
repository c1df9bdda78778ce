"""What a run record states about the conventions a run actually followed, beyond the task spec.

``record_conventions`` gives the record's ``extra`` fields:

- ``precision``: the sampling precision actually used. FAR-protocol tasks ask for bf16
  (``Task.precision``); FAR's adapter uses it on CUDA and falls back to fp32 elsewhere, e.g.
  ``"fp32 (bf16 requested; CPU)"``; a model without a bf16 path says so.
- ``seed_kind``: what the protocol's seeds are (``Task.seed_kind``), and ``seed_note`` when they are
  training seeds, which a single ``bench run`` (one model) can only use as sampling seeds.
- ``train_recipe``: the official training recipe (``bench.recipes``) when the model was trained here.
"""

from __future__ import annotations

import torch

from bench.tasks import Task


def sampling_precision(task: Task, model, device: torch.device | str) -> str:
    """The precision ``model`` samples ``task`` in on ``device``, as the record states it."""
    if hasattr(model, "sampling_precision"):
        return model.sampling_precision(device)
    if task.precision == "fp32":
        return "fp32"
    return f"fp32 ({task.precision} requested; model {getattr(model, 'name', type(model).__name__)} has no " \
           f"{task.precision} path)"


def seed_note(task: Task) -> str | None:
    if task.seed_kind == "training":
        return (f"the protocol's seeds {list(task.seeds)} are training seeds (one separately trained model per "
                "seed, scores averaged); this run evaluates one model and uses them as sampling seeds")
    return None


def record_conventions(task: Task, scale: str, model, device: torch.device | str, weights: str) -> dict:
    """The record's ``extra`` fields for one evaluated model (see the module doc)."""
    from bench.recipes import recipe_for
    out = {"precision": sampling_precision(task, model, device), "seed_kind": task.seed_kind}
    note = seed_note(task)
    if note:
        out["seed_note"] = note
    if weights.startswith("trained:"):
        applies = ("every field (bench train's defaults; the short-term window for FAR)" if scale == "paper"
                   else "hflip only (the quick scale has its own steps, batch, lr, warm-up and window)")
        out["train_recipe"] = {**recipe_for(task).as_record(), "scale": scale, "applies": applies}
    return out
