import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DIR", REPO.parent / "shared"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# Largest errors seen per parity case kind, printed at the end of the run: the absolute error, the
# scaled error |actual - expected| / max(1, |expected|) that the tolerance rule bounds, and the
# largest fraction of its allowed error that any element used.
PARITY_ERRORS: dict[str, float] = defaultdict(float)
PARITY_SCALED: dict[str, float] = defaultdict(float)
PARITY_USED: dict[str, float] = defaultdict(float)


def record_error(kind: str, err: float, scaled: float | None = None, used: float | None = None) -> None:
    PARITY_ERRORS[kind] = max(PARITY_ERRORS[kind], err)
    PARITY_SCALED[kind] = max(PARITY_SCALED[kind], err if scaled is None else scaled)
    if used is not None:
        PARITY_USED[kind] = max(PARITY_USED[kind], used)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if PARITY_ERRORS:
        terminalreporter.section("official parity: max error per case kind")
        terminalreporter.write_line(f"{'kind':<28s} {'abs':>10s} {'scaled':>10s} {'of allowed':>11s}")
        for kind in sorted(PARITY_ERRORS):
            used = f"{100 * PARITY_USED[kind]:10.1f}%" if kind in PARITY_USED else f"{'exact':>11s}"
            terminalreporter.write_line(f"{kind:<28s} {PARITY_ERRORS[kind]:10.3e} {PARITY_SCALED[kind]:10.3e} {used}")
        terminalreporter.write_line("scaled = |actual - expected| / max(1, |expected|), allowed <= 3e-5 (tighter "
                                    "for metrics); exact = compared bit for bit")


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
