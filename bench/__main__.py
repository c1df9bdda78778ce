"""Command line: ``python -m bench <verb> [options] [key=value ...]``.

Verbs: ``run`` (train if needed, sample, score, record), ``train``, ``score`` (recompute metrics from
the sample store), ``table`` (leaderboards into results/), ``profile`` (cost across context lengths),
``assets`` (metric networks and official checkpoints), ``ls`` (models and tasks with their hashes).

``key=value`` overrides after the verb set fields of the run (``scale=paper``), of the model
(``model.num_layers=2``) or of the training loop (``train.steps=100``); values are parsed as YAML
scalars, as hydra does, and checked against the field's type and range before any work starts.

Expected failures (a bad option, a bad data file or checkpoint, a locked or unwritable directory)
print one line, ``error: ...``, from rank 0 only and exit with code 2; see ``bench.errors``.
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from bench.errors import BenchError, ConfigError, one_line


def _scalar(raw: str):
    """YAML scalar, with YAML 1.1's gap closed: ``3e-4`` is a float, not a string."""
    value = yaml.safe_load(raw) if raw else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_overrides(items: list[str]) -> tuple[dict, dict, dict]:
    """``a=1 model.b=x train.c=2`` -> (run options, model options, train options)."""
    run, model, train = {}, {}, {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        value = _scalar(raw)
        if key.startswith("model."):
            model[key.removeprefix("model.")] = value
        elif key.startswith("train."):
            train[key.removeprefix("train.")] = value
        else:
            run[key] = value
    return run, model, train


def _run_config(args, overrides: list[str]):
    from dataclasses import fields

    from bench.config import apply_options
    from bench.run import RunConfig
    run_opts, model_opts, train_opts = parse_overrides(overrides)
    cfg = RunConfig(model=args.model, task=args.task, scale=args.scale, data_root=args.data_root,
                    checkpoint=args.checkpoint, workdir=args.workdir, results=args.results, device=args.device,
                    compare_dummy=not args.no_dummy, progress=not args.no_progress,
                    model_options=model_opts, train_options=train_opts)
    valid = {f.name for f in fields(RunConfig)} - {"model_options", "train_options"}
    unknown = set(run_opts) - valid
    if unknown:
        raise ConfigError(f"unknown run option(s) {sorted(unknown)}; valid: {sorted(valid)} "
                          f"(model.<field>=..., train.<field>=... for the model and the training loop)")
    return apply_options(cfg, run_opts)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="far")
    p.add_argument("--task", default="dmlab_long")
    p.add_argument("--scale", default="quick", choices=("quick", "paper"),
                   help="quick: CPU minutes (default); paper: the protocol exactly")
    p.add_argument("--data-root", default=None, help="dataset root (else $FARZOO_<DATASET>_ROOT, "
                   "$FARZOO_DATA/<dataset>, else the built-in stand-in)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--workdir", default="runs", help="checkpoints and sample stores")
    p.add_argument("--results", default="results", help="run records, grids and tables")
    p.add_argument("--device", default=None)
    p.add_argument("--no-dummy", action="store_true", help="do not score the dummy model alongside")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value, model.key=value, train.key=value")


def _ls() -> int:
    from bench.registry import MODELS
    from bench.tasks import TASKS
    print("models:")
    for name in MODELS:
        print(f"  {name}")
    print("tasks:                 paper hash    quick hash    parts")
    for name, t in TASKS.items():
        parts = ", ".join(f"{p.name}: {p.context_frames}->{p.predict_frames} {p.condition}" for p in t.parts)
        print(f"  {name:<20} {t.hash('paper')}  {t.hash('quick')}  {t.dataset} {t.resolution}px; {parts}")
    return 0


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise), read without initialising anything."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI; a :class:`BenchError` becomes one line on stderr (rank 0 only) and exit code 2."""
    try:
        return _main(argv)
    except BenchError as e:
        if _rank() == 0:
            print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    _add_run_args(sub.add_parser("run", help="train if needed, sample, score, write a record"))
    _add_run_args(sub.add_parser("train", help="train a model on a task's training data"))
    _add_run_args(sub.add_parser("score", help="recompute metrics from the sample store"))
    sub.add_parser("ls", help="list models and tasks with their protocol hashes")
    for verb, helptext in (("table", "render leaderboards into results/"), ("assets", "list/verify/fetch assets"),
                           ("profile", "measure time/memory across context lengths")):
        sub.add_parser(verb, help=helptext, add_help=False)
    if argv and argv[0] in ("table", "assets", "profile"):
        verb, rest = argv[0], argv[1:]
        if verb == "table":
            from bench.results import main as table_main
            return table_main(["table", *rest])
        if verb == "assets":
            from bench.assets import main as assets_main
            return assets_main(rest)
        from bench.profile import main as profile_main
        return profile_main(rest)
    args = parser.parse_args(argv)
    if args.verb == "ls":
        return _ls()
    cfg = _run_config(args, args.overrides)
    from bench.registry import get_model_factory, get_task
    get_task(cfg.task), get_model_factory(cfg.model)
    from bench.run import run, score, set_command
    set_command(argv)  # what the records say was run
    if args.verb == "train":
        from dataclasses import replace
        run(replace(cfg, train_only=True))
    elif args.verb == "score":
        score(cfg)
    else:
        run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
