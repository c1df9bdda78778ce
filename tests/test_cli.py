"""The README's commands and the CLI entry point."""

import re
import subprocess

import pytest

from bench.__main__ import main
from bench.errors import ConfigError
from conftest import REPO


def test_readme_commands_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- test-command:begin -->\n```bash\n(.+)\n```\n<!-- test-command:end -->", readme)
    assert block, "README must hold the test command between the markers"
    assert "python -m pytest" in block.group(1)
    assert "python -m bench run --model far --task dmlab_long" in readme
    out = subprocess.run(["bash", "-c", "sed -n '/<!-- test-command:begin -->/,/<!-- test-command:end -->/p' "
                          "README.md | grep -v '^<!--' | grep -v '^```'"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == block.group(1), ".ci/run's extraction must yield exactly the README command"
    assert "README.md" in (REPO / ".ci" / "run").read_text()


def test_ls_lists_every_model_and_task_with_hashes(capsys):
    from bench.registry import MODELS
    from bench.tasks import TASKS
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert f"  {name}" in out
    for name, task in TASKS.items():
        assert name in out and task.hash("paper") in out and task.hash("quick") in out


def test_unknown_names_suggest(capsys):
    assert main(["run", "--model", "far", "--task", "dmlab_lon"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'dmlab_lon'; did you mean dmlab_long") and err.count("\n") == 1
    assert main(["run", "--model", "fra", "--task", "dmlab_long"]) == 2
    assert "did you mean far" in capsys.readouterr().err


def test_overrides_are_read_by_hydras_parser():
    """key=value in Hydra's grammar: typed values, lists, null, quoted strings; no hand-made parsing."""
    from bench.compose import expand_sweeps, parse_overrides
    got = {s.key: s.value for s in parse_overrides(["scale=paper", "model.num_layers=2", "train.lr=3e-4",
                                                    "model.codec=unshuffle8", "compare_dummy=false", "device=null",
                                                    "train.betas=[0.9,0.99]", "data_root='/tmp/a b'"])}
    assert got == {"scale": "paper", "model.num_layers": 2, "train.lr": 3e-4, "model.codec": "unshuffle8",
                   "compare_dummy": False, "device": None, "train.betas": [0.9, 0.99], "data_root": "/tmp/a b"}
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["oops"])
    with pytest.raises(ConfigError, match=r"model=far,dummy is a sweep: run the grid with -m"):
        parse_overrides(["model=far,dummy"])
    assert expand_sweeps(["model=far,dummy", "task=a,b", "train.steps=3"]) == [
        ["model=far", "task=a", "train.steps=3"], ["model=far", "task=b", "train.steps=3"],
        ["model=dummy", "task=a", "train.steps=3"], ["model=dummy", "task=b", "train.steps=3"]]
    assert main(["run", "bogus=1"]) == 2


def test_nothing_parses_overrides_by_hand():
    """Every ``key=value`` goes through bench.compose (Hydra's parser); no module splits them itself."""
    for path in sorted((REPO / "bench").rglob("*.py")):
        text = path.read_text()
        assert 'partition("=")' not in text and "partition('=')" not in text, path
        assert "split(\"=\"" not in text, path
