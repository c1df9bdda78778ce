import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DIR", REPO.parent / "shared"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# Largest absolute error seen per parity case kind, printed at the end of the run.
PARITY_ERRORS: dict[str, float] = defaultdict(float)


def record_error(kind: str, err: float) -> None:
    PARITY_ERRORS[kind] = max(PARITY_ERRORS[kind], err)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if PARITY_ERRORS:
        terminalreporter.section("official parity: max abs error per case kind")
        for kind in sorted(PARITY_ERRORS):
            terminalreporter.write_line(f"{kind:<28s} {PARITY_ERRORS[kind]:.3e}")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: longer end-to-end tests")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
