"""The shipped quick FAR-Long weights: pinned, provenance inside, used exactly when the run's training
configuration is theirs, never without their checksum, and reproducible with the stored command."""

from dataclasses import replace

import pytest
import torch

import bench.pretrained as pretrained
from bench.errors import CheckpointError
from bench.registry import get_task
from bench.run import RunConfig, _shipped, build_model, obtain_weights, prepare_data, train_config, \
    training_identity

SHIPPED = pretrained.find("far", "dmlab_long", "quick")


def test_the_main_job_has_shipped_weights_that_match_their_pin():
    assert SHIPPED is not None and SHIPPED.path.is_file()
    assert pretrained.verify(SHIPPED) == SHIPPED.path
    from bench.assets import sha256_file
    assert sha256_file(SHIPPED.path) == SHIPPED.sha256  # hashed afresh, not through the cache
    assert SHIPPED.path.stat().st_size < 32 * 2**20  # a size a repository carries (fp32 EMA weights)
    meta = pretrained.metadata(SHIPPED.path)
    assert meta["command"] == SHIPPED.command == "python -m bench train --model far --task dmlab_long"
    assert meta["steps"] == meta["identity"]["train"]["steps"] and meta["git_commit"]
    assert meta["loss_last_tenth"] < meta["loss_first_tenth"]


@pytest.fixture(scope="module")
def quick_default(tmp_path_factory):
    """The main job's default configuration, its model and its stand-in data (written as `bench run` does)."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("FARZOO_HOME", str(home))
    run = RunConfig()
    base = get_task(run.task)
    task = base.at_scale(run.scale)
    tcfg = train_config(run, base)
    source = prepare_data(base, run.scale, None, log=lambda *a: None)
    yield run, base, task, tcfg, source
    mp.undo()


def test_the_default_run_samples_the_shipped_weights(quick_default, tmp_path):
    run, base, task, tcfg, source = quick_default
    model = build_model(run, task, tcfg.seed, torch.device("cpu"))
    stored = pretrained.metadata(SHIPPED.path)["identity"]
    ident = training_identity(run, task, model, tcfg, source, 1)
    # the shipped weights were trained with exactly today's default configuration and stand-in
    assert pretrained.comparable(stored) == pretrained.comparable(ident)
    logs = []
    weights = obtain_weights(run, task, model, source, tmp_path / "run", torch.device("cpu"), tcfg=tcfg,
                             log=logs.append)
    assert weights == SHIPPED.label and any("shipped weights" in line for line in logs)
    assert not list((tmp_path / "run").glob("train-*"))  # nothing trained
    from safetensors.torch import load_file
    shipped = load_file(str(SHIPPED.path))
    for name, tensor in model.trainable_module().state_dict().items():
        assert torch.equal(tensor, shipped[name]), name


def test_another_configuration_or_from_scratch_does_not_use_them(quick_default):
    run, base, task, tcfg, source = quick_default
    assert _shipped(replace(run, from_scratch=True), task) is None
    assert _shipped(replace(run, train_only=True), task) is None  # `bench train` reproduces them
    assert _shipped(replace(run, model="far_sliding"), task) is None
    model = build_model(run, task, tcfg.seed, torch.device("cpu"))
    other = replace(tcfg, steps=tcfg.steps + 1)
    loaded, why = pretrained.load(SHIPPED, model.trainable_module(),
                                  training_identity(run, task, model, other, source, 1))
    assert not loaded and f"train.steps: {tcfg.steps} -> {tcfg.steps + 1}" in why
    # the number of processes does not matter for which weights to sample
    loaded, _ = pretrained.load(SHIPPED, model.trainable_module(), training_identity(run, task, model, tcfg, source, 2))
    assert loaded


def test_a_tampered_or_missing_file_is_refused(tmp_path, monkeypatch):
    data = bytearray(SHIPPED.path.read_bytes())
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="missing.*--from-scratch"):
        pretrained.verify(SHIPPED)
    data[-1] ^= 0x01  # one flipped bit in the last weight
    (tmp_path / SHIPPED.file).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        pretrained.verify(SHIPPED)


def test_export_writes_the_ema_weights_with_their_provenance(tmp_path):
    ema = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    ident = {"train": {"steps": 2}, "model": "far", "processes": 1}
    ckpt = tmp_path / "final.pt"
    torch.save({"ema": ema, "step": 2, "losses": [1.0, 0.5], "config": {}, "identity": ident}, ckpt)
    out = tmp_path / "w" / "x.safetensors"
    digest = pretrained.export(ckpt, out, "python -m bench train --model far --task x")
    from bench.assets import sha256_file
    assert digest == sha256_file(out) and [p.name for p in out.parent.iterdir()] == ["x.safetensors"]
    meta = pretrained.metadata(out)
    assert meta["identity"] == ident and meta["steps"] == 2 and meta["command"].endswith("--task x")
    from safetensors.torch import load_file
    back = load_file(str(out))
    assert all(torch.equal(back[k], v) for k, v in ema.items())
    torch.save({"model": ema}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt"):
        pretrained.export(tmp_path / "bad.pt", tmp_path / "y.safetensors", "x")
    assert not (tmp_path / "y.safetensors").exists() and not list(tmp_path.glob(".y.safetensors*"))
