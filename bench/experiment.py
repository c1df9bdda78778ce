"""The config of ``bench run`` / ``train`` / ``score``: composed, resolved, hashed; and sweeps over it.

A run's config has three parts, each generated from its dataclass (``bench.compose``):

- the **model** group: ``model=<name>`` picks the model, ``model.<field>=...`` sets a field of its
  config dataclass (``bench.models.*``), whose defaults depend on the task and the scale;
- the **train** group: ``train.<field>=...`` over ``bench.train.TrainConfig``, defaults from
  ``bench.run.default_train_config(task, scale)``;
- the **run** fields at the top: ``task=``, ``scale=``, ``data_root=``, ... (``bench.run.RunConfig``).

So the model, the task and the scale are resolved first (recipe file, then the command line), the
defaults of that combination are built from the dataclasses, and only then are the recipe's and the
command line's values applied and checked (:func:`compose_run`).

A recipe is written for one combination. Rerun for the same one (``bench run --config <record>``),
every value of the recipe applies, so the run is reproduced even if the code's defaults changed
since. Used for another model, task or scale (a sweep over tasks with a recipe), only the recipe's
values that differ from its own combination's defaults apply (the recipe's intent, not the other
combination's defaults), and its ``model.*`` values only when the model is the same; a note says so.

**Resolved config** (:func:`run_document`): the complete config a run ran with, ``model`` (with
``name``), ``task``, ``scale``, the run fields and ``train``, computed from the objects the run
builds; ``bench run --cfg job`` prints it, every run record stores it (``record.config``, paths
portable), ``<workdir>/<task>__<scale>/<model>/config.yaml`` holds the latest one, and
``bench run --config <record>.json`` runs it again.

**Config hash** (:func:`config_hash`): 12 hex digits of the resolved config less the fields that do
not change the result (metadata ``identity: False``: the work and results folders, progress, lock
waiting, checkpoint and log intervals; for a model without weights also the training recipe and the
checkpoint). A sweep cell counts as *finished*, and is skipped, when ``<results>/runs`` holds a
record with the same config hash and the same protocol hash (``task_hash``); anything else runs
(and resumes: training from ``last.pt``, sampling from the store).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from bench.compose import Schema, Section, Setting, parse_overrides, plain, to_yaml
from bench.config import check_field
from bench.errors import BenchError, ConfigError, one_line

NAME_KEYS = {"model": "model", "model.name": "model", "task": "task", "scale": "scale"}
GROUPS = ("model", "train")


# ----------------------------------------------------------------------------- schema and document

def model_defaults(model: str, task, scale: str):
    """The model's config dataclass with the defaults of (task, scale); None for a model without one."""
    from bench.registry import MODEL_CONFIGS
    return MODEL_CONFIGS[model](task=task.at_scale(scale), scale=scale)


def run_schema(model: str, task: str, scale: str) -> Schema:
    """The structured config of a run of ``model`` on ``task`` at ``scale``: run fields, ``model.*``
    (the model's config dataclass, absent for a model without options) and ``train.*``."""
    from bench.registry import get_task
    from bench.run import RunConfig, default_train_config
    base = get_task(task)
    sections = [Section("", RunConfig(model=model, task=task, scale=scale), hidden=("model",),
                        label="run options (key=value)")]
    mdef = model_defaults(model, base, scale)
    if mdef is not None:
        sections.append(Section("model", mdef, label=f"model options (model.<field>=value; defaults of {model} on "
                                                       f"{task} at scale {scale})"))
    sections.append(Section("train", default_train_config(base, scale), hidden=("progress",),
                            label=f"training options (train.<field>=value; defaults of {task} at scale {scale})"))
    return Schema(sections)


def run_document(run) -> dict:
    """The resolved config of ``run``: ``model`` (its name and every field of its config), ``task``,
    ``scale``, the run fields and ``train`` (every field of the training recipe), computed from the
    same builders the run uses."""
    from bench.registry import MODEL_CONFIGS, get_task
    from bench.run import train_config
    base = get_task(run.task)
    mcfg = MODEL_CONFIGS[run.model](task=base.at_scale(run.scale), scale=run.scale, **run.model_options)
    tcfg = train_config(run, base)
    schema = run_schema(run.model, run.task, run.scale)
    composed = {"": run, "train": tcfg}
    if mcfg is not None:
        composed["model"] = mcfg
    doc = schema.document(composed)
    top = {k: v for k, v in doc.items() if k not in GROUPS}
    return {"model": {"name": run.model, **doc.get("model", {})}, **top, "train": doc["train"]}


def flat(doc: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key in GROUPS:
            out.update(flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def _non_identity() -> tuple[set[str], set[str]]:
    from bench.run import RunConfig
    from bench.train import TrainConfig
    run = {f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("identity", True) is False}
    train = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("identity", True) is False}
    return run, train


def _hashable(value: Any) -> Any:
    """Paths as ``bench.paths.portable`` writes them (so that records from other machines match),
    except paths outside the repository and ``$FARZOO_HOME``, which stay absolute."""
    from bench.paths import OUTSIDE, portable
    if isinstance(value, str) and os.path.isabs(value):
        p = portable(value)
        return value if p.startswith(OUTSIDE) else p
    if isinstance(value, dict):
        return {k: _hashable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hashable(v) for v in value]
    return value


def run_identity(doc: dict) -> dict:
    """The part of a resolved config that determines the run's result (see the module doc)."""
    run_skip, train_skip = _non_identity()
    ident = {k: v for k, v in doc.items() if k not in run_skip}
    ident["train"] = {k: v for k, v in doc["train"].items() if k not in train_skip}
    if set(doc["model"]) == {"name"}:  # no options, no weights (dummy): nothing is trained or loaded
        ident.pop("train")
        ident.pop("checkpoint", None)
    return ident


def config_hash(doc: dict) -> str:
    blob = json.dumps(_hashable(plain(run_identity(doc))), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- composition

@dataclass
class Composed:
    run: Any  # bench.run.RunConfig
    document: dict
    notes: list[str] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return config_hash(self.document)


def _name(settings: Iterable[Setting], kind: str) -> Setting | None:
    found = None
    for s in settings:
        if NAME_KEYS.get(s.key) == kind:
            found = s
    return found


def _check_names(model: Setting | None, task: Setting | None, scale: Setting | None,
                 defaults: tuple[str, str, str]) -> tuple[str, str, str]:
    from bench.registry import MODELS, get_model_factory, get_task
    from bench.run import RunConfig
    names = []
    for kind, s, default in (("model", model, defaults[0]), ("task", task, defaults[1]), ("scale", scale, defaults[2])):
        if s is None:
            names.append(default)
            continue
        where = f"{s.origin}: " if s.from_file else ""
        value = s.raw if isinstance(s.value, (int, float)) and not isinstance(s.value, bool) and s.raw else s.value
        if kind == "scale":
            try:
                names.append(check_field(RunConfig, "scale", value))
            except ConfigError as e:
                raise ConfigError(f"{where}{e}") from None
            continue
        if not isinstance(value, str):
            what = f"a model name ({', '.join(MODELS)})" if kind == "model" else "a task name (`bench ls` lists them)"
            raise ConfigError(f"{where}{s.key}={value!r}: expected {what}")
        try:
            (get_model_factory if kind == "model" else get_task)(value)
        except BenchError as e:
            raise type(e)(f"{where}{e}") from None
        names.append(value)
    return names[0], names[1], names[2]


def compose_run(files: list[Setting], cli: list[Setting], train_only: bool = False) -> Composed:
    """The RunConfig (and its resolved config) of a recipe's settings ``files`` and the command
    line's ``cli`` (flags first, then overrides), in that order of precedence (see the module doc)."""
    from bench.run import RunConfig
    default = RunConfig()
    chosen = _check_names(*(_name(cli, k) or _name(files, k) for k in ("model", "task", "scale")),
                          defaults=(default.model, default.task, default.scale))
    model, task, scale = chosen
    notes: list[str] = []
    rest_files = [s for s in files if s.key not in NAME_KEYS]
    if files:
        own = _check_names(_name(files, "model"), _name(files, "task"), _name(files, "scale"), defaults=chosen)
        if own != chosen:
            rest_files = _recipe_for_other(rest_files, own, chosen, notes)
    schema = run_schema(model, task, scale)
    settings = [*rest_files, *(s for s in cli if s.key not in NAME_KEYS)]
    if "model" not in {sec.prefix for sec in schema.sections}:
        ignored = [s.key for s in settings if s.key.startswith("model.")]
        if ignored:
            notes.append(f"{', '.join(dict.fromkeys(ignored))}: model {model} has no options; ignored")
        settings = [s for s in settings if not s.key.startswith("model.")]
    composed = schema.compose(settings)
    run = composed[""]
    mdef = next((sec.default for sec in schema.sections if sec.prefix == "model"), None)
    tdef = next(sec.default for sec in schema.sections if sec.prefix == "train")
    order = list(dict.fromkeys(s.key for s in settings))
    run = replace(run, model=model, train_only=train_only,
                  model_options=_diff(composed.get("model"), mdef, "model", order),
                  train_options=_diff(composed["train"], tdef, "train", order))
    return Composed(run, run_document(run), notes)


def _diff(value, default, prefix: str, order: list[str]) -> dict:
    """The fields of ``value`` that differ from ``default``, in the order they were set."""
    if value is None:
        return {}
    changed = [f.name for f in dataclasses.fields(value) if getattr(value, f.name) != getattr(default, f.name)]
    rank = {k: i for i, k in enumerate(order)}
    changed.sort(key=lambda name: rank.get(f"{prefix}.{name}", len(rank)))
    return {name: getattr(value, name) for name in changed}


def _recipe_for_other(settings: list[Setting], own: tuple[str, str, str], chosen: tuple[str, str, str],
                      notes: list[str]) -> list[Setting]:
    """A recipe written for ``own`` used for ``chosen``: its values that differ from ``own``'s defaults
    (and its model values only for the same model)."""
    from bench.run import RunConfig
    defaults = flat(run_document(RunConfig(model=own[0], task=own[1], scale=own[2])))
    kept, skipped = [], []
    for s in settings:
        if s.key.startswith("model.") and own[0] != chosen[0]:
            skipped.append(s.key)
        elif s.key not in defaults or plain(defaults[s.key]) != plain(s.value):
            kept.append(s)
    origin = settings[0].origin if settings else "the recipe"
    notes.append(f"{origin} is for {own[0]} on {own[1]} at scale {own[2]}; for {chosen[0]} on {chosen[1]} at scale "
                 f"{chosen[2]} its values that differ from its own defaults apply"
                 + (f" ({', '.join(s.key for s in kept)})" if kept else " (none)")
                 + (f"; its model options are for {own[0]} and do not apply" if skipped else ""))
    return kept


# ----------------------------------------------------------------------------- finished runs

def finished_record(results: str | os.PathLike, composed: Composed) -> Path | None:
    """A record in ``<results>/runs`` with this config hash and protocol hash (the cell is done)."""
    from bench.registry import get_task
    task_hash = get_task(composed.run.task).hash(composed.run.scale)
    want = composed.hash
    for path in sorted(Path(results, "runs").glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("config_hash") == want and doc.get("task_hash") == task_hash:
            return path
    return None


def write_config(run_dir: Path, doc: dict) -> Path:
    """``<run dir>/config.yaml``: the resolved config of the latest run there (atomic)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(to_yaml(doc))
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- sweeps

@dataclass
class Cell:
    index: int
    overrides: list[str]
    status: str = "pending"  # done | skipped | failed
    detail: str = ""
    seconds: float = 0.0


def run_sweep(files: list[Setting], flags: list[Setting], cells: list[list[str]], verb: str, base_argv: list[str],
              log=print) -> int:
    """Run the cells one after another (see the module doc): a finished cell is skipped, a failed one
    is reported in one line and the others go on; then a summary of the cells and, for ``run`` and
    ``score``, the tables of the tasks that got new records. Returns 0, or 1 if a cell failed."""
    from bench.run import run, score, set_command
    done: list[Cell] = []
    touched: dict[str, set[str]] = {}
    common = set.intersection(*(set(c) for c in cells)) if len(cells) > 1 else set()
    log(f"[sweep] {len(cells)} cell(s) of `{verb}`, one after another"
        + (f"; in every cell: {' '.join(o for o in cells[0] if o in common)}" if common else ""))
    for i, overrides in enumerate(cells, 1):
        label = " ".join(o for o in overrides if o not in common) or "(the only cell)"
        cell = Cell(i, label.split() if label != "(the only cell)" else [])
        done.append(cell)
        t0 = time.time()
        composed = None
        try:
            composed = compose_run(files, [*flags, *parse_overrides(overrides)], train_only=verb == "train")
            for note in composed.notes:
                log(f"[config] {note}")
            if verb == "run":
                found = finished_record(composed.run.results, composed)
                if found is not None:
                    cell.status, cell.detail = "skipped", f"finished: {found}"
                    log(f"[sweep] cell {i}/{len(cells)} {label}: skipped, finished before ({found})")
                    continue
            log(f"[sweep] cell {i}/{len(cells)} {label}: config {composed.hash}")
            set_command([*base_argv, *overrides])
            paths = {"run": run, "train": run, "score": score}[verb](composed.run)
            cell.status = "done"
            cell.detail = ", ".join(map(str, paths or [])) or "trained"
            if paths:
                touched.setdefault(composed.run.results, set()).add(composed.run.task)
        except KeyboardInterrupt:
            cell.status, cell.detail = "failed", "interrupted"
            _summary(done, cells, log)
            raise
        except BenchError as e:
            cell.status, cell.detail = "failed", f"error: {one_line(e)}"
        except Exception as e:  # a bug in one cell: the others still run; its traceback is kept
            trace = _keep_traceback(e, composed)
            cell.status, cell.detail = "failed", f"{type(e).__name__}: {one_line(e)[:300]} (traceback: {trace})"
        finally:
            cell.seconds = time.time() - t0
        if cell.status == "failed":
            log(f"[sweep] cell {i}/{len(cells)} {label}: FAILED: {cell.detail}")
    _summary(done, cells, log)
    for results, tasks in touched.items():
        from bench.results import render_tables
        written = render_tables(Path(results) / "runs", Path(results) / "reference", results, tasks=tasks)
        log(f"[sweep] tables regenerated in {results}/: {', '.join(sorted(t for t in written if t != 'README'))}")
    return 1 if any(c.status == "failed" for c in done) else 0


def _keep_traceback(error: BaseException, composed: Composed | None) -> str:
    """The traceback of an unexpected failure, in the cell's run directory (else ``$FARZOO_HOME/logs``)."""
    from bench.paths import farzoo_home
    from bench.registry import get_task
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if composed is not None:
        run = composed.run
        where = Path(run.workdir) / f"{get_task(run.task).name}__{run.scale}" / run.model
    else:
        where = farzoo_home() / "logs"
    try:
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"failed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
        path.write_text(text)
        return str(path)
    except OSError:
        return "not written"


def _summary(cells: list[Cell], planned: list[list[str]], log) -> None:
    counts = {s: sum(c.status == s for c in cells) for s in ("done", "skipped", "failed")}
    left = len(planned) - len(cells)
    log(f"[sweep] {len(planned)} cell(s): {counts['done']} done, {counts['skipped']} skipped (finished before), "
        f"{counts['failed']} failed" + (f", {left} not started" if left else ""))
    log("| cell | overrides | status | time | record / reason |")
    log("|---|---|---|---|---|")
    for c in cells:
        log(f"| {c.index} | {' '.join(c.overrides) or '-'} | {c.status} | {c.seconds:.0f}s | {c.detail} |")


def print_documents(files: list[Setting], flags: list[Setting], cells: list[list[str]], multirun: bool,
                    train_only: bool = False) -> int:
    """``--cfg job``: the resolved config of the run (of every cell with ``-m``), as YAML."""
    import sys
    for i, overrides in enumerate(cells, 1):
        composed = compose_run(files, [*flags, *parse_overrides(overrides)], train_only=train_only)
        for note in composed.notes:
            print(f"[config] {note}", file=sys.stderr)
        if multirun:
            print(f"# cell {i}/{len(cells)}: {' '.join(overrides) or '(no overrides)'} (config {composed.hash})")
        print(to_yaml(composed.document), end="" if multirun is False else "\n")
    return 0
