"""The harness's own machinery on in-memory data: sample store, seeds, resume, scoring, training loop."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import Clip, Prompt, check_sample
from bench.evaluate import (SampleKey, derive_seed, load_part, read_sample, sample_keys, sample_to_store,
                            score_store, write_sample)
from bench.models.dummy import RepeatLastFrame
from bench.registry import MODELS, UnknownName, get_model_factory, get_task, lookup
from bench.tasks import TASKS, Metric, Part, QuickScale, Task
from bench.train import TrainConfig, lr_at, train

RES = 32


def tiny_task(trajectories: int = 2, seeds=(0, 1), videos: int = 5) -> Task:
    part = Part("A", 3, 4, "action", (Metric("psnr", "best"), Metric("ssim", "best"), Metric("mse", "max")),
                guidance_scale=1.5, num_steps=2)
    return Task(name="tiny_long", version=1, dataset="dmlab", split="validation", selection="all",
                num_videos=videos, resolution=RES, num_frames=7, frame_stride=1, parts=(part,),
                trajectories=trajectories, seeds=seeds, quick=QuickScale(num_videos=videos))


class RandomCrops(list):
    """A dataset drawing its crops from the global RNG, as the real training datasets do."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        shift = int(torch.randint(0, RES, (1,)))
        return {**item, "video": torch.roll(item["video"], shift, dims=-2)}


def moving_videos(n: int, frames: int = 7, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 3, RES, RES, generator=g)
    shifts = [torch.roll(base, shifts=t, dims=-1) for t in range(frames)]
    video = torch.cat(shifts, dim=1)
    actions = torch.randint(0, 3, (n, frames), generator=g)
    return [{"video": video[i], "actions": actions[i], "id": f"v{i}"} for i in range(n)]


def tiny_far(task: Task):
    return get_model_factory("far")(task=task, scale="quick", num_layers=1, num_heads=1, codec="unshuffle8",
                                    context_patch_size=2, short_term_ctx_winsize=4)


# ----------------------------------------------------------------------------- registry and tasks

def test_unknown_names_suggest_closest():
    with pytest.raises(UnknownName, match="dmlab_long"):
        get_task("dmlab_lon")
    with pytest.raises(UnknownName, match="far"):
        lookup("model", "fra", MODELS)


def test_task_hashes_are_stable_and_scale_dependent():
    t = get_task("dmlab_long")
    assert t.hash("paper") == t.hash("paper") and t.hash("paper") != t.hash("quick")
    assert len({task.hash("paper") for task in TASKS.values()}) == len(TASKS)
    # any change of a protocol knob changes the hash
    assert replace(t, seeds=(0,)).hash() != t.hash()
    with pytest.raises(ValueError, match="scale"):
        t.at_scale("tiny")


def test_quick_scale_shrinks_but_keeps_the_protocol_shape():
    t = get_task("dmlab_long")
    q = t.at_scale("quick")
    assert q.num_videos < t.num_videos and q.parts[0].condition == "action"
    assert q.parts[0].guidance_scale == 1.5 and q.parts[1].drop_conditions
    assert [m.name for m in q.parts[0].metrics] == ["psnr", "ssim", "lpips"]
    assert q.parts[1].metrics[0].include_context


# ----------------------------------------------------------------------------- sample store

def test_derive_seed_is_pinned():
    # a change here would silently change every stored sample: keep it stable
    assert derive_seed("abc", "far", "A", 0, 1, 2) == derive_seed("abc", "far", "A", 0, 1, 2)
    assert derive_seed("abc", "far", "A", 0, 1, 2) != derive_seed("abc", "far", "A", 0, 1, 3)
    assert derive_seed("x") == 4949498559009812781


def test_store_roundtrip_is_lossless_and_atomic(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    path = SampleKey("A", 0, 3, 1).path(tmp_path)
    write_sample(path, frames)
    back = read_sample(path)
    assert np.array_equal((back * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), frames)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_dummy_store_resumes_without_redoing(tmp_path):
    task, data, model = tiny_task(), moving_videos(5), RepeatLastFrame()
    n = sample_to_store(model, task, data, tmp_path, batch_size=3)
    assert n == len(sample_keys(task, task.parts[0], 5)) == 5 * 2 * 2
    assert sample_to_store(model, task, data, tmp_path, batch_size=3) == 0
    victim = SampleKey("A", 1, 4, 0).path(tmp_path)
    victim.unlink()
    assert sample_to_store(model, task, data, tmp_path) == 1 and victim.exists()


def test_score_matches_direct_computation(tmp_path):
    from bench.metrics import psnr
    task, data = tiny_task(trajectories=1, seeds=(0,)), moving_videos(5)
    sample_to_store(RepeatLastFrame(), task, data, tmp_path)
    scores = score_store(task, data, tmp_path, log=lambda s: None)
    gt = torch.stack([d["video"] for d in data])
    q = lambda x: (x * 255).round() / 255  # the store is uint8
    direct = psnr(q(gt[:, 2:3]).expand(-1, 4, -1, -1, -1), q(gt[:, 3:])).mean(1).mean().item()
    assert scores["psnr"]["mean"] == pytest.approx(direct, abs=1e-4)
    assert scores["psnr"]["n"] == 1 and scores["psnr"]["std"] == 0.0


def test_far_samples_do_not_depend_on_batching_or_processes(tmp_path):
    task, data = tiny_task(videos=3, seeds=(0,)), moving_videos(3)
    torch.manual_seed(0)
    model = tiny_far(task.at_scale("quick"))
    model.use_protocol_sampling(task.parts[0])
    sample_to_store(model, task, data, tmp_path / "one", batch_size=4)
    for rank in (0, 1):  # two "processes", each its share of the videos, batch of one
        sample_to_store(model, task, data, tmp_path / "two", batch_size=1, rank=rank, world=2)
    for key in sample_keys(task, task.parts[0], 3):
        a, b = read_sample(key.path(tmp_path / "one")), read_sample(key.path(tmp_path / "two"))
        assert (a - b).abs().max() <= 1 / 255 + 1e-6, key  # float noise may flip a rounding
    pred, gt, full = load_part(task, task.parts[0], data, tmp_path / "one", 0)
    assert pred.shape == (3, 2, 4, 3, RES, RES) and full.shape == (3, 2, 7, 3, RES, RES)
    # the two trajectories of a video differ (different derived seeds)
    assert (pred[:, 0] - pred[:, 1]).abs().max() > 0.05


def test_check_sample_rejects_bad_output():
    prompt = Prompt(context=torch.zeros(2, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        check_sample(torch.zeros(2, 4, 3, 8, 8), prompt, 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_sample(torch.full((2, 5, 3, 8, 8), 1.5), prompt, 5)


# ----------------------------------------------------------------------------- training loop

class _Interrupt(RuntimeError):
    pass


def _train_copy(task, data, cfg, out, fail_at=None):
    torch.manual_seed(0)
    model = tiny_far(task.at_scale("quick"))
    if fail_at is not None:
        original, calls = model.training_loss, {"n": 0}

        def flaky(batch):
            calls["n"] += 1
            if calls["n"] > fail_at:
                raise _Interrupt("killed")
            return original(batch)
        model.training_loss = flaky
    return model, train(model, data, cfg, out, device="cpu", log=lambda s: None)


def test_training_resumes_exactly_after_a_kill(tmp_path):
    task, data = tiny_task(), RandomCrops(moving_videos(8, seed=1))
    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-3, warmup_steps=2, ckpt_every=2, progress=False)
    _, full = _train_copy(task, data, cfg, tmp_path / "a")
    with pytest.raises(_Interrupt):
        _train_copy(task, data, cfg, tmp_path / "b", fail_at=5)
    assert (tmp_path / "b" / "last.pt").exists() and not (tmp_path / "b" / "final.pt").exists()
    model, resumed = _train_copy(task, data, cfg, tmp_path / "b")
    assert resumed.resumed_from == 4
    assert resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)
    assert not any(p.name.startswith(".") for p in (tmp_path / "b").iterdir())  # no temp files


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) < 0.15 and lr_at(50, cfg) < 1.0


# ----------------------------------------------------------------------------- costs

def test_far_cost_counts_parameters_and_grows_with_frames():
    task = tiny_task().at_scale("quick")
    model = tiny_far(task)
    c1 = model.cost(Clip(frames=7, height=RES, width=RES, context_frames=3))
    c2 = model.cost(Clip(frames=14, height=RES, width=RES, context_frames=3))
    assert c1.params == sum(p.numel() for p in model.trainable_module().parameters())
    assert 0 < c1.train_flops_per_clip < c2.train_flops_per_clip
    assert c1.network_calls_per_clip < c2.network_calls_per_clip


def test_ddp_training_on_two_cpu_processes(tmp_path):
    import json
    import subprocess
    import sys
    script = Path(__file__).with_name("_ddp_train.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 4  # all-reduced losses
    assert all(np.isfinite(r0["losses"]))
    assert r0["param_sum"] == r1["param_sum"]  # DDP kept the replicas identical
    assert (tmp_path / "ckpt" / "final.pt").exists()


def test_lpips_convention_per_protocol():
    """FAR-protocol tasks score LPIPS as FAR's evaluation does ([0, 1] input); ExtDM's keeps [-1, 1]."""
    from bench.metrics.lpips import CONVENTIONS
    from bench.tasks import TASKS
    seen = {}
    for task in TASKS.values():
        for part in task.parts:
            for m in part.metrics:
                if m.name == "lpips":
                    assert m.convention in CONVENTIONS, (task.name, m)
                    seen[task.name] = m.convention
    assert seen.pop("ucf101_pred_mcvd") == "standard"
    assert set(seen) >= {"ucf101_pred", "bair_pred", "bair_pred14", "dmlab_long", "minecraft_long"}
    assert set(seen.values()) == {"far"}
