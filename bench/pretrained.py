"""Weights trained by this project and shipped inside it.

Quick-scale FAR-Long on the DMLab stand-in learns recognisable maze views only after about an hour
on a 2-core CPU, longer than a first run should take. So the project ships the EMA weights of that
training (``bench/weights``, safetensors, SHA-256 pinned below) and ``bench run`` samples them when
the run's training configuration is exactly the one they were trained with; ``--from-scratch``
(``from_scratch=true``) trains instead, and any other configuration trains as before.

Each file carries its provenance in the safetensors metadata: the training identity (recipe, model
config, task, stand-in data; ``bench.run.training_identity``), the exact ``bench train`` command that
reproduces it, the steps and losses, and the torch version and git commit it was trained with.
``python -m bench.pretrained export <final.pt> <out.safetensors> --command "..."`` writes such a file
from a ``bench train`` checkpoint (atomically) and prints the SHA-256 to pin.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import CheckpointError
from bench.paths import replacing

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Shipped:
    model: str
    task: str
    scale: str
    file: str  # under bench/weights
    sha256: str
    command: str  # the `bench train` command that reproduces the file (up to the float noise of the CPU)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def label(self) -> str:
        """How records name it: portable, with the pinned hash."""
        return f"shipped:bench/weights/{self.file}:sha256:{self.sha256[:16]}"


SHIPPED: tuple[Shipped, ...] = (
    # 2000 steps at batch 4 on the 128-video DMLab stand-in (52 min on one core of a 2-core CPU); loss
    # 0.389 over the first 200 steps -> 0.073 over the last 200
    Shipped("far", "dmlab_long", "quick", "far__dmlab_long__quick.safetensors",
            sha256="24b56c7682467949c649c3e2d67cc643a60ebb8e39bf042076b065fbaf75318f",
            command="python -m bench train --model far --task dmlab_long"),
)

# identity fields that do not change what the weights are for: the number of training processes
# (sampling with 2 processes uses the same weights)
_NOT_COMPARED = ("processes",)


def find(model: str, task: str, scale: str) -> Shipped | None:
    """The shipped weights of (model, task, scale), if the project has some."""
    for s in SHIPPED:
        if (s.model, s.task, s.scale) == (model, task, scale):
            return s
    return None


def verify(s: Shipped) -> Path:
    """The file, checked against its pin (hashed once per path, size and mtime, as the asset store's
    files); a missing or altered file raises :class:`CheckpointError` with the fix."""
    from bench.assets import file_sha256
    fix = (f"reinstall the project (`git checkout -- bench/weights/{s.file}`), or train instead with "
           f"`python -m bench run --model {s.model} --task {s.task} --from-scratch`")
    if not s.path.is_file():
        raise CheckpointError(f"shipped weights {s.path} are missing; {fix}")
    digest = file_sha256(s.path)
    if digest != s.sha256:
        raise CheckpointError(f"shipped weights {s.path}: checksum mismatch (sha256 {digest[:16]}..., pinned "
                              f"{s.sha256[:16]}... in bench.pretrained.SHIPPED); {fix}")
    return s.path


def metadata(path: Path) -> dict:
    """The provenance stored in a shipped file (JSON values decoded)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def comparable(identity: dict | str) -> str:
    """The canonical text of a training identity (``bench.train.canonical``) less the fields that do
    not change which weights to sample."""
    from bench.train import canonical
    if isinstance(identity, str):
        identity = json.loads(identity)
    return canonical({k: v for k, v in identity.items() if k not in _NOT_COMPARED})


def load(s: Shipped, module: torch.nn.Module, identity: dict) -> tuple[bool, str]:
    """Load the shipped weights into ``module`` if they were trained with ``identity`` (less the
    number of processes). Returns (loaded, why not)."""
    from safetensors.torch import load_file

    from bench.train import identity_diff
    path = verify(s)
    stored = metadata(path).get("identity")
    if not isinstance(stored, dict):
        raise CheckpointError(f"shipped weights {path}: no training identity in the file's metadata")
    theirs, ours = comparable(stored), comparable(identity)
    if theirs != ours:
        return False, f"this run's training configuration differs from theirs ({identity_diff(theirs, ours)})"
    try:
        module.load_state_dict(load_file(str(path)))
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"shipped weights {path} do not fit the model ({str(e)[:300]})") from None
    return True, ""


def export(checkpoint: Path, out: Path, command: str) -> str:
    """Write the EMA weights of a ``bench train`` checkpoint with their provenance as safetensors
    (to a temporary file, then renamed); returns the file's sha256."""
    from safetensors.torch import save_file

    from bench.assets import sha256_file
    from bench.results import collect_provenance
    from bench.train import load_checkpoint
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "ema" not in state or "identity" not in state:
        raise CheckpointError(f"{checkpoint}: expected a final.pt of `python -m bench train` ('ema' and "
                              f"'identity' entries)")
    identity = state["identity"]  # the canonical text train() stores
    identity = json.loads(identity) if isinstance(identity, str) else identity
    losses = [float(v) for v in state.get("losses", [])]
    k = max(1, len(losses) // 10)
    prov = collect_provenance(torch.device("cpu"))
    meta = {"identity": identity, "command": command, "steps": state.get("step"),
            "loss_first_tenth": sum(losses[:k]) / k if losses else None,
            "loss_last_tenth": sum(losses[-k:]) / k if losses else None,
            "torch": torch.__version__, "git_commit": prov.get("git_commit")}
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state["ema"].items()}
    with replacing(out) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v, sort_keys=True) for k, v in meta.items()})
    return sha256_file(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m bench.pretrained",
                                description="write shipped weights from a `bench train` checkpoint")
    sub = p.add_subparsers(dest="verb", required=True)
    e = sub.add_parser("export")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--command", required=True, help="the exact `bench train` command that made the checkpoint")
    args = p.parse_args(argv)
    digest = export(args.checkpoint, args.out, args.command)
    print(f"{args.out}: sha256 {digest} ({args.out.stat().st_size / 2**20:.1f} MiB); pin it in "
          f"bench.pretrained.SHIPPED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
