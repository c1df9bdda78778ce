"""Typed, ranged configuration dataclasses: one generic validator for all of them.

Every config dataclass of the harness (``RunConfig``, ``TrainConfig``, the model configs) says
what its fields accept in the field's metadata, next to the default, so that this module (and a
structured-config layer later) can check any of them the same way::

    steps: int = field(default=1000, metadata={"ge": 1})
    scale: str = field(default="quick", metadata={"choices": ("quick", "paper")})

Metadata keys: ``ge``, ``gt``, ``le``, ``lt`` (bounds; for tuples, of every element), ``choices``
(allowed values; for tuples, of every element), ``identity`` (False: the field does not change what
a training run produces, e.g. progress bars and logging; see :func:`identity`), ``path`` (True: a
file or folder, written portably in records), ``cli`` (False: not an option of the command line or
of a recipe; set by the program). ``bench.compose`` builds the Hydra/OmegaConf structured configs
of the command line from the same dataclasses. Types come from the annotations: ``int``
(not bool), ``float`` (an int is accepted), ``bool``, ``str``, ``X | None``, ``tuple[float, ...]``,
``dict``.

``validate(obj, where)`` raises :class:`bench.errors.ConfigError` with one line naming the field,
the expectation and the value (``train.steps=-1: expected an integer >= 1``);
``apply_options(obj, {"steps": 20}, "train")`` checks names and values and returns the updated copy.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from functools import lru_cache
from typing import Any

from bench.errors import ConfigError

BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is tuple:
        inner = _describe(args[0]) if args else "value"
        n = len(args) if args and args[-1] is not Ellipsis else None
        return f"a list of {n if n else 'any number of'} {inner.removeprefix('an ').removeprefix('a ')}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping",
            list: "a list"}.get(tp, getattr(tp, "__name__", str(tp)))


def _range(meta: typing.Mapping) -> str:
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = [f"{sym} {meta[key]}" for key, sym in BOUNDS if key in meta]
    return " and ".join(parts)


def expectation(cls: type, name: str) -> str:
    """``"an integer >= 1"``: what field ``name`` of ``cls`` accepts, in words."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    tp = _hints(cls)[name]
    text, rng = _describe(tp), _range(f.metadata)
    if "choices" in f.metadata:
        return f"{text}, each {rng}" if typing.get_origin(tp) is tuple else rng
    return f"{text} {rng}" if rng else text


def _convert(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, value converted to ``tp``): ints become floats for float fields, lists become tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, v = _convert(a, value)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        fixed = args and args[-1] is not Ellipsis
        if fixed and len(value) != len(args):
            return False, value
        out = []
        for i, v in enumerate(value):
            ok, c = _convert(args[i] if fixed else (args[0] if args else Any), v)
            if not ok:
                return False, value
            out.append(c)
        return True, tuple(out)
    if origin in (dict, list):
        return isinstance(value, origin), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, float(value)
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _in_range(meta: typing.Mapping, value: Any) -> bool:
    if value is None:
        return True
    values = value if isinstance(value, tuple) else (value,)
    if "choices" in meta and any(v not in meta["choices"] for v in values):
        return False
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if v != v:  # NaN is in no range
            return False
        if ("ge" in meta and not v >= meta["ge"]) or ("gt" in meta and not v > meta["gt"]) or \
                ("le" in meta and not v <= meta["le"]) or ("lt" in meta and not v < meta["lt"]):
            return False
    return True


def _show(value: Any) -> str:
    """A value as the command line writes it (``abc``, ``3``, ``[0.9, 1.5]``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return value if isinstance(value, str) and value and " " not in value else repr(value)


def check_field(cls: type, name: str, value: Any, where: str = "") -> Any:
    """``value`` checked (and converted) for field ``name`` of the dataclass ``cls``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    key = f"{where}.{name}" if where else name
    ok, converted = _convert(_hints(cls)[name], value)
    if not ok:
        raise ConfigError(f"{key}={_show(value)}: expected {expectation(cls, name)}, got "
                          f"{'a string' if isinstance(value, str) else type(value).__name__}")
    if not _in_range(f.metadata, converted):
        raise ConfigError(f"{key}={_show(value)}: expected {expectation(cls, name)}")
    return converted


def validate(obj: Any, where: str = "") -> Any:
    """Check every field of the dataclass instance ``obj`` (type and range); returns ``obj``."""
    cls = type(obj)
    for f in dataclasses.fields(cls):
        check_field(cls, f.name, getattr(obj, f.name), where)
    return obj


def apply_options(obj: Any, options: typing.Mapping[str, Any], where: str = "") -> Any:
    """A copy of ``obj`` with ``options`` set; unknown names and bad values raise ConfigError."""
    cls = type(obj)
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {}
    for name, value in options.items():
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"did you mean {where + '.' if where else ''}{close[0]}?" if close else \
                f"valid: {', '.join(names)}"
            raise ConfigError(f"unknown option {where + '.' if where else ''}{name}; {hint}")
        changes[name] = check_field(cls, name, value, where)
    return validate(dataclasses.replace(obj, **changes), where)


def identity(obj: Any) -> dict:
    """The fields of ``obj`` that determine a result (metadata ``identity`` not False), as a dict."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.metadata.get("identity", True)}
