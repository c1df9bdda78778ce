"""The dummy model: repeats the last context frame. Makes every harness path testable without weights."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Clip, Cost, Prompt, VideoBatch
from bench.errors import ConfigError


class RepeatLastFrame:
    """Predicts that nothing moves (a gray frame when there is no context). No parameters, no training."""

    name = "dummy"
    conditions = frozenset({"label", "action", "covariates"})  # accepted and ignored
    trainable = False

    def __init__(self, task: object = None, scale: object = None, **options: object):
        if options:  # nothing to configure: an option here is a mistake, not something to ignore
            raise ConfigError(f"unknown option(s) {', '.join(f'model.{k}' for k in sorted(options))}: the dummy "
                              "model has no options")

    def training_loss(self, batch: VideoBatch) -> tuple[Tensor, dict[str, Tensor]]:
        zero = batch.video.new_zeros(())
        return zero, {}

    def sample(self, prompt: Prompt, num_frames: int, generator: torch.Generator | list[torch.Generator]) -> Tensor:
        ctx = prompt.context
        b, _, c, h, w = ctx.shape
        last = ctx[:, -1:] if ctx.shape[1] else ctx.new_full((b, 1, c, h, w), 0.5)
        return last.expand(b, num_frames, c, h, w).clone()

    def cost(self, clip: Clip) -> Cost:
        return Cost(params=0, train_flops_per_clip=0.0, sample_flops_per_clip=0.0, network_calls_per_clip=0,
                    notes="copies the last context frame")

    def config(self) -> dict:
        return {}
