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


def test_overrides_are_typed_and_routed():
    from bench.__main__ import parse_overrides
    run, model, train = parse_overrides(["scale=paper", "model.num_layers=2", "train.lr=3e-4",
                                         "model.codec=unshuffle8", "compare_dummy=false"])
    assert run == {"scale": "paper", "compare_dummy": False}
    assert model == {"num_layers": 2, "codec": "unshuffle8"} and train == {"lr": 3e-4}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["oops"])
    assert main(["run", "bogus=1"]) == 2
