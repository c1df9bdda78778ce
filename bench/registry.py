"""Explicit registries of models and tasks, resolved once at the CLI boundary."""

from __future__ import annotations

import difflib
from typing import Callable, Mapping, TypeVar

from bench.errors import BenchError
from bench.tasks import TASKS, Task

T = TypeVar("T")


class UnknownName(BenchError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def lookup(kind: str, name: str, table: Mapping[str, T]) -> T:
    """``table[name]``; an unknown name raises with the closest valid names."""
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(sorted(table))}"
    raise UnknownName(f"unknown {kind} {name!r}; {hint}")


def _far_factory(variant: str) -> Callable[..., object]:
    def make(**kwargs):
        from bench.models.far import build_far_model
        return build_far_model(variant, **kwargs)
    return make


def _dummy_factory(**kwargs):
    from bench.models.dummy import RepeatLastFrame
    return RepeatLastFrame(**kwargs)


def _video_dit_factory(variant: str) -> Callable[..., object]:
    def make(**kwargs):
        from bench.models.video_dit import build_video_dit_model
        return build_video_dit_model(variant=variant, **kwargs)
    return make


def _token_ar_factory(**kwargs):
    from bench.models.token_ar import build_token_ar_model
    return build_token_ar_model(**kwargs)


# name -> factory(task=Task, scale=str, **overrides) -> VideoModel
MODELS: dict[str, Callable[..., object]] = {
    "far": _far_factory("far"),
    "far_sliding": _far_factory("far_sliding"),
    "video_dit": _video_dit_factory("video_dit"),
    "video_dit_alt": _video_dit_factory("video_dit_alt"),
    "token_ar": _token_ar_factory,
    "dummy": _dummy_factory,
}


def _config(module: str, function: str, **fixed) -> Callable[..., object]:
    def make(**kwargs):
        import importlib
        return getattr(importlib.import_module(module), function)(**fixed, **kwargs)
    return make


def _dummy_config(task: Task | None = None, scale: str | None = None, **options) -> None:
    from bench.models.dummy import RepeatLastFrame
    RepeatLastFrame(task=task, scale=scale, **options)  # no options: raises for any


# name -> config(task=Task, scale=str, **overrides) -> the model's checked config dataclass (without
# building the network), so every model option is validated before any work starts
MODEL_CONFIGS: dict[str, Callable[..., object]] = {
    "far": _config("bench.models.far", "far_config", variant="far"),
    "far_sliding": _config("bench.models.far", "far_config", variant="far_sliding"),
    "video_dit": _config("bench.models.video_dit", "video_dit_config", variant="video_dit"),
    "video_dit_alt": _config("bench.models.video_dit", "video_dit_config", variant="video_dit_alt"),
    "token_ar": _config("bench.models.token_ar", "token_ar_config"),
    "dummy": _dummy_config,
}


def get_task(name: str) -> Task:
    return lookup("task", name, TASKS)


def get_model_factory(name: str) -> Callable[..., object]:
    return lookup("model", name, MODELS)
