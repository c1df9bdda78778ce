"""Command line: ``python -m bench <verb> [options]``.

Verbs so far: ``run`` (for now a short, self-checking FAR demo; the protocol harness replaces it)
and ``ls``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="run a model on a task")
    run.add_argument("--model", default="far")
    run.add_argument("--task", default="dmlab_long")
    run.add_argument("--steps", type=int, default=150, help="demo training steps")
    run.add_argument("--seed", type=int, default=0)
    sub.add_parser("ls", help="list models and tasks")
    args = parser.parse_args(argv)

    if args.verb == "ls":
        from bench.demo import MODELS, TASKS
        print("models:", ", ".join(MODELS))
        print("tasks: ", ", ".join(TASKS))
        return 0
    from bench.demo import run_demo
    return run_demo(args.model, args.task, steps=args.steps, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
