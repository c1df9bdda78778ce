"""Configs the way researchers use them: structured configs generated from the dataclasses, schema
errors in one line, both command forms, YAML recipes, stored configs that rerun, sweeps, and what a
run shows while it runs.

Runs use two tiny registered tasks on a small maze stand-in (7 and 5 frames at 32 px, 2 videos);
paths live under ``$FARZOO_HOME`` so that records name them portably and can be rerun.
"""

import json
import os
from pathlib import Path

import pytest

import bench.tasks
from bench.__main__ import main
from bench.data.standins import materialize
from bench.tasks import Metric, Part, QuickScale, Task

TINY = ["model.num_layers=1", "model.num_heads=1", "model.codec=unshuffle8", "model.short_term_ctx_winsize=4"]
TRAIN = ["train.steps=4", "train.batch_size=2", "train.ckpt_every=2", "train.warmup_steps=1"]


def tiny(name: str, ctx: int, pred: int, metrics) -> Task:
    part = Part("A", ctx, pred, "action", metrics, num_steps=2)
    return Task(name=name, version=1, dataset="dmlab", split="validation", selection="all", num_videos=2,
                resolution=32, num_frames=ctx + pred, frame_stride=1, parts=(part,), quick=QuickScale(num_videos=2))


TASKS = {"tiny_a": tiny("tiny_a", 3, 4, (Metric("psnr", "best"), Metric("lpips", "best", convention="far"))),
         "tiny_b": tiny("tiny_b", 2, 3, (Metric("psnr", "best"), Metric("mse", "max")))}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    materialize("dmlab", home / "data" / "dmlab", num_train=3, num_eval=2, seed=0)
    return home


@pytest.fixture(autouse=True)
def registered(monkeypatch, home):
    for name, task in TASKS.items():
        monkeypatch.setitem(bench.tasks.TASKS, name, task)
    monkeypatch.setenv("FARZOO_HOME", str(home))


def places(home: Path, tag: str = "") -> list[str]:
    return [f"data_root={home / 'data' / 'dmlab'}", f"workdir={home / 'runs'}", f"results={home / ('results' + tag)}"]


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]


def samples(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*.npz"))}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- structured configs

def test_structured_config_is_generated_from_the_dataclasses():
    from dataclasses import asdict, fields

    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from bench.experiment import run_schema
    from bench.models.far import FARModelConfig, default_config
    from bench.models.token_ar import TokenARModelConfig
    from bench.registry import get_task
    from bench.run import RunConfig, default_train_config
    from bench.train import TrainConfig
    task = get_task("dmlab_long")
    cfg = run_schema("far", "dmlab_long", "quick").structured()
    assert OmegaConf.is_config(cfg) and OmegaConf.get_type(cfg.model).__name__ == "FARModelConfigSchema"
    # the same fields, and the defaults of this model on this task at this scale (not the class defaults)
    assert dict(OmegaConf.to_container(cfg.model)) == {k: list(v) if isinstance(v, tuple) else v for k, v in
                                                       asdict(default_config("far", task.at_scale("quick"), "quick")).items()}
    assert cfg.model.codec != FARModelConfig().codec and cfg.model.long_context is True
    train = {f.name for f in fields(TrainConfig)} - {"progress"}  # progress comes from the run's progress
    assert set(cfg.train) == train and cfg.train.steps == default_train_config(task, "quick").steps
    assert set(cfg) - {"model", "train"} == {f.name for f in fields(RunConfig) if f.metadata.get("cli", True)} - {"model"}
    with pytest.raises(ValidationError):  # typed: OmegaConf itself refuses a wrong type
        cfg.train.steps = "abc"
    # defaults depend on the model, the task and the scale
    assert run_schema("far", "bair_pred", "quick").structured().model.long_context is False
    assert run_schema("far", "dmlab_long", "paper").structured().train.steps == 1_000_000
    token_ar = run_schema("token_ar", "dmlab_long", "quick").structured()
    assert set(token_ar.model) == {f.name for f in fields(TokenARModelConfig)} and "codec" not in token_ar.model
    assert "model" not in run_schema("dummy", "dmlab_long", "quick").structured()


@pytest.mark.parametrize("option, says", [
    ("train.stesp=5", "unknown option train.stesp; did you mean train.steps?"),
    ("steps=5", "unknown option steps; did you mean train.steps?"),
    ("model.num_layrs=2", "unknown option model.num_layrs; did you mean model.num_layers?"),
    ("train.steps=abc", "train.steps=abc: expected an integer >= 1, got a string"),
    ("train.steps=-1", "train.steps=-1: expected an integer >= 1"),
    ("train.betas=[0.9,1.5]", "train.betas=[0.9, 1.5]: expected a list of 2 numbers >= 0 and < 1"),
    ("model.condition=video", "model.condition=video: expected one of 'none', 'label', 'action'"),
    ("compare_dummy=yes", "compare_dummy=yes: expected true or false, got a string"),
    ("model=fra", "unknown model 'fra'; did you mean far?"),
    ("task=tiny_c", "unknown task 'tiny_c'; did you mean tiny_"),
    ("train=5", "train is a group of options: set its fields (train.<field>=value)"),
    ("oops", "override 'oops' is not of the form key=value in Hydra's grammar"),
])
def test_schema_errors_are_one_line_before_any_work(home, tmp_path, capsys, option, says):
    assert main(["run", "task=tiny_a", f"workdir={tmp_path / 'runs'}", option]) == 2
    assert one_error_line(capsys).startswith(f"error: {says}")
    assert not (tmp_path / "runs").exists()


def test_recipe_errors_name_the_file(home, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: tiny_a\ntrain:\n  stesp: 3\n")
    assert main(["run", "--config", str(recipe)]) == 2
    assert one_error_line(capsys) == f"error: {recipe}: unknown option train.stesp; did you mean train.steps?"
    recipe.write_text("task: tiny_a\nmodel:\n  num_layers: zero\n")
    assert main(["run", "--config", str(recipe)]) == 2
    assert one_error_line(capsys) == f"error: {recipe}: model.num_layers=zero: expected an integer >= 1, got a string"
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in one_error_line(capsys)


def test_help_lists_models_tasks_and_every_option(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    from bench.registry import MODELS
    assert all(name in out for name in MODELS) and "dmlab_long" in out and "tiny_a" in out
    for line in ("model.num_layers                   4                  an integer >= 1",
                 "train.steps                        2000               an integer >= 1",
                 "scale                              quick              one of 'quick', 'paper'",
                 "python -m bench run -m model=far,far_sliding,dummy task=dmlab_long,bair_pred"):
        assert line in out, line
    assert main(["run", "model=token_ar", "task=bair_pred", "--help"]) == 0
    assert "model.tokenizer" in capsys.readouterr().out


def test_both_command_forms_compose_the_same_config(home):
    from bench.compose import parse_overrides
    from bench.experiment import compose_run
    argv = ["run", "--model", "far", "--task", "tiny_a", "--no-dummy", *TINY]
    flags = compose_run([], [*_flags(argv), *parse_overrides(TINY)])
    overrides = compose_run([], parse_overrides(["model=far", "task=tiny_a", "compare_dummy=false", *TINY]))
    assert flags.document == overrides.document and flags.run == overrides.run and flags.hash == overrides.hash
    assert flags.run.model_options == {"num_layers": 1, "num_heads": 1, "codec": "unshuffle8",
                                       "short_term_ctx_winsize": 4}


def _flags(argv):
    from bench.__main__ import _flag_settings, _run_parser
    return _flag_settings(_run_parser(argv[0]).parse_args(argv[1:]))


# ----------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def first_run(home):
    """A tiny run in the override form, progress bars on: (its record, stdout, stderr)."""
    import contextlib
    import io
    with pytest.MonkeyPatch.context() as mp:
        for name, task in TASKS.items():
            mp.setitem(bench.tasks.TASKS, name, task)
        mp.setenv("FARZOO_HOME", str(home))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main(["run", "model=far", "task=tiny_a", *places(home), *TINY, *TRAIN]) == 0
    (far,) = [r for r in records(home / "results") if r["model"] == "far"]
    return far, out.getvalue(), err.getvalue()


def test_a_run_announces_its_phases_and_each_notice_once(first_run, home):
    record, out, err = first_run
    for text in ("[run] plan: data -> weights: train 4 steps at batch 2", "[data] dmlab at",
                 "[train] far on tiny_a (stand-in data): 4 steps", "[estimate] ", "s per training step",
                 "(an estimate", "[sample] far: 2 of 2 videos to sample (1 part x 1 seed x 2 videos x 1 trajectory)",
                 "[score] far: scoring 2 videos (part A: psnr, lpips)", "| far | stand-in | quick |",
                 "[run] far minus dummy, 95% interval (paired bootstrap over videos): psnr",
                 f"grid {home / 'results' / 'runs' / 'grids'}"):
        assert text in out, text
    assert out.count("lpips unavailable") == 1  # far and dummy both lack it: said once
    # progress bars on stderr, whole lines when stderr is not a terminal (CI logs)
    assert "\r" not in err and "train: 100%" in err and "4/4" in err
    assert "sample far: 100%" in err and "videos/s" in err and "score dummy: 100%" in err
    # the resolved config is stored with the record and next to the run
    assert record["config"]["model"]["name"] == "far" and record["config"]["train"]["steps"] == 4
    assert record["config"]["data_root"] == "$FARZOO_HOME/data/dmlab"  # portable
    assert len(record["config_hash"]) == 12
    from omegaconf import OmegaConf
    stored = OmegaConf.to_container(OmegaConf.load(home / "runs" / "tiny_a__quick" / "far" / "config.yaml"))
    assert stored["model"] == record["config"]["model"] and stored["train"] == record["config"]["train"]


def test_the_flag_form_is_the_same_run(first_run, home, capsys):
    """`--model far --task tiny_a` reuses the override form's weights and samples: the same identity."""
    record, _, _ = first_run
    argv = ["run", "--model", "far", "--task", "tiny_a", "--data-root", str(home / "data" / "dmlab"),
            "--workdir", str(home / "runs"), "--results", str(home / "results_flags"), "--no-progress", *TINY, *TRAIN]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "same configuration); reusing it" in out and "0 of 2 videos to sample" in out
    (again,) = [r for r in records(home / "results_flags") if r["model"] == "far"]
    assert again["config_hash"] == record["config_hash"] and again["checkpoint"] == record["checkpoint"]
    assert again["metrics"]["psnr"]["values"] == record["metrics"]["psnr"]["values"]


def test_a_yaml_experiment_with_overrides_on_top(first_run, home, tmp_path, capsys):
    record, _, _ = first_run
    (tmp_path / "tiny.yaml").write_text("model:\n  num_layers: 1\n  num_heads: 1\n  codec: unshuffle8\n"
                                        "  short_term_ctx_winsize: 4\ntrain:\n  steps: 9\n  batch_size: 2\n"
                                        "  ckpt_every: 2\n  warmup_steps: 1\n")
    (tmp_path / "exp.yaml").write_text("defaults:\n  - tiny\n  - _self_\nmodel:\n  name: far\ntask: tiny_a\n"
                                       "data_root: ${oc.env:FARZOO_HOME}/data/dmlab\n"
                                       "workdir: ${oc.env:FARZOO_HOME}/runs\nresults: ${oc.env:FARZOO_HOME}/results\n")
    assert main(["run", "--config", str(tmp_path / "exp.yaml"), "train.steps=4", "--cfg", "job"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("model:\n  name: far\n  preset: null\n  num_layers: 1\n")
    assert "  steps: 4\n" in printed and f"data_root: {home / 'data' / 'dmlab'}\n" in printed
    # Hydra's own flags name the same recipe
    assert main(["run", "--config-dir", str(tmp_path), "--config-name", "exp", "train.steps=4", "--cfg", "job"]) == 0
    assert capsys.readouterr().out == printed
    # it is the run above (same config hash), and it runs: weights and samples reused
    from bench.compose import file_settings, parse_overrides
    from bench.experiment import compose_run
    args = type("A", (), {"config": str(tmp_path / "exp.yaml"), "config_dir": None, "config_name": None})
    assert compose_run(file_settings(args, ("model", "train")), parse_overrides(["train.steps=4"])).hash == \
        record["config_hash"]


def test_a_stored_config_reproduces_its_run(first_run, home, capsys):
    """`bench run --config <record>` runs the recorded config again: elsewhere, from scratch, the same
    weights, samples and numbers."""
    record, _, _ = first_run
    path = next(p for p in sorted((home / "results" / "runs").glob("*.json")) if json.loads(p.read_text())["model"] == "far")
    assert main(["run", "--config", str(path), f"workdir={home / 'rerun'}", f"results={home / 'results_rerun'}"]) == 0
    assert "[train] far on tiny_a" in capsys.readouterr().out  # trained again, in the other work dir
    (again,) = [r for r in records(home / "results_rerun") if r["model"] == "far"]
    assert again["config_hash"] == record["config_hash"]
    assert {k: v for k, v in again["config"].items() if k not in ("workdir", "results")} == \
        {k: v for k, v in record["config"].items() if k not in ("workdir", "results")}
    assert again["checkpoint"].split(":sha256:")[1] == record["checkpoint"].split(":sha256:")[1]
    assert again["metrics"]["psnr"]["values"] == record["metrics"]["psnr"]["values"]
    a, b = (samples(Path(r["extra"]["sample_store"].replace("$FARZOO_HOME", str(home)))) for r in (record, again))
    assert again["extra"]["sample_store"].startswith("$FARZOO_HOME/rerun/") and a and a == b


def test_a_record_without_a_config_says_what_to_do(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"task_hash": "abc", "command": "python -m bench run --model far"}))
    assert main(["run", "--config", str(old)]) == 2
    assert one_error_line(capsys) == (f"error: {old}: this run record stores no config (written before records held "
                                      "one); rerun its command instead: python -m bench run --model far")


# ----------------------------------------------------------------------------- sweeps

def test_a_2x2_sweep_skips_finished_cells_reports_failures_and_regenerates_tables(first_run, home, tmp_path,
                                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the working directory stays as it is: no outputs/, no chdir
    sweep = ["run", "-m", "model=far,dummy", "task=tiny_a,tiny_b", "progress=false", *places(home), *TINY, *TRAIN]
    assert main(sweep) == 0
    out = capsys.readouterr().out
    assert os.getcwd() == str(tmp_path) and list(tmp_path.iterdir()) == []
    # far on tiny_a ran before (first_run): skipped; far on tiny_b trains; the dummies were scored alongside
    assert "[sweep] 4 cell(s): 1 done, 3 skipped (finished before), 0 failed" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and " | model=" in line]
    assert [row.split(" | ")[2] for row in rows] == ["skipped", "done", "skipped", "skipped"]
    assert "| 2 | model=far task=tiny_b " in rows[1]
    recs = records(home / "results")
    assert {(r["task"], r["model"]) for r in recs} == {("tiny_a", "far"), ("tiny_a", "dummy"), ("tiny_b", "far"),
                                                       ("tiny_b", "dummy")}
    assert "[sweep] tables regenerated in" in out and (home / "results" / "tiny_b.md").is_file()
    assert "| far " in (home / "results" / "tiny_b.md").read_text()
    # each cell's record says the single command that reproduces it
    (b,) = [r for r in recs if r["task"] == "tiny_b" and r["model"] == "far"]
    assert b["command"].startswith("python -m bench run model=far task=tiny_b progress=false 'data_root=$FARZOO_HOME/")
    assert "run -m" not in b["command"] and "far,dummy" not in b["command"]
    # again: everything is finished; a failing cell is one line and the others go on
    assert main(["run", "-m", "model=far", "task=tiny_b", *places(home), "progress=false", *TINY, *TRAIN,
                 "model.head_dim=64,16"]) == 1
    out = capsys.readouterr().out
    assert "[sweep] 2 cell(s): 0 done, 1 skipped (finished before), 1 failed" in out
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert failed == ["[sweep] cell 2/2 model.head_dim=16: FAILED: error: model far cannot be built "
                      "with model.num_layers=1 model.num_heads=1 model.codec=unshuffle8 model.short_term_ctx_winsize=4 "
                      "model.head_dim=16: axes_dims_rope (16, 24, 24) must sum to head_dim 16"]


def test_cfg_job_prints_every_cell_of_a_sweep_without_running(home, tmp_path, capsys):
    assert main(["run", "-m", "model=far,dummy", "task=tiny_a", f"workdir={tmp_path / 'runs'}", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert out.count("# cell ") == 2 and "# cell 2/2: model=dummy task=tiny_a" in out
    assert "model:\n  name: dummy\ntask: tiny_a\n" in out
    assert not (tmp_path / "runs").exists()


def test_a_crashing_cell_keeps_its_traceback_and_the_sweep_goes_on(home, tmp_path, monkeypatch, capsys):
    import bench.run
    ran = []

    def fake_run(cfg, log=print):
        ran.append(cfg.task)
        if cfg.task == "tiny_a":
            raise RuntimeError("boom")
        return []
    monkeypatch.setattr(bench.run, "run", fake_run)
    assert main(["run", "-m", "model=far", "task=tiny_a,tiny_b", f"workdir={tmp_path / 'runs'}",
                 f"results={tmp_path / 'results'}"]) == 1
    out = capsys.readouterr().out
    assert ran == ["tiny_a", "tiny_b"]
    (line,) = [x for x in out.splitlines() if "FAILED" in x]
    log = tmp_path / "runs" / "tiny_a__quick" / "far"
    assert line.startswith(f"[sweep] cell 1/2 task=tiny_a: FAILED: RuntimeError: boom (traceback: {log}/failed-")
    assert "raise RuntimeError(\"boom\")" in next(log.glob("failed-*.log")).read_text()
    assert "[sweep] 2 cell(s): 1 done, 0 skipped (finished before), 1 failed" in out
