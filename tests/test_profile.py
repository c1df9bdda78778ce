"""``bench profile`` writes its record, CSV and plot, with the knobs echoed (timings are not asserted)."""

import csv
import json

from bench.profile import ProfileConfig, main, peak_flops, run_profile


def test_profile_writes_records_and_plot(tmp_path):
    cfg = ProfileConfig(variants=("far", "far_long"), frames=(6, 9), resolution=32, new_frames=2, num_steps=2,
                        warmup=0, iters=1, out=str(tmp_path))
    path = run_profile(cfg, log=lambda s: None)
    record = json.loads(path.read_text())
    assert record["config"]["frames"] == [6, 9] and "CPU" in record["device"]
    rows = record["rows"]
    modes = {(r["variant"], r["measure"], r["mode"]) for r in rows}
    assert ("far", "sample_per_frame", "cache") in modes and ("far", "sample_per_frame", "no_cache") in modes
    assert ("far_long", "sample_per_frame", "multilevel_cache") in modes
    for r in rows:
        assert r["seconds"] > 0 and r["analytic_flops"] > 0 and r["mfu"] is None  # no MFU without a GPU peak
    train = {r["frames"]: r for r in rows if r["variant"] == "far" and r["measure"] == "train_step"}
    assert train[9]["analytic_flops"] > train[6]["analytic_flops"]
    cached = {r["frames"]: r for r in rows if r["mode"] == "cache"}
    uncached = {r["frames"]: r for r in rows if r["mode"] == "no_cache" and r["variant"] == "far"}
    assert cached[9]["analytic_flops"] < uncached[9]["analytic_flops"]  # the cache saves work
    with open(path.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert path.with_suffix(".png").stat().st_size > 1000


def test_peak_table_and_cli_errors(tmp_path):
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("some CPU") is None
    import pytest
    with pytest.raises(SystemExit, match="bad override"):
        main(["nonsense=1"])
