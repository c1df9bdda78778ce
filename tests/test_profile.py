"""``bench profile`` writes its record, CSV and plot, with the knobs echoed (timings are not asserted)."""

import csv
import json

from bench.profile import ProfileConfig, peak_flops, run_profile


def test_profile_writes_records_and_plot(tmp_path):
    cfg = ProfileConfig(variants=("far", "far_long"), frames=(6, 9), resolution=32, new_frames=2, num_steps=2,
                        warmup=0, iters=1, out=str(tmp_path), cpu_memory="off")
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


def test_cpu_peak_memory_is_measured_in_a_process_per_point(tmp_path):
    """On the CPU every measure runs in a fresh process; its peak RSS growth is the point's peak memory."""
    cfg = ProfileConfig(variants=("far",), frames=(6,), resolution=32, new_frames=2, warmup=0, iters=1,
                        sample=False, out=str(tmp_path))
    assert cfg.cpu_memory == "process"  # the default
    record = json.loads(run_profile(cfg, log=lambda s: None).read_text())
    (row,) = record["rows"]
    assert row["measure"] == "train_step" and row["memory_measure"].startswith("CPU: peak resident set size")
    # the model, its AdamW state and the activations: more than the parameters alone, less than the process
    assert 4 * row["params"] < row["peak_memory_bytes"] < row["peak_rss_bytes"]
    with open(tmp_path / "profile_cpu_small.csv") as f:
        assert int(next(csv.DictReader(f))["peak_memory_bytes"]) == row["peak_memory_bytes"]


def test_peak_table_and_cli_errors(tmp_path, capsys):
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("some CPU") is None
    from bench.__main__ import main
    for argv, says in ((["nonsense=1"], "error: unknown option nonsense; valid:"),
                       (["model", "frames=16,32"], "error: frames=16,32 is a sweep: run the grid with -m (--multirun); "
                                                   "a list value is written with brackets, frames=[16,32]"),
                       (["variants=[far,far_lon]"], "error: variants=[far, far_lon]: expected a list of any number of "
                                                    "strings, each one of 'far', 'far_long'"),
                       (["frames=[3]"], "error: frames=[3]: every clip length must exceed new_frames=4")):
        assert main(["profile", *argv, f"out={tmp_path}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(says) and err.count("\n") == 1, err
    assert main(["profile", "model", "frames=[16,32]", "--cfg", "job"]) == 0
    assert "frames:\n- 16\n- 32" in capsys.readouterr().out
