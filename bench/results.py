"""Run records with provenance, reported reference numbers, and the leaderboard tables.

A *run record* (:class:`RunRecord`) is one JSON file per (task, model, scale, run) under
``results/runs/``: the task spec and its protocol hash, the model and its config, the weights,
seeds, counts, every metric with its spread over seeds (or why it is unavailable), and where it
ran (git commit, package versions, device, wall time). Records are written atomically and never
edited.

*Reference rows* are the numbers the papers report, transcribed from ``PROTOCOLS.md`` into
``results/reference/<task>.json`` with their source. Values are kept as the strings the papers
print (``"0.090"``, ``"99 ± 5.9"``, ``"66.8%"``) and parsed on load; their protocol hash is the
paper-scale hash of the task they belong to, computed from ``bench.tasks.TASKS`` at load time.

``render_tables`` turns both into one leaderboard per task (markdown, CSV, LaTeX) plus an index.
Rows are grouped into sections by (protocol hash, scale, data): rows of different protocols, or
measured on the procedural stand-in instead of the real data, are never ranked together. Within a
section rows are sorted by the task's primary metric (the first metric of its first part), best
first.

Command line: ``python -m bench table [--records DIR] [--reference DIR] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from bench.paths import portable, portable_text, write_atomic

SCHEMA = 1
REPO = Path(__file__).resolve().parents[1]

# Direction of every metric the tasks use (kept in step with bench.metrics.reduce.HIGHER_IS_BETTER;
# a test checks that). Tables must render without importing torch, hence the copy.
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True, "ssim": True, "ndvi_psnr": True, "ndvi_ssim": True, "r2": True, "nse": True,
    "outperformance": True,
    "fvd": False, "lpips": False, "mse": False, "rmse": False,
}
METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fvd": "FVD", "mse": "MSE", "rmse": "RMSE",
                 "r2": "R²", "nse": "NSE", "outperformance": "outperf.", "ndvi_psnr": "NDVI PSNR",
                 "ndvi_ssim": "NDVI SSIM"}
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "diffusers", "safetensors", "torchmetrics", "lpips",
            "einops", "av", "pandas", "hydra-core", "triton")


# ----------------------------------------------------------------------------- run records

def _iso(t: float | str | None) -> str | None:
    """Timestamps are stored as ISO 8601 UTC strings; epoch seconds are converted."""
    if t is None or isinstance(t, str):
        return t
    return datetime.fromtimestamp(float(t), tz=timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One evaluation of one model on one task at one scale, with everything needed to trust it.

    ``data`` is ``"real"`` or ``"stand-in"``; ``checkpoint`` says which weights were used:
    ``"sha256:<hex>"`` of a given or official file, ``"trained:<path>:sha256:<hex>"`` when trained
    by this run, ``"none"`` for weightless models. ``metrics`` maps a metric key (``psnr``, or
    ``A:psnr`` where two parts share a metric) to ``{"mean", "std", "n", "values", ...}`` or to
    ``{"unavailable": reason, "provide": command}``. ``config``/``config_hash``: the resolved config
    of the run (empty in records written before configs were recorded, and in rescored ones).
    """

    task: str
    task_spec: dict
    task_hash: str
    scale: str
    data: str
    data_root: str
    model: str
    model_config: dict
    checkpoint: str
    seeds: list
    counts: dict  # videos, trajectories, frames
    metrics: dict
    wall_time_s: float
    started: str | float | None
    finished: str | float | None
    command: str
    git_commit: str | None = None
    git_dirty: bool | None = None
    packages: dict = field(default_factory=dict)
    device: str = ""
    extra: dict = field(default_factory=dict)
    schema: int = SCHEMA
    # the resolved config the run ran with (``bench.experiment.run_document``; ``bench run --config
    # <record>`` runs it again) and its hash (``bench.experiment.config_hash``: finished sweep cells)
    config: dict = field(default_factory=dict)
    config_hash: str = ""

    def __post_init__(self) -> None:
        if self.data not in ("real", "stand-in"):
            raise ValueError(f"RunRecord.data must be 'real' or 'stand-in', not {self.data!r}")
        self.started, self.finished = _iso(self.started), _iso(self.finished)
        self.seeds = list(self.seeds)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        unknown = {k: v for k, v in d.items() if k not in known}
        if unknown:  # written by a newer version: keep, do not drop
            kwargs["extra"] = {**kwargs.get("extra", {}), "unknown_fields": unknown}
        return cls(**kwargs)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def describe_device(device: Any = None) -> str:
    """``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (x86_64, 16 threads)"``."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    if dev.type == "cpu":
        return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    return str(dev)


def collect_provenance(device: Any = None) -> dict:
    """Fields of :class:`RunRecord` that describe where a run happened: git, packages, device.

    ``git_dirty`` is True when tracked files differ from the commit (untracked files are ignored).
    """
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    packages = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in PACKAGES:
        v = _version(dist)
        if v is not None:
            packages[dist] = v
    try:
        import torch
        packages["cuda"] = torch.version.cuda
        dev = describe_device(device)
    except ImportError:
        dev = str(device or "cpu")
    return {"git_commit": commit, "git_dirty": dirty, "packages": packages, "device": dev}


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "x"


def record_filename(record: RunRecord) -> str:
    """``<task>__<model>__<scale>__<timestamp>.json`` (timestamp of ``finished``, UTC)."""
    when = record.finished or record.started
    try:
        stamp = datetime.fromisoformat(when).astimezone(timezone.utc) if when else datetime.now(timezone.utc)
    except ValueError:
        stamp = datetime.now(timezone.utc)
    return f"{_slug(record.task)}__{_slug(record.model)}__{_slug(record.scale)}__{stamp:%Y%m%dT%H%M%SZ}.json"


PATH_FIELDS = ("data_root",)  # fields holding one path (written with bench.paths.portable)
VERBATIM_FIELDS = ("task_spec", "task_hash")  # protocol data: hashed, never rewritten


def _portable_value(value: Any) -> Any:
    if isinstance(value, str):
        return portable(value) if os.path.isabs(value) else portable_text(value)
    if isinstance(value, dict):
        return {k: _portable_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable_value(v) for v in value]
    return value


def portable_record(record: RunRecord) -> RunRecord:
    """A copy of ``record`` that names no path of this machine: every path (and every absolute path
    inside a message, e.g. an asset's location) relative to ``$FARZOO_HOME``, a dataset root
    variable or the repository (``bench.paths.portable``). The protocol fields stay verbatim."""
    d = record.to_dict()
    for key, value in d.items():
        if key in VERBATIM_FIELDS:
            continue
        d[key] = portable(value) if key in PATH_FIELDS and value else _portable_value(value)
    return RunRecord.from_dict(d)


def write_record(record: RunRecord, directory: str | os.PathLike, grid: str | os.PathLike | None = None,
                 curve: bool = False) -> Path:
    """Write ``record`` (made portable) into ``directory`` atomically; never overwrites an existing record.

    ``grid``: an image file rendered for this record (in ``directory/grids``); it is renamed to
    ``grids/<record name>.png`` and ``extra["grid"]`` names it relative to ``directory``, so no run
    overwrites another's grid. ``curve``: the record also gets a per-frame curve, to be rendered at
    ``extra["curve"]`` = ``grids/<record name>__curve.png`` (:func:`bench.grid.render_task_curves`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = record_filename(record)
    record = portable_record(record)
    grids = directory / "grids"
    if grid is not None:
        grids.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = directory / (base if i == 0 else base.replace(".json", f"-{i}.json"))
        grid_path = grids / f"{path.stem}.png"
        if path.exists() or (grid is not None and grid_path.exists()):
            continue
        if grid is not None:
            record.extra = {**record.extra, "grid": f"grids/{grid_path.name}"}
            if curve:
                record.extra["curve"] = f"grids/{path.stem}__curve.png"
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record.to_dict(), f, indent=1, sort_keys=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic and fails if the name is taken
            except FileExistsError:
                continue
            except OSError:  # no hard links here: fall back to rename (not clobber-safe, but atomic)
                if path.exists():
                    continue
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        if grid is not None:
            os.replace(grid, grid_path)  # the name belongs to this record now
        return path
    raise FileExistsError(f"too many records named {base} in {directory}")


def load_record(path: str | os.PathLike) -> RunRecord:
    """One record file; ``extra["record_file"]`` is its name."""
    path = Path(path)
    rec = RunRecord.from_dict(json.loads(path.read_text()))
    rec.extra = {**rec.extra, "record_file": path.name}
    return rec


def load_records(directory: str | os.PathLike, errors: list | None = None) -> list[RunRecord]:
    """Every record in ``directory`` (not recursive; dot-files are temporary and skipped).

    Unreadable files are skipped with a warning; pass a list as ``errors`` to collect them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            rec = RunRecord.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            msg = portable_text(f"{path}: not a run record ({e})")
            warnings.warn(msg, stacklevel=2)
            if errors is not None:
                errors.append(msg)
            continue
        rec.extra = {**rec.extra, "record_file": path.name}
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- reference rows

_REPORTED = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:±\s*(\d+(?:\.\d+)?))?\s*(%?)\s*$")


def parse_reported(text: str) -> tuple[float, float | None, str]:
    """``"99 ± 5.9"`` -> (99.0, 5.9, ""); ``"66.8%"`` -> (66.8, None, "%"); raises on anything else."""
    m = _REPORTED.match(str(text))
    if not m:
        raise ValueError(f"cannot parse reported value {text!r} (expected e.g. '0.090', '99 ± 5.9', '66.8%')")
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None), m.group(3)


@dataclass
class Cell:
    """A table cell: the number (for sorting), its text, and an optional footnote; measured cells may
    carry the 95% interval of the difference to the reference model (``ci``) and seen/new sub-cells."""

    mean: float | None
    std: float | None
    n: int | None
    text: str
    note: str | None = None
    ci: tuple[float, float] | None = None
    splits: dict[str, "Cell"] = field(default_factory=dict)  # "seen" / "new" on long-context tasks


@dataclass
class Row:
    task: str
    task_hash: str
    scale: str
    data: str  # real | stand-in
    model: str
    source: str  # "measured" | "reported: <paper>"
    params: str
    cells: dict[str, Cell]
    notes: list[str]
    origin: str  # record file or reference file
    finished: str = ""
    checkpoint: str = ""


def load_reference(directory: str | os.PathLike) -> list[Row]:
    """Rows of ``<directory>/*.json``; every task must exist in ``TASKS`` and every value must parse."""
    from bench.tasks import TASKS

    rows = []
    for path in sorted(Path(directory).glob("*.json")):
        doc = json.loads(path.read_text())
        task = doc["task"]
        if task not in TASKS:
            raise ValueError(f"{path}: unknown task {task!r}; tasks are {sorted(TASKS)}")
        task_hash = TASKS[task].hash("paper")
        file_notes = ["unverified transcription (see PROTOCOLS.md)"] if doc.get("unverified") else []
        for r in doc["rows"]:
            cells = {}
            metric_notes = r.get("metric_notes", {})
            for metric, value in r["metrics"].items():
                if isinstance(value, dict) and "unavailable" in value:
                    cells[metric] = Cell(None, None, None, "n/a", f"{metric}: {value['unavailable']}")
                    continue
                try:
                    mean, std, unit = parse_reported(value)
                except ValueError as e:
                    raise ValueError(f"{path}: {r['model']}: {e}") from None
                text = str(value).strip().replace("+-", "±")
                note = metric_notes.get(metric)
                cells[metric] = Cell(mean, std, None, text, f"{metric}: {note}" if note else None)
            notes = list(file_notes) + list(r.get("notes", [])) + [f"flag: {f}" for f in r.get("flags", [])]
            rows.append(Row(task=task, task_hash=task_hash, scale="paper", data="real", model=r["model"],
                            source=f"reported: {r['source']}", params=str(r.get("params", "")), cells=cells,
                            notes=notes, origin=path.name))
    return rows


# ----------------------------------------------------------------------------- formatting

def fmt_number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.4g}"


def fmt_params(n: Any) -> str:
    if not isinstance(n, (int, float)) or n <= 0:
        return ""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def metric_base(key: str) -> str:
    """``"A:psnr"`` -> ``"psnr"``."""
    return key.rsplit(":", 1)[-1]


def _interval(m: dict) -> tuple[tuple[float, float] | None, str]:
    """The entry's interval of the difference to the reference model, and its text ``[+0.8, +1.9]``."""
    vs = m.get("vs_reference") or {}
    if not vs.get("ci"):
        return None, ""
    lo, hi = (float(x) for x in vs["ci"])
    return (lo, hi), f"[{lo:+.2g}, {hi:+.2g}]"


def _measured_cell(model: str, key: str, m: dict) -> Cell:
    if "unavailable" in m:
        provide = f"; provide with `{m['provide']}`" if m.get("provide") else ""
        return Cell(None, None, None, "n/a", f"{key} unavailable: {m['unavailable']}{provide}")
    if "not_applicable" in m:
        return Cell(None, None, None, "n/a", f"{key} not applicable: {m['not_applicable']}")
    mean, std, n = float(m["mean"]), m.get("std"), int(m.get("n", 1))
    text = fmt_number(mean)
    if n > 1 and std is not None:
        text += f" ± {fmt_number(float(std))}"
    ci, ci_text = _interval(m)
    note = None
    if ci:
        vs = m["vs_reference"]
        text += f" {ci_text} vs {vs['reference']}"
        note = (f"[lo, hi]: {int(round(100 * vs.get('level', 0.95)))}% interval of the difference to "
                f"{vs['reference']} (paired bootstrap over {vs.get('videos', '?')} videos x {vs.get('seeds', '?')} "
                f"seed(s), {vs.get('resamples', '?')} resamples)")
    cell = Cell(mean, float(std) if std is not None else None, n, text, note, ci)
    split = m.get("split") or {}
    for name in ("seen", "new"):
        sub = m.get(name)
        if not isinstance(sub, dict):
            continue
        if sub.get("mean") is None:
            cell.splits[name] = Cell(None, None, None, "–", f"{key} {name}: no {name} frames")
            continue
        sci, sci_text = _interval(sub)
        stext = fmt_number(float(sub["mean"])) + (f" {sci_text}" if sci_text else "")
        snote = (f"seen/new: frames whose view the context showed (rule {split.get('rule', '?')}; "
                 f"{split.get('seen_frames', '?')} seen, {split.get('new_frames', '?')} new frames); mean over the "
                 f"videos with such frames, interval vs the reference model")
        cell.splits[name] = Cell(float(sub["mean"]), sub.get("std"), sub.get("n"), stext, snote, sci)
    return cell


def record_row(rec: RunRecord) -> Row:
    cells = {k: _measured_cell(rec.model, k, m) for k, m in rec.metrics.items() if isinstance(m, dict)}
    commit = (rec.git_commit or "unknown")[:10] + (" (dirty)" if rec.git_dirty else "")
    notes = [f"measured {rec.finished or '?'} on {rec.device or '?'}, commit {commit}, "
             f"weights {rec.checkpoint}, record {rec.extra.get('record_file', '?')}"]
    if rec.data == "stand-in":
        notes.append(f"procedural stand-in data ({rec.data_root}), not the real dataset")
    params = fmt_params((rec.extra.get("cost") or {}).get("params"))
    return Row(task=rec.task, task_hash=rec.task_hash, scale=rec.scale, data=rec.data, model=rec.model,
               source="measured", params=params, cells=cells, notes=notes,
               origin=rec.extra.get("record_file", ""), finished=rec.finished or "", checkpoint=rec.checkpoint)


# ----------------------------------------------------------------------------- leaderboards

@dataclass
class Section:
    """Rows that may be ranked together: one task, one protocol hash, one scale, one kind of data."""

    task: str
    task_hash: str
    scale: str
    data: str
    metrics: list[str]
    primary: str | None
    rows: list[Row]
    stale: str | None = None  # the task's current hash at this scale, when it differs
    superseded: int = 0  # older records of the same (model, weights) dropped

    @property
    def title(self) -> str:
        data = "real data" if self.data == "real" else "STAND-IN data (procedural; not comparable with papers)"
        return f"protocol {self.task_hash} · scale {self.scale} · {data}"

    def footnotes(self) -> tuple[dict[int, list[str]], dict[tuple[int, str], str], list[str]]:
        """(row index -> markers, (row index, metric) -> marker, numbered note texts)."""
        texts: list[str] = []

        def mark(text: str) -> str:
            if text not in texts:
                texts.append(text)
            return f"[{texts.index(text) + 1}]"

        row_marks = {i: [mark(n) for n in r.notes] for i, r in enumerate(self.rows)}
        cell_marks = {(i, k): mark(c.note) for i, r in enumerate(self.rows) for k, c in r.cells.items() if c.note}
        cell_marks.update({(i, f"{k}:{s}"): mark(sc.note) for i, r in enumerate(self.rows) for k, c in r.cells.items()
                           for s, sc in c.splits.items() if sc.note})
        return row_marks, cell_marks, texts

    def splits(self, key: str) -> list[str]:
        """The seen/new sub-columns any row of this section has for metric ``key``."""
        return [s for s in ("seen", "new") if any(r.cells.get(key) and s in r.cells[key].splits for r in self.rows)]

    def frame(self, plain: bool = False):
        """The leaderboard as a DataFrame (display strings); ``plain`` drops arrows from headers."""
        import pandas as pd

        row_marks, cell_marks, _ = self.footnotes()
        out = []
        for i, r in enumerate(self.rows):
            has_primary = self.primary is None or (r.cells.get(self.primary) and r.cells[self.primary].mean is not None)
            rec = {"#": str(i + 1) if has_primary else "–", "model": r.model, "source": r.source, "data": r.data,
                   "scale": r.scale, "params": r.params}
            for k in self.metrics:
                c = r.cells.get(k)
                text = c.text if c else "–"
                if (i, k) in cell_marks:
                    text += " " + cell_marks[(i, k)]
                rec[_header(k, plain)] = text
                for s in self.splits(k):
                    sc = c.splits.get(s) if c else None
                    text = sc.text if sc else "–"
                    if (i, f"{k}:{s}") in cell_marks:
                        text += " " + cell_marks[(i, f"{k}:{s}")]
                    rec[_split_header(k, s, plain)] = text
            rec["notes"] = " ".join(row_marks[i])
            out.append(rec)
        metric_cols = [c for k in self.metrics for c in (_header(k, plain), *(_split_header(k, s, plain)
                                                                              for s in self.splits(k)))]
        cols = ["#", "model", "source", "data", "scale", "params", *metric_cols, "notes"]
        return pd.DataFrame(out, columns=cols)


def _header(key: str, plain: bool = False) -> str:
    base = metric_base(key)
    label = METRIC_LABELS.get(base, base)
    if ":" in key:
        label = f"{label} ({key.rsplit(':', 1)[0]})"
    if plain or base not in HIGHER_IS_BETTER:
        return label
    return label + (" ↑" if HIGHER_IS_BETTER[base] else " ↓")


def _split_header(key: str, split: str, plain: bool = False) -> str:
    """``PSNR seen ↑``: the column of a metric's seen/new split."""
    plain_label = _header(key, plain=True)
    return _header(key, plain).replace(plain_label, f"{plain_label} {split}", 1)


def _sort_key(row: Row, metrics: list[str]) -> tuple:
    key = []
    for k in metrics:
        base = metric_base(k)
        c = row.cells.get(k)
        if base not in HIGHER_IS_BETTER:
            continue
        if c is None or c.mean is None:
            key.append((1, 0.0))
        else:
            key.append((0, -c.mean if HIGHER_IS_BETTER[base] else c.mean))
    return (*key, row.model.lower(), row.source, row.checkpoint, row.origin)


def task_metrics(task_name: str) -> list[str]:
    """Metric keys of a task in definition order, as ``score_store`` names them."""
    from bench.tasks import TASKS

    task = TASKS.get(task_name)
    if task is None:
        return []
    names = [m.name for p in task.parts for m in p.metrics]
    return [m.name if names.count(m.name) == 1 else f"{p.name}:{m.name}" for p in task.parts for m in p.metrics]


def build_sections(records: Iterable[RunRecord], reference: Iterable[Row]) -> dict[str, list[Section]]:
    """Group rows by task, then by (hash, scale, data); sort each group by the primary metric."""
    from bench.tasks import TASKS

    # the newest record per (task, hash, data, model, weights); older ones are counted, not shown
    latest: dict[tuple, RunRecord] = {}
    superseded: dict[tuple, int] = {}
    for rec in records:
        k = (rec.task, rec.task_hash, rec.scale, rec.data, rec.model, rec.checkpoint)
        if k in latest:
            superseded[k[:4]] = superseded.get(k[:4], 0) + 1
            if (rec.finished or "") < (latest[k].finished or ""):
                continue
        latest[k] = rec
    rows = [record_row(r) for r in latest.values()] + list(reference)

    by_task: dict[str, dict[tuple, list[Row]]] = {}
    for r in rows:
        by_task.setdefault(r.task, {}).setdefault((r.task_hash, r.scale, r.data), []).append(r)

    out: dict[str, list[Section]] = {}
    for task in sorted(by_task, key=lambda t: (list(TASKS).index(t) if t in TASKS else len(TASKS), t)):
        sections = []
        for (h, scale, data), group in by_task[task].items():
            metrics = task_metrics(task)
            for r in group:
                metrics += [k for k in r.cells if k not in metrics]
            primary = next((k for k in metrics if metric_base(k) in HIGHER_IS_BETTER), None)
            group.sort(key=lambda r: _sort_key(r, metrics))
            stale = None
            if task in TASKS and scale in ("paper", "quick") and TASKS[task].hash(scale) != h:
                stale = TASKS[task].hash(scale)
            sections.append(Section(task, h, scale, data, metrics, primary, group, stale,
                                    superseded.get((task, h, scale, data), 0)))
        # the paper protocol on real data first, then paper stand-in, then other scales
        sections.sort(key=lambda s: (s.scale != "paper", s.data != "real", s.stale is not None, s.task_hash,
                                     s.scale, s.data))
        out[task] = sections
    return out


# ----------------------------------------------------------------------------- rendering

def _task_header(task_name: str) -> list[str]:
    from bench.tasks import TASKS

    t = TASKS.get(task_name)
    if t is None:
        return [f"Task `{task_name}` is not defined in bench/tasks.py any more; rows kept as recorded."]
    parts = "; ".join(f"part {p.name}: {p.context_frames} -> {p.predict_frames}, condition {p.condition}, "
                      f"metrics {', '.join(m.name for m in p.metrics)}" for p in t.parts)
    return [f"{t.dataset} `{t.split}`, {t.selection}; {t.resolution} px, {t.num_frames} frames at stride "
            f"{t.frame_stride}; {t.num_videos or 'all'} videos x {t.trajectories} trajectories; seeds "
            f"{list(t.seeds)}; {parts}.",
            f"Protocol hashes: paper `{t.hash('paper')}`, quick `{t.hash('quick')}`."]


def _direction(section: Section) -> str:
    if section.primary is None:
        return "unsorted (no metric with a known direction)"
    base = metric_base(section.primary)
    return f"ranked by {_header(section.primary, plain=True)}, {'higher' if HIGHER_IS_BETTER[base] else 'lower'} is better"


def _section_preamble(s: Section) -> list[str]:
    lines = [_direction(s) + "."]
    if s.stale:
        lines.append(f"**Protocol changed:** the task's current hash at scale {s.scale} is `{s.stale}`; these rows "
                     f"were produced under an older definition.")
    if s.data == "stand-in":
        lines.append("Measured on the procedural stand-in dataset: a smoke test of the pipeline, not a result "
                     "comparable with any paper.")
    if s.scale != "paper":
        lines.append(f"Scale `{s.scale}` shrinks the protocol (videos, trajectories, horizons, steps); "
                     "not comparable with paper-scale rows.")
    if s.superseded:
        lines.append(f"{s.superseded} older record(s) of the same model and weights superseded by newer ones.")
    return lines


def render_markdown(task: str, sections: list[Section]) -> str:
    lines = [f"# {task}", "", "<!-- generated by `python -m bench table`; do not edit -->", "",
             *_task_header(task), "",
             "Rows are ranked only against rows of the same protocol hash, scale and kind of data. "
             "`reported` rows are the papers' numbers (not re-run); `measured` rows come from run records.", ""]
    for s in sections:
        _, _, notes = s.footnotes()
        lines += [f"## {s.title}", "", *(_section_preamble(s)), "", s.frame().to_markdown(index=False, disable_numparse=True), ""]
        lines += [f"[{i}] {text}  " for i, text in enumerate(notes, 1)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _latex_escape_extra(s: str) -> str:
    return s.replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$") \
        .replace("–", "--").replace("²", r"$^2$").replace("·", r"$\cdot$")


def _latex_text(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                 ("<", r"\textless{}"), (">", r"\textgreater{}")):
        s = s.replace(a, b)
    return _latex_escape_extra(s.replace("`", ""))


def render_latex(task: str, sections: list[Section]) -> str:
    out = [f"% {task}: generated by `python -m bench table`; do not edit. Needs \\usepackage{{booktabs}}.", ""]
    for s in sections:
        _, _, notes = s.footnotes()
        df = s.frame()
        styler = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
        body = styler.to_latex(hrules=True, column_format="l" * len(df.columns))
        out += [f"% protocol {s.task_hash}, scale {s.scale}, data {s.data}",
                f"\\paragraph{{{_latex_text(task)}: {_latex_text(s.title)}}} {_latex_text(_direction(s))}.",
                _latex_escape_extra(body).rstrip(), ""]
        if notes:
            out.append("{\\footnotesize")
            out += [f"[{i}] {_latex_text(t)}\\\\" for i, t in enumerate(notes, 1)]
            out += ["}", ""]
    return "\n".join(out).rstrip() + "\n"


def section_records(sections: list[Section]) -> list[dict]:
    """Flat rows with numbers (for CSV): one per row, with protocol, rank, mean/std/n per metric."""
    out = []
    for s in sections:
        row_marks, cell_marks, notes = s.footnotes()
        display = s.frame(plain=True)
        for i, r in enumerate(s.rows):
            d = {"task": s.task, "protocol_hash": s.task_hash, "scale": s.scale, "data": r.data,
                 "rank": display.iloc[i]["#"], "model": r.model, "source": r.source, "params": r.params,
                 "stale_protocol": bool(s.stale)}
            for k in s.metrics:
                c = r.cells.get(k)
                d[k] = display.iloc[i][_header(k, plain=True)]
                d[f"{k}_mean"] = c.mean if c else None
                d[f"{k}_std"] = c.std if c else None
                d[f"{k}_n"] = c.n if c else None
                d[f"{k}_ci_lo"], d[f"{k}_ci_hi"] = c.ci if c and c.ci else (None, None)
                for split in s.splits(k):
                    sc = c.splits.get(split) if c else None
                    d[f"{k}_{split}"] = display.iloc[i][_split_header(k, split, plain=True)]
                    d[f"{k}_{split}_mean"] = sc.mean if sc else None
                    d[f"{k}_{split}_ci_lo"], d[f"{k}_{split}_ci_hi"] = sc.ci if sc and sc.ci else (None, None)
            marks = row_marks[i] + [m for (j, _), m in cell_marks.items() if j == i]
            d["notes"] = " ".join(notes[int(m.strip("[]")) - 1] for m in dict.fromkeys(marks))
            d["origin"] = r.origin
            out.append(d)
    return out


def render_csv(sections: list[Section], path: Path) -> None:
    import pandas as pd

    rows = section_records(sections)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    write_atomic(path, pd.DataFrame(rows, columns=cols).to_csv(index=False))


def render_tables(records_dir: str | os.PathLike = "results/runs", reference_dir: str | os.PathLike = "results/reference",
                  out_dir: str | os.PathLike = "results", tasks: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Write ``<task>.md``, ``.csv``, ``.tex`` per task with rows, and ``README.md``; returns task -> files.
    ``tasks``: write only these tasks' tables (and the index), e.g. those a sweep added records to."""
    from bench.tasks import TASKS

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = load_records(records_dir, errors=errors)
    reference = load_reference(reference_dir) if Path(reference_dir).is_dir() else []
    sections = build_sections(records, reference)
    written: dict[str, list[Path]] = {}
    only = set(tasks) if tasks is not None else None
    for task, secs in sections.items():
        if only is not None and task not in only:
            continue
        md, csv, tex = (out_dir / f"{task}.{ext}" for ext in ("md", "csv", "tex"))
        write_atomic(md, render_markdown(task, secs))
        render_csv(secs, csv)
        write_atomic(tex, render_latex(task, secs))
        written[task] = [md, csv, tex]

    lines = ["# Leaderboards", "", "<!-- generated by `python -m bench table`; do not edit -->", "",
             f"Generated from {len(records)} run record(s) in `{portable(Path(records_dir).absolute())}` and "
             f"{len(reference)} reported row(s) in `{portable(Path(reference_dir).absolute())}`. Each task's tables are split by protocol hash, scale and data (real or "
             "stand-in); rows are ranked only within a section.", "",
             "| task | paper hash | sections (hash · scale · data: rows) | files |", "|---|---|---|---|"]
    for task in [*TASKS, *(t for t in sections if t not in TASKS)]:
        paper = TASKS[task].hash("paper") if task in TASKS else "(undefined task)"
        secs = sections.get(task, [])
        desc = "<br>".join(f"`{s.task_hash}` · {s.scale} · {s.data}: {len(s.rows)}"
                           + (" (stale)" if s.stale else "") for s in secs) or "no rows yet"
        files = " ".join(f"[{ext}]({task}.{ext})" for ext in ("md", "csv", "tex")) if task in sections else "–"
        lines.append(f"| {task} | `{paper}` | {desc} | {files} |")
    if errors:
        lines += ["", "Skipped files:", "", *(f"- {e}" for e in errors)]
    readme = out_dir / "README.md"
    write_atomic(readme, "\n".join(lines) + "\n")
    written["README"] = [readme]
    return written


GENERATED = (".md", ".csv", ".tex")  # what render_tables writes at the top of its output folder


def generated_files(directory: str | os.PathLike) -> dict[str, bytes]:
    """The files ``render_tables`` owns in ``directory``: top-level markdown, CSV and LaTeX."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.suffix in GENERATED}


def check_tables(results_dir: str | os.PathLike = "results", records_dir: str | os.PathLike | None = None,
                 reference_dir: str | os.PathLike | None = None) -> list[str]:
    """Regenerate the tables into a temporary folder and compare them byte for byte with those in
    ``results_dir``; returns one line per difference (empty: reproduced exactly). A record missing
    from ``records_dir``, a table not regenerated after a change, or an extra table all differ."""
    results_dir = Path(results_dir)
    records_dir = Path(records_dir) if records_dir is not None else results_dir / "runs"
    reference_dir = Path(reference_dir) if reference_dir is not None else results_dir / "reference"
    with tempfile.TemporaryDirectory() as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unreadable records are listed in README.md, compared below
            render_tables(records_dir, reference_dir, tmp)
        want = generated_files(tmp)
    have = generated_files(results_dir)
    problems = []
    for name in sorted(set(want) | set(have)):
        if name not in have:
            problems.append(f"{results_dir / name}: missing; `python -m bench table` writes it")
        elif name not in want:
            problems.append(f"{results_dir / name}: not produced from the records and references any more")
        elif want[name] != have[name]:
            a, b = have[name].decode(errors="replace").splitlines(), want[name].decode(errors="replace").splitlines()
            n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"{results_dir / name}: differs from the regenerated file at line {n + 1}: committed "
                            f"{(a[n] if n < len(a) else '<end of file>')[:160]!r}, regenerated "
                            f"{(b[n] if n < len(b) else '<end of file>')[:160]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description="Leaderboards from run records and "
                                     "reported reference numbers.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("table", help="render results/<task>.{md,csv,tex} and results/README.md")
    p.add_argument("--records", default="results/runs", help="run records (default: results/runs)")
    p.add_argument("--reference", default="results/reference", help="reported numbers (default: results/reference)")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 unless the tables in --out are "
                   "exactly what the records and references give")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_tables(args.out, args.records, args.reference)
        for line in problems:
            print(line)
        print(f"{len(problems)} difference(s)" if problems else f"tables in {args.out}/ are reproduced byte for byte")
        return 1 if problems else 0
    written = render_tables(args.records, args.reference, args.out)
    tasks = [t for t in written if t != "README"]
    print(f"wrote tables for {len(tasks)} task(s) into {args.out}/: {', '.join(tasks) or '(none)'}; "
          f"index {written['README'][0]}")
    return 0


__all__ = ["RunRecord", "SCHEMA", "HIGHER_IS_BETTER", "collect_provenance", "describe_device", "write_record",
           "record_filename", "load_records", "parse_reported", "load_reference", "Cell", "Row", "Section",
           "record_row", "build_sections", "task_metrics", "render_markdown", "render_latex", "render_csv",
           "section_records", "render_tables", "portable_record", "generated_files", "check_tables", "main"]
