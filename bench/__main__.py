"""Command line: ``python -m bench <verb> [options] [key=value ...]``.

Verbs: ``run`` (train if needed, sample, score, record), ``train``, ``score`` (recompute metrics from
the sample store), ``table`` (leaderboards into results/), ``profile`` (``model``: cost across
context lengths, the default; ``attention``: the attention backends; ``scoring``: scoring memory),
``study`` (``convergence``: FAR vs the video DiT; ``seen_calibration``: the seen/new proxy),
``compare`` (paired-bootstrap interval between two run records), ``assets`` (metric networks and
official checkpoints), ``ls`` (models and tasks with their hashes).

Every verb that takes options takes them as ``key=value`` overrides in Hydra's grammar, checked
against the typed dataclasses before any work (``bench.compose``, ``bench.experiment``):

    python -m bench run --model far --task dmlab_long                # flags are aliases of overrides
    python -m bench run model=far task=dmlab_long train.steps=100 model.num_layers=2
    python -m bench run --config recipe.yaml train.seed=1             # a YAML recipe, overrides on top
    python -m bench run model=far task=bair_pred --cfg job            # print the resolved config only
    python -m bench run --config results/runs/<record>.json           # run a recorded config again
    python -m bench run -m model=far,far_sliding,dummy task=dmlab_long,bair_pred   # a sweep

Expected failures (a bad option, a bad data file or checkpoint, a locked or unwritable directory)
print one line, ``error: ...``, from rank 0 only and exit with code 2; see ``bench.errors``.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.errors import BenchError, one_line

RUN_VERBS = {"run": "train if needed, sample, score, write a record", "train": "only the training part of run",
             "score": "recompute the metrics of the latest sample store, write a record"}
# flag -> the key it is an alias of
FLAG_KEYS = {"model": "model", "task": "task", "scale": "scale", "data_root": "data_root",
             "checkpoint": "checkpoint", "workdir": "workdir", "results": "results", "device": "device"}


def _run_parser(verb: str) -> argparse.ArgumentParser:
    from bench.compose import add_config_arguments
    p = argparse.ArgumentParser(prog=f"python -m bench {verb}", add_help=False,
                                description=f"{RUN_VERBS[verb]}.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action="store_true", help="this help, with every option of the chosen model and "
                   "task (model=... task=... --help for another)")
    g = p.add_argument_group("flags (aliases of the overrides; an override given as well wins)")
    g.add_argument("--model", help="model=NAME")
    g.add_argument("--task", help="task=NAME")
    g.add_argument("--scale", help="scale=quick|paper (quick: CPU minutes, the default; paper: the protocol)")
    g.add_argument("--data-root", dest="data_root", help="data_root=DIR (else $FARZOO_<DATASET>_ROOT, "
                   "$FARZOO_DATA/<dataset>, else the built-in stand-in)")
    g.add_argument("--checkpoint", help="checkpoint=FILE")
    g.add_argument("--workdir", help="workdir=DIR: checkpoints and sample stores (default runs)")
    g.add_argument("--results", help="results=DIR: run records, grids and tables (default results)")
    g.add_argument("--device", help="device=cpu|cuda|cuda:N")
    g.add_argument("--no-dummy", action="store_true", help="compare_dummy=false: do not score the dummy alongside")
    g.add_argument("--no-progress", action="store_true", help="progress=false: no progress bars")
    g.add_argument("--from-scratch", action="store_true", help="from_scratch=true: train even where the project "
                   "ships weights for this configuration (bench.pretrained)")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="run the grid of the sweep overrides (model=a,b task=x,y) one cell after another")
    add_config_arguments(p)
    return p


def _flag_settings(args) -> list:
    from bench.compose import Setting
    out = [Setting(key, getattr(args, attr), raw=getattr(args, attr))
           for attr, key in FLAG_KEYS.items() if getattr(args, attr) is not None]
    if args.no_dummy:
        out.append(Setting("compare_dummy", False))
    if args.no_progress:
        out.append(Setting("progress", False))
    if args.from_scratch:
        out.append(Setting("from_scratch", True))
    return out


RUN_HELP = """Options are key=value overrides in Hydra's grammar, after the verb: run fields at the top
(scale=paper), model.<field>=... (the chosen model's config), train.<field>=... (the training
recipe); lists as key=[a,b], null for none; a,b is a sweep (with -m). Precedence: defaults of the
model, task and scale < the recipe (--config) < flags < overrides. Every value is checked against
its field's type and range before any work.

examples:
  python -m bench run --model far --task dmlab_long
  python -m bench run model=far task=dmlab_long train.steps=100 model.num_layers=2
  python -m bench run --config recipe.yaml train.seed=1
  python -m bench run model=far task=bair_pred --cfg job
  python -m bench run --config results/runs/<record>.json
  python -m bench run -m model=far,far_sliding,dummy task=dmlab_long,bair_pred
"""


def _run_help(parser: argparse.ArgumentParser, args) -> int:
    from bench.compose import parse_overrides
    from bench.experiment import _check_names, _name, run_schema
    from bench.registry import MODELS
    from bench.run import RunConfig
    from bench.tasks import TASKS
    d = RunConfig()
    try:
        settings = [*_flag_settings(args), *parse_overrides([o for o in args.overrides if "," not in o])]
        model, task, scale = _check_names(_name(settings, "model"), _name(settings, "task"), _name(settings, "scale"),
                                          defaults=(d.model, d.task, d.scale))
    except BenchError:
        model, task, scale = d.model, d.task, d.scale
    print(parser.format_help())
    print(RUN_HELP)
    print(f"models: {', '.join(MODELS)}")
    print(f"tasks: {', '.join(TASKS)} (`python -m bench ls` shows their protocols and hashes)")
    print()
    print(f"options of {model} on {task} at scale {scale}, with their defaults and ranges:")
    print(run_schema(model, task, scale).help())
    return 0


def _run_verb(verb: str, argv: list[str]) -> int:
    from bench.compose import expand_sweeps, file_settings, parse_overrides
    from bench.experiment import GROUPS, compose_run, print_documents, run_sweep
    parser = _run_parser(verb)
    args = parser.parse_args(argv)
    if args.help:
        return _run_help(parser, args)
    files = file_settings(args, GROUPS)
    flags = _flag_settings(args)
    cells = expand_sweeps(args.overrides) if args.multirun else [list(args.overrides)]
    if args.cfg:
        return print_documents(files, flags, cells, args.multirun, train_only=verb == "train")
    if args.multirun:
        sweep_items = set(args.overrides)
        base = [a for a in argv if a not in sweep_items and a not in ("-m", "--multirun")]
        return run_sweep(files, flags, cells, verb, [verb, *base], log=print if _rank() == 0 else lambda _: None)
    composed = compose_run(files, [*flags, *parse_overrides(args.overrides)], train_only=verb == "train")
    if _rank() == 0:
        for note in composed.notes:
            print(f"[config] {note}")
    from bench.run import run, score, set_command
    set_command([verb, *argv])  # what the records say was run
    if verb == "score":
        score(composed.run)
    else:
        run(composed.run)
    return 0


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


SUBVERBS = {
    "profile": {"model": ("bench.profile", "training/sampling time, memory and MFU across context lengths"),
                "attention": ("bench.profile_attention", "the frame-causal attention backends"),
                "scoring": ("bench.profile_scoring", "peak memory of scoring a sample store")},
    "study": {"convergence": ("bench.convergence", "FAR vs the video DiT at equal size"),
              "seen_calibration": ("bench.seen_calibration", "the seen/new retrieval proxy on the stand-in")},
}


def _subverb(verb: str, argv: list[str]) -> int:
    import importlib
    table = SUBVERBS[verb]
    default = "model" if verb == "profile" else None
    name = argv[0].replace("-", "_") if argv and not argv[0].startswith("-") and "=" not in argv[0] else None
    if name is None and default is None or argv[:1] in (["-h"], ["--help"]) and default is None:
        lines = [f"usage: python -m bench {verb} {{{','.join(table)}}} [key=value ...] [--config FILE] [--cfg job]", ""]
        lines += [f"  {n:<18} {text}" for n, (_, text) in table.items()]
        print("\n".join(lines))
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if name is not None and name not in table:
        from bench.registry import lookup
        lookup(f"{verb}", name, table)
    module = importlib.import_module(table[name or default][0])
    return module.cli(argv[1:] if name is not None else argv)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, text in RUN_VERBS.items():
        sub.add_parser(verb, help=text, add_help=False)
    for verb, helptext in (("table", "render leaderboards into results/"), ("assets", "list/verify/fetch assets"),
                           ("profile", "model (default) | attention | scoring"),
                           ("study", "convergence | seen_calibration"),
                           ("compare", "paired-bootstrap interval between two run records")):
        sub.add_parser(verb, help=helptext, add_help=False)
    sub.add_parser("ls", help="list models and tasks with their protocol hashes")
    if argv and argv[0] in RUN_VERBS:
        return _run_verb(argv[0], argv[1:])
    if argv and argv[0] in SUBVERBS:
        return _subverb(argv[0], argv[1:])
    if argv and argv[0] == "table":
        from bench.results import main as table_main
        return table_main(["table", *argv[1:]])
    if argv and argv[0] == "assets":
        from bench.assets import main as assets_main
        return assets_main(argv[1:])
    if argv and argv[0] == "compare":
        from bench.compare import main as compare_main
        return compare_main(argv[1:])
    args = parser.parse_args(argv)
    if args.verb == "ls":
        return _ls()
    parser.error(f"unknown verb {args.verb}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
