"""The conventions of the official evaluations that decide whether a number means the paper's
: sampling precision, Minecraft part B, UCF-101's per-seed real sets and short clips,
GreenEarthNet's scoring, the per-dataset training recipes, and what stays different by design."""

import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import Prompt
from bench.conventions import record_conventions
from bench.data import ClipDataset, TrainClipDataset, VideoRef, eval_refs, greenearthnet, ucf101, ucf_balanced
from bench.evaluate import (SampleKey, load_part, read_sample_array, sample_to_store, score_earthnet_part,
                            score_store)
from bench.models.dummy import RepeatLastFrame
from bench.models.far import build_far_model, default_config
from bench.recipes import RECIPES, recipe_for
from bench.run import default_train_config
from bench.tasks import TASKS, Metric, Part, QuickScale, Task

from conftest import SHARED

FIX = SHARED / "fixtures" / "datasets"
UCF_CLIP = FIX / "ucf101/UCF-101/CliffDiving/v_CliffDiving_g08_c03.mp4"  # 78 frames
GEN_ROOT = FIX / "greenearthnet"
GEN_CUBE = "MJJ21/32ULB_2021-05-01_2021-09-27_1977_2105_1721_1849_30_110_26_106.nc"
needs_fixtures = pytest.mark.skipif(not FIX.is_dir(), reason=f"dataset fixtures not found at {FIX}")
FAR_PROTOCOL = ("ucf101_cond128", "ucf101_cond128_10k", "ucf101_cond256", "ucf101_uncond128", "ucf101_uncond256",
                "ucf101_pred", "bair_pred", "bair_pred14", "dmlab_long", "minecraft_long")


# ----------------------------------------------------------------------------- 3. sampling precision

def _tiny_far(task: Task):
    return build_far_model("far", task.at_scale("quick"), "quick", num_layers=1, num_heads=1, codec="unshuffle8",
                           context_patch_size=2, short_term_ctx_winsize=4, num_steps=2)


def _capture_rollout(monkeypatch):
    import bench.models.far as far_adapter
    seen = {}
    real = far_adapter.rollout

    def spy(net, context, num_frames, sampler, **kw):
        seen.update(noise=kw["noise"].dtype, latent=kw["latent_dtype"],
                    context=None if context is None else context.dtype,
                    autocast=torch.is_autocast_enabled(kw["noise"].device.type) if kw["noise"].is_cuda
                    else torch.is_autocast_enabled("cpu"))
        return real(net, context, num_frames, sampler, **kw)

    monkeypatch.setattr(far_adapter, "rollout", spy)
    return seen


def test_precision_is_a_task_field_bf16_for_far_protocol_tasks():
    for name, task in TASKS.items():
        assert task.precision == ("bf16" if name in FAR_PROTOCOL else "fp32"), name
    with pytest.raises(ValueError, match="precision"):
        replace(TASKS["bair_pred"], precision="fp16")


def test_cpu_sampling_falls_back_to_fp32_and_the_record_says_so(monkeypatch):
    task = TASKS["bair_pred14"]
    model = _tiny_far(task)
    assert model.model_config.precision == "bf16" and not model.uses_bf16("cpu")
    assert model.sampling_precision("cpu") == "fp32 (bf16 requested; CPU)"
    conv = record_conventions(task, "quick", model, torch.device("cpu"), "none")
    assert conv["precision"] == "fp32 (bf16 requested; CPU)" and conv["seed_kind"] == "sampling"
    seen = _capture_rollout(monkeypatch)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = model.sample(Prompt(context=torch.rand(2, 2, 3, 32, 32)), 2, gens)
    assert out.dtype == torch.float32 and seen == {"noise": torch.float32, "latent": torch.float32,
                                                   "context": torch.float32, "autocast": False}
    # an fp32 task, and a model without a bf16 path
    assert _tiny_far(TASKS["ucf101_pred_mcvd"]).sampling_precision("cpu") == "fp32"
    dummy = record_conventions(task, "quick", RepeatLastFrame(), "cpu", "none")
    assert dummy["precision"] == "fp32 (bf16 requested; model dummy has no bf16 path)"


def test_bf16_dtype_flow_follows_the_official_pipeline(monkeypatch):
    """The bf16 path itself (as CUDA runs it), exercised under CPU autocast: noise drawn in bf16,
    context latents and the latents between network calls in bf16, the transformer under autocast."""
    model = _tiny_far(TASKS["bair_pred14"])
    seen = _capture_rollout(monkeypatch)
    prompt = Prompt(context=torch.rand(2, 2, 3, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model._sample(prompt, 2, [torch.Generator().manual_seed(i) for i in range(2)], bf16=True)
    assert seen == {"noise": torch.bfloat16, "latent": torch.bfloat16, "context": torch.bfloat16, "autocast": True}
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    ref = model._sample(prompt, 2, [torch.Generator().manual_seed(i) for i in range(2)], bf16=False)
    assert (out - ref).abs().max() < 0.1  # same model and seeds; noise drawn in another dtype


def test_rollout_keeps_latents_in_the_requested_dtype():
    from far.sample import SamplerConfig, rollout
    net = _tiny_far(TASKS["bair_pred14"]).net.eval()
    noise = torch.randn(1, 2, 192, 4, 4)
    ctx = torch.randn(1, 1, 192, 4, 4)
    calls = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seq = rollout(net, ctx, 2, SamplerConfig(num_steps=2), noise=noise, latent_dtype=torch.bfloat16,
                      on_call=lambda *a: calls.append(a[-1].dtype))
    assert seq.dtype == torch.bfloat16 and calls == [torch.bfloat16] * 4
    assert rollout(net, ctx, 2, SamplerConfig(num_steps=2), noise=noise).dtype == torch.float32


@pytest.mark.gpu
def test_cuda_sampling_runs_bf16():
    task = TASKS["bair_pred14"]
    model = _tiny_far(task).to("cuda")
    assert model.uses_bf16() and model.sampling_precision() == "bf16"
    assert record_conventions(task, "quick", model, torch.device("cuda"), "none")["precision"] == "bf16"
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = model.sample(Prompt(context=torch.rand(2, 2, 3, 32, 32)), 3, gens)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 3, 32, 32) and torch.isfinite(out).all()
    dcae = build_far_model("far", task, "quick", num_layers=1, num_heads=1, codec="dcae-8x").to("cuda")
    codec = dcae._sampling_codec(True)
    assert next(codec.parameters()).dtype == torch.bfloat16 and next(dcae.codec.parameters()).dtype == torch.float32
    out = dcae.sample(Prompt(context=torch.rand(1, 2, 3, 64, 64)), 2, [torch.Generator().manual_seed(0)])
    assert out.dtype == torch.float32 and out.shape == (1, 2, 3, 64, 64)


# ----------------------------------------------------------------------------- 4. Minecraft part B

def test_minecraft_part_b_samples_with_actions_and_guidance_like_the_released_config():
    mc, dm = TASKS["minecraft_long"].parts[1], TASKS["dmlab_long"].parts[1]
    assert (mc.condition, mc.guidance_scale, mc.drop_conditions) == ("action", 1.5, False)
    assert (dm.condition, dm.guidance_scale, dm.drop_conditions) == ("action", 1.0, True)
    assert "FAR_M_Long_minecraft_res128_1000K_bs32_36to264.yml" in TASKS["minecraft_long"].notes
    assert "PROTOCOLS.md" in TASKS["minecraft_long"].notes and "unconditional" in TASKS["minecraft_long"].notes
    model = _tiny_far(TASKS["minecraft_long"])
    model.use_protocol_sampling(TASKS["minecraft_long"].at_scale("quick").parts[1])
    assert model.sampler.guidance_scale == 1.5 and not model.sampler.drop_conditions


# ----------------------------------------------------------------------------- 5. UCF-101 real sets

def far_balanced(data_list: list, num_samples: int, seed: int) -> list:
    """FAR's get_balanced_dataset after accelerate's set_seed(seed) on rank 0, restated: the module's
    global random, a dict of classes filled in list order, random.sample per class, one shuffle."""
    random.seed(seed)
    data_by_class = {}
    for item in data_list:
        data_by_class.setdefault(item.label, []).append(item)
    per_class = math.ceil(num_samples / len(data_by_class))
    out = []
    for items in data_by_class.values():
        out.extend(random.sample(items, per_class))
    random.shuffle(out)
    return out[:num_samples]


def _synthetic_ucf(classes=(7, 2, 9, 0, 5, 1, 8), per_class=12) -> list[VideoRef]:
    """Clips of classes whose first appearance is not their sorted order, interleaved."""
    return [VideoRef("ucf101", f"c{c}_{i}", Path(f"c{c}_{i}.mp4"), label=c)
            for i in range(per_class) for c in (classes if i % 2 else classes[::-1])]


def test_balanced_real_set_is_fars_draw_per_seed_in_first_appearance_order():
    refs = _synthetic_ucf()
    first_seen = list(dict.fromkeys(r.label for r in refs))
    assert first_seen != sorted(first_seen)
    draws = {s: ucf_balanced(refs, 30, s) for s in (0, 2, 4, 6)}
    for s, chosen in draws.items():
        assert chosen == far_balanced(refs, 30, s)
        assert len(chosen) == 30 == len({r.id for r in chosen})
    assert len({tuple(r.id for r in c) for c in draws.values()}) == 4  # every seed its own real set
    # the old harness's class order (sorted) draws other clips from the same seed
    by_sorted = sorted(refs, key=lambda r: r.label)
    assert ucf_balanced(by_sorted, 30, 0) != draws[0]
    # a class smaller than ceil(n / classes): all of it (FAR's random.sample raises)
    small = refs + [VideoRef("ucf101", "lonely", Path("lonely.mp4"), label=3)]
    assert sum(r.label == 3 for r in ucf_balanced(small, 64, 0)) == 1


@pytest.fixture(scope="module")
def ucf_lists(tmp_path_factory):
    if not FIX.is_dir():
        pytest.skip(f"dataset fixtures not found at {FIX}")
    root = tmp_path_factory.mktemp("ucf")
    for name in ("ucfTrainTestlist", "UCF-101"):
        (root / name).symlink_to(FIX / "ucf101" / name)
    return root


def test_real_sets_per_seed_and_the_10k_protocol(ucf_lists):
    trainval = ucf101.list_videos(ucf_lists, "trainval")
    task = TASKS["ucf101_cond128"]
    sets = {s: [r for r, _ in eval_refs(task, ucf_lists, seed=s)] for s in task.seeds[:2]}
    for s, chosen in sets.items():
        assert chosen == far_balanced(trainval, 2048, s) and len(chosen) == 2048
    assert {r.id for r in sets[0]} != {r.id for r in sets[2]}
    ten_k = [r for r, _ in eval_refs(TASKS["ucf101_cond128_10k"], ucf_lists, seed=0)]
    assert len(ten_k) == 10_000 == len({r.id for r in ten_k}) and ten_k == far_balanced(trainval, 10_000, 0)
    assert "get_balanced_dataset(num_sample=10000)" in TASKS["ucf101_cond128_10k"].selection
    data = ClipDataset(task, eval_refs(task, ucf_lists), ucf_lists)
    assert [r for r, _ in data.for_seed(2).refs] == sets[2] and data.for_seed(2) is data.for_seed(2)
    assert data.for_seed(0) is data  # built for the first seed
    pred = ClipDataset(TASKS["ucf101_pred"], eval_refs(TASKS["ucf101_pred"], ucf_lists), ucf_lists)
    assert pred.for_seed(3) is pred  # the prediction selection does not depend on the seed


@needs_fixtures
def test_short_clips_fall_back_to_stride_1_in_evaluation_and_training():
    assert [ucf101.clip_stride(n, 16, 3) for n in (10, 16, 45, 46, 78)] == [1, 1, 1, 3, 3]
    full = VideoRef("ucf101", "v", UCF_CLIP, label=21)
    short = replace(full, num_frames=40)  # a 40-frame clip: 16 frames at stride 3 need 46
    stride1 = ucf101.read_clip(full, 0, 16, 1, 32)["video"]
    assert torch.equal(ucf101.read_clip(short, 0, 16, 3, 32)["video"], stride1)
    assert not torch.equal(ucf101.read_clip(full, 0, 16, 3, 32)["video"], stride1)  # 78 frames: stride 3
    # under 16 frames: stride 1 too (frames past the end are zeros, as before)
    assert torch.equal(ucf101.read_clip(replace(full, num_frames=10), 0, 16, 3, 32)["video"], stride1)
    task = replace(TASKS["ucf101_cond128"].at_scale("quick"), resolution=32)
    train = TrainClipDataset(task, [short], num_frames=16, random_crop=False, hflip=False)
    assert torch.equal(train[0]["video"], stride1)


class _LabelModel:
    """Generates clips whose pixels encode the class label it was given."""
    name, conditions = "label_model", frozenset({"label"})

    def sample(self, prompt, num_frames, generator):
        b, _, c, h, w = prompt.context.shape
        return (prompt.labels.float() / 100).view(b, 1, 1, 1, 1).expand(b, num_frames, c, h, w).clone()


class _PerSeed(list):
    def __init__(self, clips, by_seed):
        super().__init__(clips)
        self.by_seed = by_seed

    def for_seed(self, seed):
        return self.by_seed[seed]


def test_sampling_and_scoring_take_the_clips_of_each_seed(tmp_path):
    def clips(labels):
        return [{"video": torch.full((4, 3, 8, 8), lab / 100), "label": lab, "id": f"l{lab}"} for lab in labels]

    per_seed = {0: clips([1, 2, 3]), 1: clips([7, 8, 9])}
    data = _PerSeed(per_seed[0], {s: _PerSeed(c, {}) for s, c in per_seed.items()})
    part = Part("gen", 0, 4, "label", (Metric("psnr"),))
    task = Task(name="tiny_gen", version=1, dataset="ucf101", split="trainval", selection="per class",
                num_videos=3, resolution=8, num_frames=4, frame_stride=1, parts=(part,), seeds=(0, 1),
                quick=QuickScale(num_videos=3))
    sample_to_store(_LabelModel(), task, data, tmp_path)
    for seed, labels in ((0, [1, 2, 3]), (1, [7, 8, 9])):
        pred, real, _ = load_part(task, part, data, tmp_path, seed)
        assert [round(float(p[0, 0, 0, 0, 0]) * 100) for p in pred] == labels  # labels of that seed's set
        assert [round(float(r[0, 0, 0, 0]) * 100) for r in real] == labels  # and its real set


# ----------------------------------------------------------------------------- 6. GreenEarthNet

@pytest.fixture()
def gen_root(tmp_path):
    if not GEN_ROOT.is_dir():
        pytest.skip(f"fixture {GEN_ROOT} not present")
    root = tmp_path / "greenearthnet"
    shutil.copytree(GEN_ROOT / "ood-t_chopped", root / "ood-t_chopped")
    return root


def _gen_task(**kw) -> Task:
    return replace(TASKS["greenearthnet"], resolution=16, num_videos=0, seeds=(0,), **kw)


def test_missing_landcover_stays_missing_and_out_of_the_scores(gen_root):
    import xarray as xr
    from bench.metrics.earthnet import GreenEarthNetScorer
    path = gen_root / "ood-t_chopped" / GEN_CUBE
    task = _gen_task()
    ref = greenearthnet.list_videos(gen_root, task.split)[0]
    clip = greenearthnet.read_clip(ref, 4, 30, 5)
    pred = np.asarray(xr.open_dataset(GEN_ROOT / "preds/ood-t_chopped" / GEN_CUBE)["ndvi_pred"].values, np.float64)
    target, valid = clip["ndvi"][:, 0].double().numpy(), clip["mask"][:, 0].numpy()
    lc = clip["landcover"].numpy()

    def nse(landcover):
        scorer = GreenEarthNetScorer()
        scorer.add("c", pred, target, valid, landcover)
        return scorer.result()["nse"]

    hq = np.argwhere(np.isin(lc, (10, 20, 30, 40)))[:4]  # four vegetation pixels lose their land cover
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["esawc_lc"].values[hq[:, 0], hq[:, 1]] = np.nan
    ds.to_netcdf(path)
    clip = greenearthnet.read_clip(ref, 4, 30, 5)
    got = clip["landcover"].numpy()
    assert np.isnan(got[hq[:, 0], hq[:, 1]]).all() and np.isfinite(np.delete(got.ravel(), hq @ [16, 1])).all()
    as_built_up = got.copy()
    as_built_up[hq[:, 0], hq[:, 1]] = 50  # what "not a vegetation pixel" must give
    as_class_0 = np.nan_to_num(got, nan=0.0)  # the old reading
    assert nse(got) == nse(as_built_up) != nse(as_class_0)


def _oracle_store(task, data, store):
    """Sample the true future with a model whose float output is the ground-truth composite."""
    class Oracle:
        name, conditions = "oracle", frozenset()

        def sample(self, prompt, num_frames, generator):
            clips = [c for c in data]
            return torch.stack([c["video"][10:10 + num_frames] for c in clips[:prompt.context.shape[0]]])

    sample_to_store(Oracle(), task, data, store, batch_size=8)


def test_predictions_are_scored_as_float_ndvi_and_outperformance_needs_a_climatology(gen_root, tmp_path):
    task = _gen_task()
    data = ClipDataset(task, eval_refs(task, gen_root), gen_root)
    _oracle_store(task, data, tmp_path / "store")
    stored = read_sample_array(SampleKey("pred", 0, 0, 0).path(tmp_path / "store"), "ndvi")
    assert stored.dtype == np.float32 and stored.shape == (20, 16, 16)
    log = []
    scores = score_store(task, data, tmp_path / "store", log=log.append)
    assert scores["rmse"]["mean"] < 1e-6 and scores["nse"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert "climatology" in scores["outperformance"]["unavailable"] and "climatology.py" in \
        scores["outperformance"]["provide"]
    # the official climatology layout: climatology/preds/<track>/<region>/<cube>.nc
    clim_path = greenearthnet.climatology_path(gen_root, task.split, data.refs[0][0])
    assert clim_path == gen_root / "climatology/preds/ood-t_chopped" / GEN_CUBE
    clim_path.parent.mkdir(parents=True)
    shutil.copy(GEN_ROOT / "preds/ood-t_chopped" / GEN_CUBE, clim_path)
    with_clim = score_store(task, data, tmp_path / "store", log=log.append)
    assert with_clim["outperformance"]["mean"] == 1.0  # a perfect model beats the climatology everywhere


def test_standin_writes_a_daily_climatology_that_is_read_at_the_target_dates(tmp_path):
    from bench.data.standins import materialize
    root = materialize("greenearthnet", tmp_path / "gen", num_train=0, num_eval=1, frame_size=16)
    (ref,) = greenearthnet.list_videos(root, "ood-t_chopped")
    path = greenearthnet.climatology_path(root, "ood-t_chopped", ref)
    import xarray as xr
    with xr.open_dataset(path) as clim, xr.open_dataset(ref.path) as cube:
        assert clim.sizes["time"] == 100 and (clim.time.values == cube.time.values[50:]).all()
        daily = clim.ndvi_pred.values
    got = greenearthnet.read_climatology(root, "ood-t_chopped", ref).numpy()
    days = np.arange(4, 150, 5)[10:30] - 50
    assert got.shape == (20, 16, 16) and np.array_equal(got, daily[days])
    task = replace(TASKS["greenearthnet"].at_scale("quick"), resolution=16, num_videos=0)
    data = ClipDataset(task, eval_refs(task, root), root)
    _oracle_store(task, data, tmp_path / "store")
    assert 0 < score_earthnet_part(task, task.parts[0], data, tmp_path / "store", 0)["outperformance"] <= 1


def test_ndvi_ssim_is_ssim_of_ndvi_on_clear_sky_pixels():
    from bench.metrics.earthnet import ndvi_ssim
    rng = np.random.default_rng(0)
    target = np.cumsum(rng.normal(0, 0.05, (3, 24, 24)), axis=-1).clip(-1, 1)
    valid = rng.random((3, 24, 24)) > 0.3
    valid[2] = False
    wrong_where_cloudy = np.where(valid, target, rng.uniform(-1, 1, target.shape))
    got = ndvi_ssim(wrong_where_cloudy, np.where(valid, target, np.nan), valid)
    assert got[:2] == pytest.approx(1.0, abs=1e-9) and np.isnan(got[2])
    noisy = ndvi_ssim(target + rng.normal(0, 0.1, target.shape), target, valid)[:2]
    assert (noisy < 0.95).all()
    metrics = [m.name for m in TASKS["greenearthnet_psnr"].parts[0].metrics]
    assert metrics == ["ndvi_psnr", "ndvi_ssim"]


def test_greenearthnet_seeds_are_training_seeds_and_the_record_says_so():
    assert TASKS["greenearthnet"].seed_kind == "training"
    assert all(t.seed_kind == "sampling" for n, t in TASKS.items() if n != "greenearthnet")
    conv = record_conventions(TASKS["greenearthnet"], "paper", RepeatLastFrame(), "cpu", "none")
    assert conv["seed_kind"] == "training" and "training seeds" in conv["seed_note"]
    with pytest.raises(ValueError, match="seed_kind"):
        replace(TASKS["greenearthnet"], seed_kind="lucky")


# ----------------------------------------------------------------------------- 8. training recipes

def test_training_recipes_follow_the_official_train_configs():
    want = {"ucf101_cond128": (400_000, 0, True, 16), "ucf101_uncond256": (400_000, 0, True, 16),
            "ucf101_pred": (200_000, 0, True, 16), "bair_pred": (200_000, 0, False, 30),
            "bair_pred14": (200_000, 0, False, 30), "dmlab_long": (1_000_000, 10_000, False, 16),
            "minecraft_long": (1_000_000, 10_000, False, 16)}
    for name, (steps, warmup, flip, window) in want.items():
        task = TASKS[name]
        cfg, r = default_train_config(task, "paper"), recipe_for(task)
        assert (cfg.steps, cfg.warmup_steps, cfg.batch_size, cfg.lr, cfg.ema_decay) == (steps, warmup, 32, 1e-4,
                                                                                      0.9999), name
        assert (r.hflip, r.short_term_ctx_winsize) == (flip, window) and r.source.startswith("showlab/FAR"), name
        assert default_config("far", task, "paper").short_term_ctx_winsize == window, name
    assert default_train_config(TASKS["bair_pred"], "quick").warmup_steps == 50  # quick scale unchanged
    assert all(isinstance(k, tuple) for k in RECIPES)  # one table of data
    conv = record_conventions(TASKS["bair_pred"], "paper", RepeatLastFrame(), "cpu", "trained:x:sha256:y")
    assert conv["train_recipe"]["source"].endswith("FAR_B_bair_res64_200K_bs32.yml")
    assert "train_recipe" not in record_conventions(TASKS["bair_pred"], "paper", RepeatLastFrame(), "cpu", "none")


@needs_fixtures
def test_ucf_training_clips_are_flipped_half_the_time():
    task = replace(TASKS["ucf101_pred"].at_scale("quick"), resolution=32)
    ref = VideoRef("ucf101", "v", UCF_CLIP, label=21)
    flipping = TrainClipDataset(task, [ref], num_frames=4, random_crop=False)
    plain = TrainClipDataset(task, [ref], num_frames=4, random_crop=False, hflip=False)
    assert flipping.hflip and not TrainClipDataset(TASKS["bair_pred"], []).hflip
    flips = 0
    for i in range(6):
        torch.manual_seed(i)
        a = flipping[0]["video"]
        torch.manual_seed(i)
        b = plain[0]["video"]
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
        flips += not torch.equal(a, b)
    assert 0 < flips < 6


# ----------------------------------------------------------------------------- 10. notes

def test_task_notes_state_what_stays_different_by_design():
    for name, task in TASKS.items():
        assert "stored losslessly" in task.notes and "own seed" in task.notes, name
        if name in FAR_PROTOCOL:
            assert "lossy mp4" in task.notes and "floor" in task.notes and "seed + rank" in task.notes, name


def test_paper_recipes_keep_the_learning_rate_constant_after_warmup_as_the_official_configs():
    """Every official train config uses ``constant_with_warmup``; the harness's cosine decay is only for
    quick runs."""
    from bench.train import TrainConfig, lr_at
    for name in ("bair_pred", "ucf101_pred", "dmlab_long", "ucf101_cond128"):
        cfg = default_train_config(TASKS[name], "paper")
        assert cfg.schedule == "constant", name
        late = [lr_at(s, cfg) for s in (cfg.warmup_steps, cfg.steps // 2, cfg.steps - 1)]
        assert late == [cfg.lr] * 3, (name, late)
    cosine = TrainConfig(steps=100, lr=1.0, warmup_steps=0, schedule="cosine")
    assert lr_at(99, cosine) < 0.2 and lr_at(0, cosine) == pytest.approx(1.0)
    warm = TrainConfig(steps=100, lr=1.0, warmup_steps=10, schedule="constant")
    assert lr_at(4, warm) == pytest.approx(0.5) and lr_at(50, warm) == 1.0


def test_bair_trains_one_model_on_30_frames_for_both_protocols():
    """FAR's BAIR train config has n_frames 30; the 2 -> 14 test config evaluates that same model."""
    from bench.run import train_frames
    assert train_frames(TASKS["bair_pred14"], "paper") == 30 == train_frames(TASKS["bair_pred"], "paper")
    assert TASKS["bair_pred14"].num_frames == 16
    quick = TASKS["bair_pred14"].at_scale("quick")
    assert train_frames(quick, "quick") == quick.num_frames
    assert train_frames(TASKS["ucf101_pred"], "paper") == 16


def test_sample_store_identity_includes_the_precision_sampling_runs_in():
    """A store sampled in fp32 on a CPU must not be resumed by bf16 sampling on a GPU (or the reverse)."""
    from bench.run import RunConfig, identity
    task = TASKS["dmlab_long"].at_scale("quick")
    model = build_far_model("far", task, "quick", num_layers=1)
    run = RunConfig(model="far", task="dmlab_long")
    cpu = identity(run, model, "w", torch.device("cpu"))
    assert cpu == identity(run, model, "w", torch.device("cpu"))
    assert cpu != identity(run, model, "w", torch.device("cuda"))
