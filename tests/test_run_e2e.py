"""``bench run`` end to end on a small maze stand-in: records, grids, rescoring, resume, 1 vs 2 processes.

The dummy runs the real quick ``dmlab_long``; FAR runs a registered tiny long-context task (32 px,
12 context and 8 predicted frames, 4 videos) so that training and three samplings take seconds.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench.tasks
from bench.__main__ import main
from bench.data.standins import is_standin, materialize
from bench.tasks import Metric, Part, QuickScale, Task

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.num_layers=1", "model.num_heads=1", "model.context_patch_size=2", "sample_batch_size=16"]


@pytest.fixture(scope="module")
def maze_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "dmlab"
    materialize("dmlab", root, num_train=3, num_eval=16, seed=0)  # quick scale evaluates 16 videos
    assert is_standin(root)
    return root


def tiny_long() -> Task:
    part = Part("A", 12, 8, "action", (Metric("psnr", "best"), Metric("ssim", "best")), num_steps=2)
    return Task(name="tiny_e2e", version=1, dataset="dmlab", split="validation", selection="all", num_videos=4,
                resolution=32, num_frames=20, frame_stride=1, parts=(part,), quick=QuickScale(num_videos=4, num_steps=2))


# `torchrun` runs this driver, which registers the tiny task in each process before the CLI
DRIVER = """import sys
sys.path.insert(0, {tests!r})
import bench.tasks
from test_run_e2e import tiny_long
bench.tasks.TASKS["tiny_e2e"] = tiny_long()
from bench.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _args(tmp: Path, root: Path, model: str = "dummy", *extra: str, task: str = "dmlab_long") -> list[str]:
    return ["run", "--model", model, "--task", task, "--data-root", str(root), "--workdir",
            str(tmp / "runs"), "--results", str(tmp / "results"), "--no-progress", *extra]


def _records(tmp: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "results" / "runs").glob("*.json"))]


def test_dummy_run_writes_record_grid_and_rescores(tmp_path, maze_root, capsys):
    assert main(_args(tmp_path, maze_root)) == 0
    out = capsys.readouterr().out
    assert "| dummy | stand-in | quick |" in out
    (rec,) = _records(tmp_path)
    assert rec["data"] == "stand-in" and rec["task_hash"] and rec["git_commit"]
    assert rec["metrics"]["psnr"]["mean"] > 5 and rec["metrics"]["psnr"]["n"] == 1
    assert "python -m bench assets fetch" in rec["metrics"]["fvd"]["provide"]  # never a fake value
    (path,) = sorted((tmp_path / "results" / "runs").glob("*.json"))
    assert rec["extra"]["grid"] == f"grids/{path.stem}.png"  # named after its record, relative to it
    assert (path.parent / rec["extra"]["grid"]).is_file() and (path.parent / rec["extra"]["curve"]).is_file()
    # seen/new by the stand-in's poses, as the maze's own walk says
    from bench.data.standins import maze
    from bench.registry import get_task
    part = get_task("dmlab_long").at_scale("quick").parts[0]
    tc, tp = part.context_frames, part.predict_frames
    seen = 0
    for i in range(16):
        poses = [tuple(p) for p in maze.trajectory("dmlab", 0, "test", i, num_frames=301).poses[:tc + tp].tolist()]
        seen += sum(p in set(poses[:tc]) for p in poses[tc:])
    split = rec["metrics"]["psnr"]["split"]
    assert split["rule"] == "poses" and split["seen_frames"] == seen and split["new_frames"] == 16 * tp - seen
    assert len(rec["metrics"]["psnr"]["per_video"][0]) == 16
    assert rec["metrics"]["psnr"]["seen"]["videos"] == split["videos_with_seen"]
    # bench score recomputes the same numbers from the store without sampling
    assert main(["score", *_args(tmp_path, maze_root)[1:]]) == 0
    recs = _records(tmp_path)
    assert len(recs) == 2
    assert recs[0]["metrics"]["psnr"]["mean"] == pytest.approx(recs[1]["metrics"]["psnr"]["mean"], abs=1e-9)


def test_far_trains_then_one_and_two_processes_agree(tmp_path, maze_root, monkeypatch):
    monkeypatch.setitem(bench.tasks.TASKS, "tiny_e2e", tiny_long())
    one = tmp_path / "one"
    assert main(_args(one, maze_root, "far", "--no-dummy", *TINY, "train.steps=3", "train.batch_size=2",
                      "train.ckpt_every=2", task="tiny_e2e")) == 0
    (ckpt,) = (one / "runs" / "tiny_e2e__quick" / "far").glob("train-*/final.pt")  # keyed by its configuration
    (rec1,) = _records(one)
    assert rec1["checkpoint"].startswith(f"trained:<outside>/runs/tiny_e2e__quick/far/{ckpt.parent.name}/final.pt:")
    two = tmp_path / "two"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(Path(__file__).parent)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(driver),
           *_args(two, maze_root, "far", "--no-dummy", "--checkpoint", str(ckpt), *TINY, task="tiny_e2e")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    three = tmp_path / "three"
    assert main(_args(three, maze_root, "far", "--no-dummy", "--checkpoint", str(ckpt), *TINY, task="tiny_e2e")) == 0
    (rec2,), (rec3,) = _records(two), _records(three)
    assert rec2["extra"]["world_size"] == 2 and rec3["extra"]["world_size"] == 1
    assert len(rec3["metrics"]["psnr"]["per_video"][0]) == 4 and rec3["model"] == "far"
    for name in ("psnr", "ssim"):
        assert rec2["metrics"][name]["mean"] == pytest.approx(rec3["metrics"][name]["mean"], abs=1e-3), name
    # without a dummy in the run (and none in its workdir) the interval says why it is missing
    assert "--no-dummy" in rec3["metrics"]["psnr"]["vs_reference"]["unavailable"]


def test_training_data_is_at_the_run_scale(tmp_path, maze_root, monkeypatch):
    """`bench train` at quick scale trains on quick-scale clips (frames and resolution), not the protocol's."""
    import bench.run
    from bench.registry import get_task
    seen = {}

    def fake_train(model, dataset, cfg, out, device=None, log=print, **kwargs):
        seen["shape"] = tuple(dataset[0]["video"].shape)
        raise SystemExit(0)
    monkeypatch.setattr(bench.run, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", *_args(tmp_path, maze_root, "far")[1:], *TINY])
    quick = get_task("dmlab_long").at_scale("quick")
    assert seen["shape"] == (quick.num_frames, 3, quick.resolution, quick.resolution)
