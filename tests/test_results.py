"""Run records, the transcribed reference numbers, and leaderboard rendering."""

import json
import re
import time

import pytest

from bench import results
from bench.results import RunRecord, build_sections, load_records, load_reference, render_tables, write_record
from bench.tasks import TASKS
from conftest import REPO, SHARED

REFERENCE = REPO / "results" / "reference"


def make_record(task="dmlab_long", model="far", scale="paper", data="real", metrics=None, finished=None,
                checkpoint="sha256:abc") -> RunRecord:
    t = TASKS[task]
    now = time.time() if finished is None else finished
    return RunRecord(
        task=task, task_spec=t.spec(scale), task_hash=t.hash(scale), scale=scale, data=data,
        data_root="/data/x", model=model, model_config={"preset": "FAR-B-Long", "num_layers": 12},
        checkpoint=checkpoint, seeds=list(t.at_scale(scale).seeds),
        counts={"videos": 4, "trajectories": 1, "frames": 300},
        metrics=metrics or {"psnr": {"mean": 20.0, "std": 0.5, "n": 4, "values": [19.5, 20.0, 20.5, 20.0]}},
        wall_time_s=12.5, started=now - 12.5, finished=now, command="python -m bench run",
        extra={"cost": {"params": 158_111_776}}, **results.collect_provenance("cpu"))


# ----------------------------------------------------------------------------- records

def test_record_round_trip(tmp_path):
    rec = make_record()
    path = write_record(rec, tmp_path / "runs")
    assert re.fullmatch(r"dmlab_long__far__paper__\d{8}T\d{6}Z\.json", path.name)
    (loaded,) = load_records(tmp_path / "runs")
    assert loaded.extra.pop("record_file") == path.name
    assert loaded.to_dict() == results.portable_record(rec).to_dict()
    assert loaded.data_root == "<outside>/x"  # no path of the machine it was made on
    assert loaded.started.endswith("+00:00")  # epoch seconds became ISO 8601 UTC
    assert loaded.packages["python"] and "torch" in loaded.packages and loaded.device.startswith("cpu")
    assert set(results.collect_provenance()) == {"git_commit", "git_dirty", "packages", "device"}


def test_write_is_atomic_and_never_clobbers(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    rec = make_record(finished=1_700_000_000.0)
    a, b = write_record(rec, d), write_record(rec, d)
    assert a != b and a.is_file() and b.is_file()
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp files

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record(model="other"), d)
    assert sorted(p.name for p in d.iterdir()) == sorted([a.name, b.name])


def test_bad_record_files_are_skipped_with_a_warning(tmp_path):
    d = tmp_path / "runs"
    write_record(make_record(), d)
    (d / "junk.json").write_text("{not json")
    (d / ".partial.json.tmp").write_text("{")
    errors = []
    with pytest.warns(UserWarning, match="junk.json"):
        recs = load_records(d, errors=errors)
    assert len(recs) == 1 and len(errors) == 1


def test_data_must_be_labelled():
    with pytest.raises(ValueError, match="stand-in"):
        make_record(data="synthetic")


def test_metric_directions_match_the_metrics_package():
    from bench.metrics.reduce import HIGHER_IS_BETTER

    assert results.HIGHER_IS_BETTER == HIGHER_IS_BETTER
    for task in TASKS.values():
        for part in task.parts:
            for m in part.metrics:
                assert m.name in results.HIGHER_IS_BETTER, (task.name, m.name)


# ----------------------------------------------------------------------------- reference rows

def _reference_section() -> str:
    text = (SHARED / "PROTOCOLS.md").read_text()
    start = text.index("## Reference numbers")
    return text[start:text.index("\n## ", start + 1)]


def _numbers(s: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", s)]


def test_reference_rows_parse_and_carry_paper_hashes():
    rows = load_reference(REFERENCE)
    assert rows
    for r in rows:
        assert r.task in TASKS and r.task_hash == TASKS[r.task].hash("paper")
        assert r.scale == "paper" and r.data == "real" and r.source.startswith("reported: ")
        for k, c in r.cells.items():
            assert k in results.task_metrics(r.task), (r.task, r.model, k)
            assert c.mean is not None or c.text == "n/a"
    for path in REFERENCE.glob("*.json"):
        for row in json.loads(path.read_text())["rows"]:
            for v in row["metrics"].values():
                if isinstance(v, str):
                    results.parse_reported(v)  # raises on anything unparsable
    assert {r.task for r in rows} == {
        "ucf101_cond128", "ucf101_cond128_10k", "ucf101_cond256", "ucf101_uncond128", "ucf101_uncond256",
        "ucf101_pred", "ucf101_pred_mcvd", "bair_pred", "bair_pred14", "dmlab_long", "minecraft_long",
        "greenearthnet", "greenearthnet_psnr"}


def test_every_number_of_the_reference_tables_is_transcribed():
    """Every metric number in PROTOCOLS.md's reference tables and prose is in a row of that model."""
    rows = load_reference(REFERENCE)
    by_model: dict[str, set[float]] = {}
    for r in rows:
        vals = by_model.setdefault(r.model, set())
        for c in r.cells.values():
            vals.update(v for v in (c.mean, c.std) if v is not None)
    section = _reference_section()
    checked = 0
    header = None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue
        models = [m.strip() for m in cells[0].split("/")]
        for col, cell in zip(header, cells):
            if col.lower() in ("ssim", "psnr", "lpips", "fvd", "class-cond", "uncond"):
                for x in _numbers(cell):
                    assert any(x in by_model.get(m, set()) for m in models), (models, col, cell)
                    checked += 1
    # GreenEarthNet prose: "Contextformer R² 0.62, RMSE 0.14, ...; PredRNN 0.62 / 0.15 / ...; ..."
    gen = section[section.index("GreenEarthNet (OOD-t"):section.index("Generic video models")]
    gen = gen[gen.index("unverified):") + len("unverified):"):]
    for seg in gen.split(";"):
        name = seg.split()[0]
        for x in _numbers(seg):
            assert x in by_model[name], (name, x)
            checked += 1
    ndvi = section[section.index("Generic video models"):]
    ndvi = ndvi[ndvi.index("unverified):"):]
    for name, x in re.findall(r"([A-Z][A-Za-z-]*) (\d+\.\d+)", ndvi):
        assert float(x) in by_model[name]
        checked += 1
    assert checked >= 150


# ----------------------------------------------------------------------------- rendering

def _fvd(mean):
    return {"mean": mean, "std": 2.0, "n": 4, "values": [mean - 2, mean, mean + 2, mean]}


def test_rendering_separates_protocols_and_sorts(tmp_path):
    runs = tmp_path / "runs"
    quick = make_record(scale="quick", data="stand-in", model="far",
                        metrics={"psnr": {"mean": 31.25, "std": 0.0, "n": 1, "values": [31.25]},
                                 "fvd": {"unavailable": "no I3D weights", "provide": "python -m bench assets fetch "
                                                                                     "i3d_torchscript"}})
    paper = make_record(model="far_paper_run",
                        metrics={"psnr": {"mean": 23.5, "std": 0.25, "n": 4, "values": [23.5] * 4},
                                 "ssim": {"mean": 0.7, "std": 0.0, "n": 4, "values": [0.7] * 4},
                                 "lpips": {"mean": 0.1, "std": 0.0, "n": 4, "values": [0.1] * 4},
                                 "fvd": {"unavailable": "no I3D weights", "provide": "python -m bench assets fetch "
                                                                                     "i3d_torchscript"}})
    write_record(quick, runs)
    write_record(paper, runs)
    # FVD is lower-better: a measured 50 outranks FAR-L's reported 99, a measured 500 falls below TATS's 332
    write_record(make_record(task="ucf101_cond128", model="good", metrics={"fvd": _fvd(50.0)}), runs)
    write_record(make_record(task="ucf101_cond128", model="bad", metrics={"fvd": _fvd(500.0)}), runs)

    out = tmp_path / "tables"
    written = render_tables(runs, REFERENCE, out)
    for task in ("dmlab_long", "ucf101_cond128"):
        for ext in ("md", "csv", "tex"):
            assert (out / f"{task}.{ext}").is_file()
    assert (out / "README.md").is_file() and written["README"] == [out / "README.md"]

    sections = build_sections(load_records(runs), load_reference(REFERENCE))
    dm = sections["dmlab_long"]
    assert [(s.task_hash, s.scale, s.data) for s in dm] == [
        (TASKS["dmlab_long"].hash("paper"), "paper", "real"), (TASKS["dmlab_long"].hash("quick"), "quick", "stand-in")]
    paper_models = [r.model for r in dm[0].rows]
    assert paper_models[:2] == ["far_paper_run", "FAR-B-Long"]  # PSNR higher is better: 23.5 > 22.3 > 21.9
    assert "far" not in paper_models and [r.model for r in dm[1].rows] == ["far"]
    assert [r.model for r in sections["ucf101_cond128"][0].rows] == ["good", "FAR-L", "TATS", "bad"]

    md = (out / "dmlab_long.md").read_text()
    paper_at, quick_at = md.index(f"## protocol {TASKS['dmlab_long'].hash('paper')}"), \
        md.index(f"## protocol {TASKS['dmlab_long'].hash('quick')}")
    assert paper_at < quick_at
    assert "STAND-IN" in md[quick_at:] and "STAND-IN" not in md[paper_at:quick_at]
    assert "23.5 ± 0.25" in md and "31.25" in md and "22.3" in md
    # the unavailable metric: "n/a [k]" and footnote k with the reason and the command
    m = re.search(r"n/a \[(\d+)\]", md[paper_at:quick_at])
    assert m, md
    assert re.search(rf"^\[{m.group(1)}\] fvd unavailable: no I3D weights; provide with "
                     r"`python -m bench assets fetch i3d_torchscript`", md[paper_at:quick_at], re.M)

    csv = (out / "dmlab_long.csv").read_text()
    assert "23.5" in csv and "31.25" in csv and TASKS["dmlab_long"].hash("quick") in csv and "no I3D weights" in csv
    tex = (out / "dmlab_long.tex").read_text()
    assert tex.count("\\begin{tabular}") == 2 and "23.5 $\\pm$ 0.25" in tex and "31.25" in tex
    assert "far\\_paper\\_run" in tex
    index = (out / "README.md").read_text()
    assert TASKS["dmlab_long"].hash("quick") in index and "[md](dmlab_long.md)" in index


def test_stale_hash_and_superseded_records(tmp_path):
    runs = tmp_path / "runs"
    old = make_record(finished=1_700_000_000.0)
    old.task_hash = "000000000000"
    write_record(old, runs)
    write_record(make_record(finished=1_700_000_100.0), runs)
    newest = make_record(finished=1_700_000_200.0,
                         metrics={"psnr": {"mean": 25.0, "std": 0.0, "n": 1, "values": [25.0]}})
    write_record(newest, runs)
    (paper, stale) = build_sections(load_records(runs), [])["dmlab_long"]
    assert paper.stale is None and len(paper.rows) == 1 and paper.rows[0].cells["psnr"].mean == 25.0
    assert paper.superseded == 1
    assert stale.task_hash == "000000000000" and stale.stale == TASKS["dmlab_long"].hash("paper")
    md = results.render_markdown("dmlab_long", [paper, stale])
    assert "Protocol changed" in md and "superseded" in md


def test_cli_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert results.main(["table", "--records", str(tmp_path / "none"), "--reference", str(REFERENCE),
                         "--out", str(out)]) == 0
    assert "ucf101_cond128" in capsys.readouterr().out
    md = (out / "ucf101_cond256.md").read_text()
    assert "108 ± 4.2" in md and md.index("FAR-XL") < md.index("FAR-L ") < md.index("CogVideo")
    assert "0.090" in (out / "ucf101_pred_mcvd.md").read_text()  # reported digits kept as printed


# ----------------------------------------------------------------------------- reproducible from the repository

def test_grids_are_named_after_their_record_and_never_overwritten(tmp_path):
    runs = tmp_path / "runs"
    paths = []
    for colour in (b"first", b"second"):
        (runs / "grids").mkdir(parents=True, exist_ok=True)
        pending = runs / "grids" / ".pending.png"
        pending.write_bytes(colour)
        paths.append(write_record(make_record(finished=1_700_000_000.0), runs, grid=pending))
    a, b = paths
    assert a != b  # the same task, model, scale and second: two records, two grids
    for path, colour in zip(paths, (b"first", b"second")):
        rec = json.loads(path.read_text())
        assert rec["extra"]["grid"] == f"grids/{path.stem}.png"
        assert (runs / rec["extra"]["grid"]).read_bytes() == colour
    assert sorted(p.name for p in (runs / "grids").iterdir()) == sorted(f"{p.stem}.png" for p in paths)


def test_records_name_no_path_of_the_machine(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FARZOO_HOME", str(home))
    rec = make_record(checkpoint=f"trained:{REPO}/runs/dmlab_long__quick/far/train-abc/final.pt:sha256:0123",
                      metrics={"fvd": {"unavailable": f"asset 'i3d' not found at {home}/assets/i3d.pt",
                                       "provide": f"python -m bench assets fetch i3d (or place i3d.pt at "
                                                  f"{home}/assets/i3d.pt)"}})
    rec.data_root = str(home / "standins" / "dmlab-quick")
    rec.command = f"python -m bench run --workdir {REPO}/runs --data-root /opt/elsewhere/dmlab"
    rec.extra = {**rec.extra, "sample_store": str(REPO / "runs" / "x" / "samples-1")}
    text = write_record(rec, tmp_path / "runs").read_text()
    loaded = json.loads(text)
    assert loaded["data_root"] == "$FARZOO_HOME/standins/dmlab-quick"
    assert loaded["checkpoint"] == "trained:runs/dmlab_long__quick/far/train-abc/final.pt:sha256:0123"
    assert loaded["metrics"]["fvd"]["provide"] == ("python -m bench assets fetch i3d (or place i3d.pt at "
                                                   "$FARZOO_HOME/assets/i3d.pt)")
    assert loaded["command"] == "python -m bench run --workdir runs --data-root <outside>/dmlab"
    assert loaded["extra"]["sample_store"] == "runs/x/samples-1"
    assert loaded["task_spec"] == rec.to_dict()["task_spec"]  # the protocol itself is never rewritten
    assert str(tmp_path) not in text and str(REPO) not in text


def test_table_check_finds_a_missing_record_and_a_stale_table(tmp_path):
    runs, out = tmp_path / "results" / "runs", tmp_path / "results"
    write_record(make_record(finished=1_700_000_000.0), runs)
    second = write_record(make_record(model="other", finished=1_700_000_100.0), runs)
    render_tables(runs, REFERENCE, out)
    assert results.check_tables(out, runs, REFERENCE) == []
    second.unlink()  # a record that was never committed
    problems = results.check_tables(out, runs, REFERENCE)
    assert any(p.startswith(f"{out / 'dmlab_long.md'}: differs") for p in problems), problems
    assert any("README.md: differs" in p for p in problems)
    render_tables(runs, REFERENCE, out)
    (out / "dmlab_long.csv").write_text((out / "dmlab_long.csv").read_text() + "edited by hand\n")
    (out / "old_task.md").write_text("# a task without rows\n")
    assert sorted(p.split(":")[0] for p in results.check_tables(out, runs, REFERENCE)) == [
        str(out / "dmlab_long.csv"), str(out / "old_task.md")]


def test_committed_results_are_reproduced_byte_for_byte():
    """`python -m bench table` on a clean checkout rebuilds every committed table and index exactly
    from the committed records and references; a missing record or a stale table fails here."""
    problems = results.check_tables(REPO / "results", REPO / "results" / "runs", REPO / "results" / "reference")
    assert not problems, "\n".join(problems + ["regenerate with `python -m bench table` and commit results/ "
                                               "(records and grids included)"])


_MACHINE_PATH = re.compile(r"(?<![\w.~$:/<-])/(?:tmp|home|root|work|Users|mnt|scratch|var|opt|srv|data)/")


def test_committed_results_name_no_path_of_the_machine():
    """What `bench run` and `bench table` commit (records, tables, index) names no path of the machine
    it was made on. (The convergence study and the profiles have their own writers.)"""
    offenders = []
    owned = [*(REPO / "results").glob("*.*"), *(REPO / "results" / "runs").rglob("*"),
             *(REPO / "results" / "reference").rglob("*")]
    for path in sorted(owned):
        if path.suffix in (".md", ".csv", ".tex", ".json") and path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _MACHINE_PATH.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}")
    assert not offenders, "\n".join(offenders)
