"""Smoke tests of the FAR-vs-DiT convergence study (``bench study convergence``) on a tiny stand-in."""

import csv
import json
from dataclasses import replace

import pytest
import torch

from bench.__main__ import main
from bench.convergence import StudyConfig, build_models, default_train, study_task, train_with_evals
from bench.data.standins import materialize
from bench.run import DataSource, train_dataset
from bench.train import train

TINY = ["model.num_layers=1", "model.num_heads=1", "train.batch_size=2", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def bair_root(tmp_path_factory):
    return materialize("bair", tmp_path_factory.mktemp("standin") / "bair", num_train=4, num_eval=2, workers=1)


def test_study_writes_table_and_plot(bair_root, tmp_path):
    out = tmp_path / "convergence"
    argv = [f"data_root={bair_root}", f"out={out}", "steps=2", "eval_every=1", "eval_videos=2",
            "windows_per_video=2", "loss_draws=1", *TINY]
    assert main(["study", "convergence", *argv]) == 0
    for ext in ("csv", "md", "png", "json"):
        assert (out / f"convergence.{ext}").stat().st_size > 0
    assert not list(out.glob(".*tmp"))  # atomic writes leave nothing behind
    study = json.loads((out / "convergence.json").read_text())
    params = study["params"]
    assert set(params) == {"far", "video_dit"}
    assert abs(params["far"] - params["video_dit"]) <= 0.05 * max(params.values())
    codecs = {name: cfg["codec"] for name, cfg in study["model_configs"].items()}
    assert set(codecs.values()) == {study["codec"]} == {"unshuffle8"}
    rows = list(csv.DictReader((out / "convergence.csv").open()))
    for name in ("far", "video_dit"):
        assert [int(r["step"]) for r in rows if r["model"] == name] == [0, 1, 2]
    assert [r["model"] for r in rows if r["model"] == "dummy"] == ["dummy"]
    # before training the zero-initialised outputs predict zero velocity: the common loss is the same
    first = {r["model"]: float(r["common_loss"]) for r in rows if r["step"] == "0"}
    assert first["far"] == pytest.approx(first["video_dit"], rel=1e-6)
    md = (out / "convergence.md").read_text()
    assert "python -m bench study convergence data_root=" in md and "| far |" in md and "| video_dit |" in md


def test_default_models_are_matched():
    cfg = StudyConfig()
    models = build_models(study_task(cfg), cfg, {})
    counts = [sum(p.numel() for p in m.trainable_module().parameters()) for m in models.values()]
    assert max(counts) - min(counts) <= 0.05 * max(counts)
    far, dit = models["far"], models["video_dit"]
    assert type(far.codec) is type(dit.codec) and far.model_config.codec == dit.model_config.codec
    video = torch.rand(1, 2, 3, 64, 64)
    assert torch.equal(far.codec.encode(video), dit.codec.encode(video))


def test_loop_matches_harness_train(bair_root, tmp_path):
    """The study's loop is bench.train.train's: same data, same seed -> the same EMA weights."""
    cfg = StudyConfig(eval_videos=2)
    task = study_task(cfg)
    data = train_dataset(task, DataSource("bair", bair_root, standin=True))
    tcfg = replace(default_train(cfg), steps=3, batch_size=2, warmup_steps=1)
    options = {"num_layers": 1, "num_heads": 1}
    a, b = (build_models(task, cfg, options)["far"] for _ in range(2))
    b.trainable_module().load_state_dict(a.trainable_module().state_dict())
    seen = []
    train(a, data, tcfg, tmp_path / "train", device="cpu", log=lambda _: None)
    train_with_evals(b, data, tcfg, {0, 2}, lambda step, *_: seen.append(step), device="cpu")
    assert seen == [0, 2]
    for (k, x), y in zip(a.trainable_module().state_dict().items(), b.trainable_module().state_dict().values()):
        assert torch.equal(x, y), k


def test_study_options_are_checked_before_work(capsys, tmp_path):
    """The study is a verb on the same config machinery: typed, ranged, did-you-mean, one line."""
    for argv, says in ((["steps=0"], "steps=0: expected an integer >= 1"),
                       (["train.steps=3"], "train.steps is not an option here; the number of training steps is the "
                                           "study's steps=N"),
                       (["model.num_layrs=2"], "unknown option model.num_layrs; did you mean model.num_layers?"),
                       (["models=[far,fra]"], "unknown model 'fra'; did you mean far"),
                       (["eval_evry=3"], "unknown option eval_evry; did you mean eval_every?")):
        assert main(["study", "convergence", f"out={tmp_path}", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}") and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())
    assert main(["study", "convergence", "--cfg", "job", "steps=7", "model.num_layers=2"]) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out and "model:\n  num_layers: 2" in out and "ema_decay: 0.99" in out
