"""``bench run`` is reproducible and its records true: seeding, checkpoint reuse, locks, writability,
option validation, data checks before training, one-line errors.

The runs use a tiny registered task (7 frames at 32 px, 2 videos) on a small maze stand-in, so a
full train -> sample -> score -> record cycle takes seconds.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bench.tasks
from bench.__main__ import main
from bench.data.standins import materialize
from bench.tasks import Metric, Part, QuickScale, Task
from bench.train import load_checkpoint
from conftest import REPO

TINY = ["model.num_layers=1", "model.num_heads=1", "model.codec=unshuffle8",
        "model.short_term_ctx_winsize=4"]
TRAIN = ["train.steps=4", "train.batch_size=2", "train.ckpt_every=2", "train.warmup_steps=1"]


def tiny_task() -> Task:
    part = Part("A", 3, 4, "action", (Metric("psnr", "best"), Metric("mse", "max")), num_steps=2)
    return Task(name="tiny_long", version=1, dataset="dmlab", split="validation", selection="all", num_videos=2,
                resolution=32, num_frames=7, frame_stride=1, parts=(part,), quick=QuickScale(num_videos=2))


@pytest.fixture(scope="module")
def maze(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "dmlab"
    materialize("dmlab", root, num_train=3, num_eval=2, seed=0)
    return root


@pytest.fixture(autouse=True)
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(bench.tasks.TASKS, "tiny_long", tiny_task())
    monkeypatch.setenv("FARZOO_HOME", str(tmp_path / "home"))


def args(tmp: Path, root: Path, verb: str = "run", *extra: str, model: str = "far") -> list[str]:
    return [verb, "--model", model, "--task", "tiny_long", "--data-root", str(root), "--workdir", str(tmp / "runs"),
            "--results", str(tmp / "results"), "--no-progress", "--no-dummy", *extra]


def final(tmp: Path, model: str = "far") -> list[Path]:
    return sorted((tmp / "runs" / "tiny_long__quick" / model).glob("train-*/final.pt"))


def records(tmp: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "results" / "runs").glob("*.json"))]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- reproducibility

def perturbed_rng(seed: int) -> None:
    """Leave the global RNG in some state, as a fresh or a busy process would."""
    torch.manual_seed(seed)
    torch.rand(seed % 7 + 1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, maze):
    """One complete tiny run (train 4 steps, sample, score, record) that other tests compare with."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(bench.tasks.TASKS, "tiny_long", tiny_task())
        mp.setenv("FARZOO_HOME", str(out / "home"))
        perturbed_rng(0)
        assert main(args(out, maze, "run", *TINY, *TRAIN)) == 0
    return out


def test_same_command_gives_identical_weights_samples_and_numbers(tmp_path, maze, reference):
    """The model is built after seeding: whatever the process did before, the same command gives
    bit-identical weights, samples and metric values (three 40-step runs used to give 10.52/10.62/10.65 dB)."""
    perturbed_rng(12345)
    assert main(args(tmp_path, maze, "run", *TINY, *TRAIN)) == 0
    (c0,), (c1,) = final(reference), final(tmp_path)
    (r0,), (r1,) = records(reference), records(tmp_path)
    assert c0.parent.name == c1.parent.name  # the same training configuration, the same directory name
    assert same_tensors(load_checkpoint(c0)["ema"], load_checkpoint(c1)["ema"])
    assert r0["checkpoint"].split(":sha256:")[1] == r1["checkpoint"].split(":sha256:")[1]
    for name in ("psnr", "mse"):
        assert r0["metrics"][name]["values"] == r1["metrics"][name]["values"], name
    s0, s1 = (sorted((d / "runs").rglob("samples-*/**/*.npz")) for d in (reference, tmp_path))
    assert len(s0) == len(s1) > 0
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(s0, s1))


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, maze, reference, monkeypatch):
    import bench.train
    original = bench.train.optimizer_step

    def crash_at_step_3(*a, **k):
        if a[2] == 3:
            raise KeyboardInterrupt("killed")
        return original(*a, **k)
    monkeypatch.setattr(bench.train, "optimizer_step", crash_at_step_3)
    perturbed_rng(1)
    with pytest.raises(KeyboardInterrupt):
        main(args(tmp_path, maze, "train", *TINY, *TRAIN))
    assert list((tmp_path / "runs").rglob("last.pt")) and not final(tmp_path)
    monkeypatch.setattr(bench.train, "optimizer_step", original)
    perturbed_rng(2)
    assert main(args(tmp_path, maze, "train", *TINY, *TRAIN)) == 0  # resumes from step 2
    (a,), (b,) = final(reference), final(tmp_path)
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert same_tensors(sa["ema"], sb["ema"]) and sa["losses"] == sb["losses"]


# ----------------------------------------------------------------------------- checkpoint reuse

def test_a_checkpoint_is_reused_only_for_its_own_configuration(tmp_path, maze, reference, capsys):
    shutil.copytree(reference / "runs", tmp_path / "runs")
    (first,) = final(tmp_path)  # 4 steps with the defaults of TRAIN
    # other settings: trained into their own directory; the record states what was really used
    assert main(args(tmp_path, maze, "run", *TINY, "train.steps=3", "train.batch_size=2", "train.lr=3e-4",
                     "model.condition_dropout=0.3")) == 0
    dirs = final(tmp_path)
    assert len(dirs) == 2 and first in dirs
    (rec,) = records(tmp_path)
    assert rec["command"] == ("python -m bench run --model far --task tiny_long --data-root '<outside>/dmlab' "
                              "--workdir '<outside>/runs' --results '<outside>/results' --no-progress --no-dummy "
                              + " ".join(TINY) + " train.steps=3 train.batch_size=2 train.lr=3e-4 "
                              "model.condition_dropout=0.3")
    assert rec["extra"]["train"]["steps"] == 3 and rec["extra"]["train"]["lr"] == 3e-4
    assert rec["model_config"]["condition_dropout"] == 0.3
    second = next(p for p in dirs if p != first)
    assert rec["checkpoint"].startswith(f"trained:<outside>/runs/tiny_long__quick/far/{second.parent.name}/final.pt:")
    assert load_checkpoint(second)["step"] == 3 and load_checkpoint(first)["step"] == 4
    # the same settings again: reused, not retrained
    capsys.readouterr()
    assert main(args(tmp_path, maze, "train", *TINY, *TRAIN)) == 0
    assert "same configuration); reusing it" in capsys.readouterr().out
    # sampling knobs do not change what training produces: the weights are reused
    assert main(args(tmp_path, maze, "train", *TINY, *TRAIN, "model.num_steps=3")) == 0
    assert "reusing it" in capsys.readouterr().out and len(final(tmp_path)) == 2


def test_train_refuses_a_checkpoint_of_another_configuration(tmp_path):
    from test_harness import moving_videos, tiny_far
    from test_harness import tiny_task as harness_task

    from bench.errors import CheckpointError
    from bench.train import TrainConfig, train
    task = harness_task().at_scale("quick")
    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, progress=False)
    train(tiny_far(task), moving_videos(4), cfg, tmp_path, device="cpu", log=lambda s: None)
    with pytest.raises(CheckpointError, match=r"final\.pt was trained with another configuration \(train\.lr: "
                                              r"0\.0001 -> 0\.0003"):
        train(tiny_far(task), moving_videos(4), TrainConfig(steps=2, batch_size=2, warmup_steps=1, lr=3e-4,
                                                              progress=False), tmp_path, device="cpu")


def test_corrupt_last_checkpoint_is_moved_aside_and_training_restarts(tmp_path, maze, reference, capsys):
    (want,) = final(reference)
    cut = tmp_path / "runs" / "tiny_long__quick" / "far" / want.parent.name
    cut.mkdir(parents=True)
    (cut / "last.pt").write_bytes(want.read_bytes()[:200])  # a truncated file (full disk, killed copy)
    assert main(args(tmp_path, maze, "train", *TINY, *TRAIN)) == 0
    out = capsys.readouterr().out
    assert f"{cut / 'last.pt'}: not a readable PyTorch checkpoint" in out and "moved it aside" in out
    assert [p.name.split("-")[0] for p in cut.glob("last.pt.corrupt-*")] == ["last.pt.corrupt"]
    assert same_tensors(load_checkpoint(want)["ema"], load_checkpoint(cut / "final.pt")["ema"])


def test_a_text_file_as_checkpoint_is_one_line(tmp_path, maze, capsys):
    for name in ("notes.txt", "notes.pt"):
        bad = tmp_path / name
        bad.write_text("these are not weights\n")
        assert main(args(tmp_path, maze, "run", *TINY, "--checkpoint", str(bad))) == 2
        line = one_error_line(capsys)
        assert str(bad) in line and "expected a bench training checkpoint" in line


# ----------------------------------------------------------------------------- locks and places

def test_a_second_run_in_the_same_directory_refuses(tmp_path, maze, capsys):
    from bench.run import RunLock
    run_dir = tmp_path / "runs" / "tiny_long__quick" / "far"
    with RunLock(run_dir):
        assert main(args(tmp_path, maze, "run", *TINY, *TRAIN)) == 2
        line = one_error_line(capsys)
        assert f"{run_dir} is in use by another run (pid {os.getpid()}" in line and "lock_wait_s" in line
    assert not final(tmp_path)  # nothing was trained
    # a lock dies with its process, crash included
    pid = os.fork()
    if pid == 0:  # a child that takes the lock and dies without releasing it
        RunLock(run_dir, log=lambda s: None).acquire()
        os._exit(0)
    os.waitpid(pid, 0)
    with RunLock(run_dir):
        pass


def test_unwritable_directories_are_found_before_any_work(tmp_path, maze, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a path below a regular file cannot be created, even by root
    cases = {"--workdir": "work dir (--workdir)", "--results": "results dir (--results)"}
    for flag, what in cases.items():
        argv = args(tmp_path, maze, "run", *TINY, *TRAIN)
        argv[argv.index(flag) + 1] = str(blocker / "sub")
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"error: {what} {blocker / 'sub'}") and "not writable" in line
    monkeypatch.setenv("FARZOO_HOME", str(blocker / "home"))  # stand-ins and the asset hash cache go there
    assert main(args(tmp_path, maze, "run", *TINY, *TRAIN)) == 2
    assert one_error_line(capsys).startswith(f"error: $FARZOO_HOME (stand-in data, asset hashes) {blocker / 'home'} "
                                             "is not writable")
    assert not (tmp_path / "runs").exists() or not final(tmp_path)


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("option, says", [
    ("train.steps=-1", "train.steps=-1: expected an integer >= 1"),
    ("train.steps=0", "train.steps=0: expected an integer >= 1"),
    ("train.steps=abc", "train.steps=abc: expected an integer >= 1, got a string"),
    ("train.lr=0", "train.lr=0: expected a number > 0"),
    ("model.num_layers=0", "model.num_layers=0: expected an integer >= 1"),
    ("model.condition_dropout=1.5", "model.condition_dropout=1.5: expected a number >= 0 and <= 1"),
    ("sample_batch_size=-1", "sample_batch_size=-1: expected an integer >= 1"),
    ("scale=huge", "scale=huge: expected one of 'quick', 'paper'"),
    ("train.stepz=3", "unknown option train.stepz; did you mean train.steps?"),
    ("model.head_dim=16", "model far cannot be built with model.num_layers=1 model.num_heads=1 model.codec=unshuffle8 "
                          "model.short_term_ctx_winsize=4 model.head_dim=16: axes_dims_rope (16, 24, 24) must sum "
                          "to head_dim 16"),
])
def test_every_option_is_validated_before_work(tmp_path, maze, capsys, option, says):
    assert main(args(tmp_path, maze, "run", *TINY, option)) == 2
    assert one_error_line(capsys) == f"error: {says}"
    assert not (tmp_path / "runs").exists()  # not even the work dir was touched


def test_config_ranges_live_in_field_metadata():
    """One validator over every config dataclass; the ranges are data a structured-config layer can read."""
    from dataclasses import fields

    from bench.config import expectation, validate
    from bench.errors import ConfigError
    from bench.models.far import FARModelConfig
    from bench.models.token_ar import TokenARModelConfig
    from bench.models.video_dit import VideoDiTModelConfig
    from bench.run import RunConfig
    from bench.train import TrainConfig
    from bench.registry import MODEL_CONFIGS, MODELS
    assert set(MODEL_CONFIGS) == set(MODELS)  # every model's options can be checked without building it
    for cls in (TrainConfig, RunConfig, FARModelConfig, VideoDiTModelConfig, TokenARModelConfig):
        validate(cls())  # the defaults are valid
        assert any(f.metadata for f in fields(cls)), cls
    assert {f.name: dict(f.metadata) for f in fields(TrainConfig)}["steps"] == {"ge": 1}
    assert expectation(TrainConfig, "betas") == "a list of 2 numbers >= 0 and < 1"
    with pytest.raises(ConfigError, match=r"train\.betas=\[0\.9, 1\.5\]: expected a list of 2 numbers >= 0 and < 1"):
        validate(TrainConfig(betas=(0.9, 1.5)), "train")
    with pytest.raises(ConfigError, match=r"model\.top_k=0"):
        validate(TokenARModelConfig(top_k=0), "model")


# ----------------------------------------------------------------------------- data errors

def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[:len(data) // 2]))
    else:  # flip bits a third into the file (inside the data, away from headers)
        for i in range(len(data) // 3, len(data) // 3 + 8):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("split, how, says", [
    ("test", "truncate", "not a readable npz archive"),  # an evaluation file
    ("train", "flip", "array 'video'"),  # a training file: corrupt compressed bytes (was a raw zlib.error)
])
def test_bad_data_is_one_line_before_training(tmp_path, maze, capsys, split, how, says):
    root = tmp_path / "dmlab"
    shutil.copytree(maze, root)
    bad = sorted((root / split).rglob("*.npz"))[0]
    corrupt(bad, how)
    assert main(args(tmp_path, root, "run", *TINY, *TRAIN)) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {bad}: ") and says in line and f"fix: delete the stand-in (rm -r {root})" in line
    assert not final(tmp_path) and not list((tmp_path / "runs").rglob("last.pt"))  # found before training


FIX = Path(os.environ.get("BENCH_SHARED_DIR", REPO.parent / "shared")) / "fixtures" / "datasets"


def _check(dataset_dir: Path, task_name: str, train: bool = False):
    from dataclasses import replace

    from bench.data.check import check_eval, check_train
    task = replace(bench.tasks.TASKS[task_name].at_scale("quick"), num_videos=0)
    return check_train(task, dataset_dir, deep=True) if train else check_eval(task, dataset_dir)


@pytest.mark.parametrize("dataset, task, pick, how, says", [
    ("bair", "bair_pred", "softmotion30_44k/test/*.tfrecords", "flip", "data CRC mismatch"),
    ("greenearthnet", "greenearthnet", "ood-t_chopped/*/*.nc", "truncate", "not a readable NetCDF minicube"),
    ("greenearthnet", "greenearthnet", "ood-t_chopped/*/*.nc", "drop s2_SCL", "variable 's2_SCL': missing"),
    ("minecraft", "minecraft_long", "test/0/000000.mp4", "truncate", "000000.mp4"),
    ("dmlab", "dmlab_long", "test/0/5.npz", "flip", "array 'video'"),
])
def test_every_real_format_error_names_the_file_and_field(tmp_path, dataset, task, pick, how, says):
    from bench.errors import DataError
    root = tmp_path / dataset
    shutil.copytree(FIX / dataset, root)
    (bad,) = sorted(root.glob(pick))[:1]
    if how.startswith("drop"):
        import xarray as xr
        with xr.open_dataset(bad) as cube:
            cube = cube.load().drop_vars(how.split()[1])
        cube.to_netcdf(bad)
    else:
        corrupt(bad, how)
    with pytest.raises(DataError) as e:
        _check(root, task)
    assert str(e.value).startswith(str(bad)) and says in str(e.value) and "\n" not in str(e.value)


def test_missing_variable_in_a_training_cube_is_found_before_training(tmp_path):
    from bench.errors import DataError
    import xarray as xr
    root = tmp_path / "greenearthnet"
    shutil.copytree(FIX / "greenearthnet", root)
    (bad,) = root.glob("train/*/*.nc")
    with xr.open_dataset(bad) as cube:
        cube = cube.load().drop_vars("eobs_tg")
    cube.to_netcdf(bad)
    with pytest.raises(DataError, match=r"variable 'eobs_tg': missing"):
        _check(root, "greenearthnet", train=True)


# ----------------------------------------------------------------------------- torchrun

def test_torchrun_with_an_indivisible_batch_is_one_line_from_rank_0(tmp_path, maze):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3", "-m", "bench",
           "run", "--model", "far", "--task", "dmlab_long", "--data-root", str(maze), "--workdir",
           str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--no-progress", "train.batch_size=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "train.batch_size" in line]
    assert proc.returncode != 0
    assert ours == ["error: train.batch_size=4: expected a multiple of the 3 processes (torchrun --nproc_per_node 3); "
                    "use e.g. train.batch_size=3"], proc.stderr[-3000:]
    assert "bench/" not in proc.stderr  # no traceback through the harness from any rank
    assert not (tmp_path / "runs").exists()
