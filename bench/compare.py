"""Comparing two models on the same videos: paired bootstrap intervals over videos.

Scoring keeps every per-video metric's values per seed (after the trajectory reduction) in its
entry (``per_video[seed][video]``, ``None`` where a video has no value, e.g. no seen frame), for
the whole clip and for the ``seen``/``new`` split of the long-context tasks. Two models scored on
the same task, scale and data have the same videos and seeds, so their difference can be judged
from records (or score entries) alone, without sampling again:

* :func:`paired_bootstrap` resamples videos with replacement (the same draw for both models, and
  for every seed of a video) and gives the percentile interval of the mean difference;
* :func:`add_reference_intervals` attaches, to every per-video metric of a model, the interval of
  its difference to the task's reference model (``dummy``, repeat the last frame);
* :func:`compare_records` / ``python -m bench.compare A.json B.json [--split seen]`` compares any two
  run records the same way (e.g. ``far`` vs ``far_sliding`` on ``seen`` frames), and
  :func:`compare_stores` two sample stores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

REFERENCE_MODEL = "dummy"
RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
SPLITS = ("seen", "new")


def _as_matrix(values: Any, what: str) -> np.ndarray:
    """(V,) or (S, V) values with None for missing -> float (S, V) with NaN."""
    if isinstance(values, np.ndarray):
        arr = values.astype(np.float64)
    else:
        rows = values if len(values) and isinstance(values[0], (list, tuple, np.ndarray)) else [values]
        arr = np.array([[np.nan if x is None else float(x) for x in row] for row in rows], np.float64)
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{what}: expected per-video values (V,) or per seed (S, V), got shape {arr.shape}")
    return arr


def paired_bootstrap(a: Any, b: Any, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> dict:
    """Percentile interval of ``mean(a) - mean(b)`` by a paired bootstrap over videos.

    ``a`` and ``b``: per-video values (V,) or per seed and video (S, V) of the same videos and seeds;
    ``None``/NaN marks a missing value, and a video missing in either (in any seed) is left out of
    both. Each video's difference is averaged over seeds, videos are resampled with replacement
    ``resamples`` times (numpy ``default_rng(seed)``), and the interval is the (1 - level) / 2 and
    (1 + level) / 2 percentiles of the resampled means. Returns ``{"diff", "ci": [lo, hi], "level",
    "resamples", "seed", "videos", "seeds"}``.
    """
    x, y = _as_matrix(a, "a"), _as_matrix(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values must have the same shape (same seeds and videos): {x.shape} vs {y.shape}")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    keep = ~(np.isnan(x).any(0) | np.isnan(y).any(0))
    d = (x[:, keep] - y[:, keep]).mean(0)
    n = d.shape[0]
    out = {"level": level, "resamples": resamples, "seed": seed, "videos": int(n), "seeds": int(x.shape[0])}
    if n == 0:
        return {**out, "diff": None, "ci": None, "empty": "no video has values for both"}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(resamples, n))].mean(1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {**out, "diff": float(d.mean()), "ci": [float(lo), float(hi)]}


def excludes_zero(interval: dict) -> bool:
    ci = interval.get("ci")
    return bool(ci) and (ci[0] > 0 or ci[1] < 0)


def _pairs(entry: dict, ref: dict) -> Iterable[tuple[str | None, Any, Any]]:
    """(split or None, values, reference values) of every per-video series two entries share."""
    if entry.get("per_video") is not None and ref.get("per_video") is not None:
        yield None, entry["per_video"], ref["per_video"]
    for split in SPLITS:
        e, r = entry.get(split) or {}, ref.get(split) or {}
        if e.get("per_video") is not None and r.get("per_video") is not None:
            yield split, e["per_video"], r["per_video"]


def compare_entries(entry: dict, ref: dict, reference: str, **kw) -> dict[str | None, dict]:
    """Intervals of ``entry - ref`` for the whole clip (key None) and each split both have."""
    out = {}
    for split, a, b in _pairs(entry, ref):
        try:
            out[split] = {"reference": reference, **paired_bootstrap(a, b, **kw)}
        except ValueError as e:
            out[split] = {"reference": reference, "unavailable": str(e)}
    return out


def add_reference_intervals(metrics: dict, reference_metrics: dict | None, reference: str = REFERENCE_MODEL,
                            why_missing: str = "", **kw) -> dict:
    """Attach ``vs_reference`` (and ``seen``/``new``'s ``vs_reference``) to every per-video metric of
    ``metrics`` (a ``score_store`` result), in place; returns ``metrics``. Without reference metrics
    the field says why (``why_missing``)."""
    for key, entry in metrics.items():
        if not isinstance(entry, dict) or entry.get("per_video") is None:
            continue
        ref = (reference_metrics or {}).get(key)
        if not isinstance(ref, dict) or ref.get("per_video") is None:
            reason = why_missing or f"no per-video {key} values of {reference} to compare with"
            entry["vs_reference"] = {"reference": reference, "unavailable": reason}
            continue
        for split, interval in compare_entries(entry, ref, reference, **kw).items():
            (entry if split is None else entry[split])["vs_reference"] = interval
    return metrics


def _load(path_or_record) -> Any:
    if isinstance(path_or_record, (str, Path)):
        from bench.results import RunRecord
        return RunRecord.from_dict(json.loads(Path(path_or_record).read_text()))
    return path_or_record


def compare_records(a, b, metrics: Iterable[str] | None = None, split: str | None = None, **kw) -> dict[str, dict]:
    """Paired-bootstrap intervals of record ``a`` minus record ``b`` (``RunRecord`` or paths) per metric
    (every per-video metric both have, or ``metrics``), on the whole clip or on a ``split``.

    The records must come from the same protocol (task hash), scale and data, so that their videos and
    seeds are the same ones."""
    ra, rb = _load(a), _load(b)
    for field in ("task_hash", "scale", "data"):
        if getattr(ra, field) != getattr(rb, field):
            raise ValueError(f"records differ in {field}: {getattr(ra, field)!r} vs {getattr(rb, field)!r}; "
                             "only runs of the same protocol, scale and data share their videos")
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    keys = list(metrics) if metrics is not None else [k for k, e in ra.metrics.items()
                                                        if isinstance(e, dict) and e.get("per_video") is not None]
    out = {}
    for key in keys:
        ea, eb = ra.metrics.get(key), rb.metrics.get(key)
        if not isinstance(ea, dict) or not isinstance(eb, dict):
            raise KeyError(f"metric {key!r} is not in both records")
        if split is not None:
            ea, eb = ea.get(split) or {}, eb.get(split) or {}
        if ea.get("per_video") is None or eb.get("per_video") is None:
            out[key] = {"unavailable": f"no per-video {key}{' ' + split if split else ''} values in both records"}
            continue
        out[key] = {"a": ra.model, "b": rb.model, "split": split or "all",
                    **paired_bootstrap(ea["per_video"], eb["per_video"], **kw)}
    return out


def compare_stores(task, dataset, store_a, store_b, split: str | None = None, device="cpu", **kw) -> dict[str, dict]:
    """The same comparison straight from two sample stores of ``task`` (e.g. ``far`` vs ``far_sliding``):
    both are scored (``bench.evaluate.score_store``, no model needed), then compared per metric."""
    from bench.evaluate import score_store
    a, b = (score_store(task, dataset, s, device=device, log=lambda _: None) for s in (store_a, store_b))
    out = {}
    for key, ea in a.items():
        eb = b.get(key)
        if not isinstance(eb, dict) or ea.get("per_video") is None or eb.get("per_video") is None:
            continue
        if split is not None:
            ea, eb = ea.get(split) or {}, eb.get(split) or {}
            if ea.get("per_video") is None or eb.get("per_video") is None:
                out[key] = {"unavailable": f"no per-video {key} {split} values in both stores"}
                continue
        out[key] = {"split": split or "all", **paired_bootstrap(ea["per_video"], eb["per_video"], **kw)}
    return out


def format_interval(interval: dict, digits: int = 3) -> str:
    """``[+0.8, +1.9]``: the interval of the difference, signed."""
    ci = interval.get("ci")
    if not ci:
        return "[n/a]"
    return f"[{ci[0]:+.{digits}g}, {ci[1]:+.{digits}g}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description="Paired-bootstrap interval of "
                                     "A minus B per metric, over the videos both run records scored.")
    parser.add_argument("a", help="run record of model A (results/runs/*.json)")
    parser.add_argument("b", help="run record of model B")
    parser.add_argument("--split", choices=SPLITS, default=None, help="compare on seen or new frames only")
    parser.add_argument("--metric", action="append", help="metric key (default: every per-video metric)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    result = compare_records(args.a, args.b, args.metric, args.split, resamples=args.resamples, seed=args.seed)
    for key, r in result.items():
        if "unavailable" in r:
            print(f"{key}: unavailable ({r['unavailable']})")
            continue
        verdict = "excludes 0" if excludes_zero(r) else "includes 0"
        print(f"{key} ({r['split']}): {r['a']} - {r['b']} = {r['diff']:+.4g}, {int(r['level'] * 100)}% CI "
              f"{format_interval(r, 4)} over {r['videos']} videos x {r['seeds']} seeds ({verdict})")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
