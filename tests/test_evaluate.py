"""Evaluation as the protocols mean it: the model's view of the context in FVD, metrics that do not
apply, per-video values and paired-bootstrap intervals, the seen/new split, grids and curves."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench import results
from bench.compare import add_reference_intervals, compare_records, excludes_zero, paired_bootstrap
from bench.evaluate import (ScoringNets, context_path, max_context_ssim, not_applicable, pairwise_ssim,
                            sample_to_store, score_store, seen_frames)
from bench.models.dummy import RepeatLastFrame
from bench.tasks import TASKS, Metric, Part, QuickScale, Task

RES = 32


def clips(n: int, frames: int, seed: int = 0, poses: list | None = None) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(n, frames, 3, RES, RES, generator=g)
    out = [{"video": video[i], "id": f"v{i}", "label": i % 3} for i in range(n)]
    for i, p in enumerate(poses or []):
        out[i]["poses"] = torch.tensor(p, dtype=torch.int64)
    return out


def one_part_task(metrics, context: int, predict: int, videos: int, dataset: str = "bair", trajectories: int = 1,
                  seeds=(0,)) -> Task:
    part = Part("pred", context, predict, "none", tuple(metrics))
    return Task(name="tiny", version=1, dataset=dataset, split="test", selection="all", num_videos=videos,
                resolution=RES, num_frames=context + predict, frame_stride=1, parts=(part,),
                trajectories=trajectories, seeds=seeds, quick=QuickScale(num_videos=videos))


class LossyContext(RepeatLastFrame):
    """Repeats the last context frame, and shows its context through a coarse codec (3 levels)."""

    name = "lossy"

    def reconstruct(self, context):
        return (context * 2).round() / 2


class RecordingFeatures:
    """A stand-in FVD feature network that keeps every clip it is given."""

    def __init__(self):
        self.clips: list[torch.Tensor] = []

    def __call__(self, videos):
        self.clips += list(videos)
        return videos.flatten(1)[:, ::97][:, :16].double()


def quantize(x):
    return (x * 255).round() / 255


# ----------------------------------------------------------------------------- A: context frames in FVD

@pytest.mark.parametrize("task_name,context", [("ucf101_pred", "model"), ("bair_pred", "model"),
                                                ("dmlab_long", "model"), ("ucf101_pred_mcvd", "ground_truth")])
def test_fvd_scores_the_models_view_of_the_context(tmp_path, task_name, context):
    """FAR decodes context and prediction latents together, so its FVD clips open with the codec's
    reconstruction of the context; ExtDM prepends the ground truth."""
    fvds = [m for p in TASKS[task_name].parts for m in p.metrics if m.name == "fvd" and m.include_context]
    assert fvds and all(m.context == context for m in fvds)
    tc, tp, n = 3, 8, 4
    task = one_part_task([fvds[0]], tc, tp, n)
    data = clips(n, tc + tp)
    model = LossyContext()
    sample_to_store(model, task, data, tmp_path)
    assert context_path(tmp_path, "pred", 0).exists() == (context == "model")
    net = RecordingFeatures()
    scores = score_store(task, data, tmp_path, log=lambda _: None, nets=ScoringNets(fvd=net))
    assert math.isfinite(scores["fvd"]["mean"]) and scores["fvd"]["context"] == context
    seen = net.clips
    for v in range(n):
        gt = quantize(data[v]["video"])
        pred = gt[tc - 1:tc].expand(tp, -1, -1, -1)
        with_view = torch.cat([quantize(model.reconstruct(data[v]["video"][None, :tc])[0]), pred])
        with_gt = torch.cat([gt[:tc], pred])
        assert not torch.allclose(with_view[:tc], with_gt[:tc])  # the codec changes the context
        found_view = any(torch.allclose(c, with_view, atol=1e-6) for c in seen)
        found_gt = any(torch.allclose(c, with_gt, atol=1e-6) for c in seen)
        assert (found_view, found_gt) == ((True, False) if context == "model" else (False, True))
        assert any(torch.allclose(c, gt, atol=1e-6) for c in seen)  # the real clip is the ground truth


def test_far_reconstruct_round_trips_the_codec_its_sampling_uses():
    from bench.registry import get_model_factory
    from far.autoencoder import PixelUnshuffleCodec

    class Coarse(PixelUnshuffleCodec):  # a lossy codec, as the DC-AE is
        def encode(self, video):
            return super().encode((video * 4).round() / 4)

    task = TASKS["dmlab_long"].at_scale("quick")
    model = get_model_factory("far")(task=task, scale="quick", num_layers=1, num_heads=1, num_steps=1,
                                     short_term_ctx_winsize=4)
    model.codec = Coarse(model.codec.factor)
    context = torch.rand(2, 3, 3, task.resolution, task.resolution)
    view = model.reconstruct(context)
    assert torch.allclose(view, (context * 4).round() / 4, atol=1e-6)
    assert not torch.allclose(view, context, atol=1e-2)
    encoded = []
    model.codec.encode = lambda video, enc=model.codec.encode: encoded.append(video.clone()) or enc(video)
    model.sample(replace_prompt(context), 2, [torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.equal(encoded[0], context)  # sampling encodes the context through the same codec


def replace_prompt(context):
    from bench.api import Prompt
    return Prompt(context=context, actions=torch.zeros(context.shape[0], context.shape[1] + 2, dtype=torch.long))


# ----------------------------------------------------------------------------- B: FVD on short clips

def test_fvd_on_short_clips_is_not_applicable_and_scoring_goes_on(tmp_path):
    quick = TASKS["ucf101_uncond128"].at_scale("quick")
    (fvd,) = quick.parts[0].metrics
    reason = not_applicable(fvd, quick.parts[0])
    assert reason and "at least 10 frames" in reason and "have 8" in reason
    assert not_applicable(fvd, TASKS["ucf101_uncond128"].parts[0]) is None  # 16 frames at paper scale
    task = replace(quick, num_videos=3, resolution=RES)
    data = clips(3, 8)
    sample_to_store(RepeatLastFrame(), task, data, tmp_path)

    def never(_):
        raise AssertionError("a metric that does not apply is not computed")

    logs = []
    scores = score_store(task, data, tmp_path, log=logs.append, nets=ScoringNets(fvd=never))
    assert scores["fvd"] == {"not_applicable": reason, "part": "gen"}
    assert any("not applicable" in line for line in logs)
    cell = results._measured_cell("dummy", "fvd", scores["fvd"])
    assert cell.text == "n/a" and cell.note == f"fvd not applicable: {reason}"


# ----------------------------------------------------------------------------- C: streaming, per-video values

def test_scores_keep_per_video_values_that_reduce_to_the_mean(tmp_path):
    from bench.metrics import psnr
    task = one_part_task([Metric("psnr", "best"), Metric("mse", "max")], 2, 3, 5, trajectories=2, seeds=(0, 1))
    data = clips(5, 5)
    sample_to_store(RepeatLastFrame(), task, data, tmp_path)
    scores = score_store(task, data, tmp_path, log=lambda _: None)
    entry = scores["psnr"]
    assert np.array(entry["per_video"]).shape == (2, 5) and len(entry["per_frame"]) == 3
    assert entry["values"] == pytest.approx([np.mean(v) for v in entry["per_video"]])
    gt = quantize(torch.stack([d["video"] for d in data]))
    direct = psnr(gt[:, 1:2].expand(-1, 3, -1, -1, -1), gt[:, 2:]).mean(1)
    assert entry["per_video"][0] == pytest.approx(direct.tolist(), abs=1e-4)
    assert "seen" not in entry  # no seen/new split outside the long-context tasks


# ----------------------------------------------------------------------------- D: paired bootstrap

def test_paired_bootstrap_hand_computable_cases():
    a = np.random.default_rng(0).normal(size=40)
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["videos"] == 40
    shifted = paired_bootstrap(a + 0.5, a)
    assert shifted["diff"] == pytest.approx(0.5) and shifted["ci"] == pytest.approx([0.5, 0.5])
    # per seed (S, V): a video's differences are averaged over seeds; missing values drop the video
    b = [[1.0, 2.0, None], [3.0, 4.0, 5.0]]
    r = paired_bootstrap(b, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert r["videos"] == 2 and r["seeds"] == 2 and r["diff"] == pytest.approx(2.5)
    assert 2.0 <= r["ci"][0] <= r["ci"][1] <= 3.0
    assert paired_bootstrap(a, a + 1, seed=3) == paired_bootstrap(a, a + 1, seed=3)  # fixed seed, same interval
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0])


def test_paired_bootstrap_covers_a_known_mean_about_95_percent():
    rng = np.random.default_rng(1)
    trials, covered = 200, 0
    for i in range(trials):
        base = rng.normal(0, 3, size=40)  # shared per-video difficulty: pairing removes it
        a, b = base + 0.3 + rng.normal(0, 1, 40), base + rng.normal(0, 1, 40)
        lo, hi = paired_bootstrap(a, b, resamples=1000, seed=i)["ci"]
        covered += lo <= 0.3 <= hi
    assert 0.88 <= covered / trials <= 0.99


def test_intervals_against_dummy_and_between_records(tmp_path):
    task = one_part_task([Metric("psnr", "max")], 2, 3, 16, dataset="dmlab")
    poses = [[[0, 0, 0], [1, 0, 0], [1, 0, 0], [9, 0, 0], [0, 0, 0]]] * 16
    data = clips(16, 5, poses=poses)
    ref = score_store(task, data, _store(tmp_path / "dummy", task, data, RepeatLastFrame()), log=lambda _: None)

    class Better(RepeatLastFrame):  # closer to the truth than repeating the last frame
        def sample(self, prompt, num_frames, generator):
            return prompt.context[:, -1:].expand(-1, num_frames, -1, -1, -1) * 0.5 + 0.25

    # a model identical to dummy: the interval of its difference is [0, 0]
    same = score_store(task, data, tmp_path / "dummy", log=lambda _: None)
    add_reference_intervals(same, ref)
    assert same["psnr"]["vs_reference"]["ci"] == [0.0, 0.0]
    better = score_store(task, data, _store(tmp_path / "better", task, data, Better()), log=lambda _: None)
    add_reference_intervals(better, ref)
    iv = better["psnr"]["vs_reference"]
    assert iv["reference"] == "dummy" and iv["videos"] == 16 and iv["resamples"] == 2000
    assert iv["diff"] == pytest.approx(better["psnr"]["mean"] - ref["psnr"]["mean"])
    for split in ("seen", "new"):
        assert better["psnr"][split]["vs_reference"]["videos"] == 16
    missing = add_reference_intervals(score_store(task, data, tmp_path / "better", log=lambda _: None), None,
                                      why_missing="no dummy in this run")
    assert missing["psnr"]["vs_reference"] == {"reference": "dummy", "unavailable": "no dummy in this run"}
    # two arbitrary models' records, on the seen frames only
    recs = [_record(n, s) for n, s in (("better", better), ("dummy", ref))]
    paths = [results.write_record(r, tmp_path / "runs") for r in recs]
    cmp = compare_records(*paths, split="seen")
    assert cmp["psnr"]["a"] == "better" and cmp["psnr"]["split"] == "seen"
    assert cmp["psnr"]["diff"] == pytest.approx(better["psnr"]["seen"]["mean"] - ref["psnr"]["seen"]["mean"])
    assert excludes_zero(cmp["psnr"]) == (cmp["psnr"]["ci"][0] > 0 or cmp["psnr"]["ci"][1] < 0)
    with pytest.raises(ValueError, match="task_hash"):
        compare_records(recs[0], replace(recs[1], task_hash="other"))
    from bench.compare import compare_stores
    stores = compare_stores(task, data, tmp_path / "better", tmp_path / "dummy", split="seen")
    assert stores["psnr"]["ci"] == cmp["psnr"]["ci"]


def _store(path, task, data, model):
    sample_to_store(model, task, data, path)
    return path


def _record(model, metrics):
    t = TASKS["dmlab_long"]
    return results.RunRecord(task="dmlab_long", task_spec={}, task_hash=t.hash("quick"), scale="quick",
                             data="stand-in", data_root="/x", model=model, model_config={}, checkpoint="none",
                             seeds=[0], counts={}, metrics=metrics, wall_time_s=1.0, started=0.0, finished=1.0,
                             command="test")


def test_quick_long_context_tasks_evaluate_enough_videos():
    from bench.run import STANDIN_SIZE
    for name in ("dmlab_long", "minecraft_long"):
        task = TASKS[name]
        assert task.at_scale("quick").num_videos >= 16
        assert STANDIN_SIZE["quick"][task.dataset][1] >= task.at_scale("quick").num_videos


# ----------------------------------------------------------------------------- E: seen and new frames

def test_seen_new_split_by_poses(tmp_path):
    from bench.metrics import psnr
    ctx = [[0, 0, 0], [1, 0, 0], [2, 0, 0]]
    poses = [ctx + [[1, 0, 0], [5, 0, 0], [0, 0, 0], [6, 0, 0]],  # seen, new, seen, new
             ctx + [[7, 0, 0], [5, 0, 0], [8, 0, 0], [6, 0, 0]],  # all new
             ctx + [[2, 0, 0], [1, 0, 0], [0, 0, 0], [2, 0, 0]]]  # all seen
    task = one_part_task([Metric("psnr", "max"), Metric("ssim", "max")], 3, 4, 3, dataset="dmlab")
    data = clips(3, 7, poses=poses)
    sample_to_store(RepeatLastFrame(), task, data, tmp_path)
    entry = score_store(task, data, tmp_path, log=lambda _: None)["psnr"]
    gt = quantize(torch.stack([d["video"] for d in data]))
    per_frame = psnr(gt[:, 2:3].expand(-1, 4, -1, -1, -1), gt[:, 3:])  # (V, 4)
    assert entry["split"]["rule"] == "poses"
    assert entry["split"]["seen_frames"] == 6 and entry["split"]["new_frames"] == 6
    assert entry["split"]["seen_per_frame"] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 1 / 3])
    assert entry["seen"]["videos"] == 2 and entry["new"]["videos"] == 2
    seen0, new0 = per_frame[0, [0, 2]].mean(), per_frame[0, [1, 3]].mean()
    assert entry["seen"]["per_video"][0] == pytest.approx([float(seen0), None, float(per_frame[2].mean())], abs=1e-4)
    assert entry["new"]["per_video"][0] == pytest.approx([float(new0), float(per_frame[1].mean()), None], abs=1e-4)
    assert entry["seen"]["mean"] == pytest.approx((float(seen0) + float(per_frame[2].mean())) / 2, abs=1e-4)


def test_seen_proxy_without_poses_finds_repeated_views():
    part = Part("A", 4, 4, "action", (Metric("psnr"),))
    video = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    video[5] = video[1]  # predicted frame 1 repeats a context view
    video[7] = video[2].clamp(0.02, 0.98)  # predicted frame 3 nearly does
    mask, rule = seen_frames({"video": video}, part, "dmlab")
    assert rule.startswith("ssim>=") and mask.tolist() == [False, True, False, True]
    a, b = torch.rand(3, 3, 32, 40), torch.rand(5, 3, 32, 40)
    from bench.metrics import ssim
    direct = ssim(a[:, None].expand(-1, 5, -1, -1, -1), b[None].expand(3, -1, -1, -1, -1))
    assert torch.allclose(pairwise_ssim(a, b), direct, atol=1e-5)
    assert torch.allclose(max_context_ssim(b, a), direct.amax(1), atol=1e-5)


# ----------------------------------------------------------------------------- F: pictures; tables

def test_grid_shows_every_fourth_predicted_frame_with_marks(tmp_path):
    from PIL import Image
    from bench.grid import SEEN_COLOUR, NEW_COLOUR, pick_frames, render_grid
    assert pick_frames(36, 12) == ([34, 35], [0, 4, 8])
    assert pick_frames(144, 156)[1][-1] == 152 and len(pick_frames(144, 156)[1]) == 39
    v = torch.rand(2, 20, 3, 16, 16)
    seen = np.zeros((2, 18), bool)
    seen[:, 0] = True
    path = render_grid(v[:, :2], v[:, 2:], v[:, 2:], tmp_path / "g.png", title="t", seen=seen, per_line=3)
    img = np.asarray(Image.open(path))
    colours = {tuple(p) for p in img.reshape(-1, 3)}
    assert SEEN_COLOUR in colours and NEW_COLOUR in colours
    # 5 shown frames per video, 3 per line: 2 lines of prediction + ground truth per video
    assert img.shape[0] > 2 * 2 * 2 * 96


def test_curves_and_table_cells_show_intervals_and_seen_new(tmp_path):
    from PIL import Image
    from bench.grid import render_curves
    split = {"rule": "poses", "seen_frames": 3, "new_frames": 5, "videos_with_seen": 2, "videos_with_new": 2,
             "seen_per_frame": [1.0, 0.5, 0.0, 0.0]}

    def entry(mean, lo, hi):
        iv = {"reference": "dummy", "diff": 1.0, "ci": [lo, hi], "level": 0.95, "resamples": 2000, "videos": 2,
              "seeds": 1}
        return {"mean": mean, "std": 0.0, "n": 1, "values": [mean], "per_video": [[mean, mean]],
                "per_frame": [mean] * 4, "seen": {"mean": mean + 1, "per_video": [[mean + 1, None]], "videos": 1,
                                                  "vs_reference": iv},
                "new": {"mean": mean - 1, "per_video": [[mean - 1, mean - 1]], "videos": 2}, "split": split,
                "vs_reference": iv, "part": "A"}

    recs = [_record("far", {"psnr": entry(13.4, 0.8, 1.9), "ssim": entry(0.4, 0.01, 0.03)}),
            _record("dummy", {"psnr": entry(12.0, 0, 0), "ssim": entry(0.35, 0, 0)})]
    path = render_curves(recs, tmp_path / "c.png", highlight="far")
    assert Image.open(path).size[0] > 500
    cell = results._measured_cell("far", "psnr", recs[0].metrics["psnr"])
    assert cell.text == "13.4 [+0.8, +1.9] vs dummy" and cell.ci == (0.8, 1.9)
    assert cell.splits["seen"].text == "14.4 [+0.8, +1.9]" and cell.splits["new"].text == "12.4"
    sections = results.build_sections(recs, [])["dmlab_long"]
    frame = sections[0].frame()
    assert {"PSNR seen ↑", "PSNR new ↑", "SSIM seen ↑"} <= set(frame.columns)
    rows = results.section_records(sections)
    far = next(r for r in rows if r["model"] == "far")
    assert (far["psnr_ci_lo"], far["psnr_ci_hi"], far["psnr_seen_mean"]) == (0.8, 1.9, 14.4)
    assert json.dumps(rows, default=str)


def test_seen_proxy_threshold_is_the_committed_calibration():
    from bench.evaluate import SEEN_SSIM_THRESHOLD
    from conftest import REPO
    cal = json.loads((REPO / "results" / "profiles" / "seen_proxy_calibration.json").read_text())
    assert set(SEEN_SSIM_THRESHOLD.values()) == {cal["chosen_threshold"]}
    for dataset in ("dmlab", "minecraft"):
        at = cal["datasets"][dataset]["at_threshold_in_use"]["protocol"]
        assert at["threshold"] == SEEN_SSIM_THRESHOLD[dataset] and at["precision"] > 0.95 and at["recall"] > 0.95
