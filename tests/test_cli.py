"""The README's commands and the CLI entry point."""

import re
import subprocess

import pytest

from bench.__main__ import main
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


def test_demo_run_completes(capsys):
    assert main(["run", "--model", "far", "--task", "dmlab_long", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "cache_vs_nocache_max_abs_diff" in out


def test_unknown_names_suggest(capsys):
    with pytest.raises(SystemExit, match="dmlab_long"):
        main(["run", "--model", "far", "--task", "dmlab_lon"])
