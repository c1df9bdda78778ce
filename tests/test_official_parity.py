"""Parity with the official FAR implementation (showlab/FAR), case by case.

Every case folder under ``$FAR_PARITY_DIR`` (default ``../shared/fixtures/far_official``) is
discovered and checked according to its kind (the letter before the first underscore; ``keys/`` is
kind A). A folder of a kind these tests do not know fails. See the fixtures' README for what each
kind holds. Tolerance: 1e-4 absolute and relative, the official code's own reproducibility being
about 3e-6.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, record_error
from far.autoencoder import LatentCodec, build_dcae
from far.cache import MultiLevelKVCache
from far.flow import add_noise, euler_step, inference_schedule, train_sigmas, train_timesteps
from far.model import FAR, count_parameters
from far.official import config_from_official, load_official_state_dict, our_key_to_official
from far.sample import SamplerConfig, rollout

PARITY_DIR = Path(os.environ.get("FAR_PARITY_DIR", REPO.parent / "shared" / "fixtures" / "far_official"))
TOL = dict(rtol=1e-4, atol=1e-4)


def _case_dirs() -> list[Path]:
    if not PARITY_DIR.is_dir():
        return []
    return sorted(p for p in PARITY_DIR.iterdir() if p.is_dir())


def _kind(case: Path) -> str:
    if case.name == "keys":
        return "A"
    return case.name.split("_", 1)[0]


def _meta(case: Path) -> dict:
    return json.loads((case / "meta.json").read_text())


def _close(kind: str, actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    record_error(kind, err)
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{what}: {m}")


def _close_abs(kind: str, actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    record_error(kind, err)
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


def _load_far(meta: dict, weights: Path) -> FAR:
    cfg = config_from_official(meta["constructor_kwargs"], long=meta["class"].endswith("FAR_Long"))
    model = FAR(cfg).eval()
    load_official_state_dict(model, load_file(str(weights)), source=str(weights))
    assert count_parameters(model) == meta["num_parameters"]
    return model


def _conditions(case_tensors: dict, frames: slice | None = None) -> dict:
    kw = {}
    if "labels" in case_tensors:
        kw["labels"] = case_tensors["labels"]
    if "actions" in case_tensors:
        kw["actions"] = case_tensors["actions"] if frames is None else case_tensors["actions"][:, frames]
    return kw


def test_parity_dir_has_cases():
    assert _case_dirs(), f"no parity cases found under {PARITY_DIR} (set FAR_PARITY_DIR)"


# ------------------------------------------------------------------------------------- kinds

def check_keys(case: Path) -> None:
    """A: full-size presets have the official key names, shapes, dtypes and parameter counts."""
    files = sorted(p for p in case.glob("*.json") if p.name != "summary.json")
    assert files
    for f in files:
        spec = json.loads(f.read_text())
        expected = {k: (tuple(shape), dtype) for k, shape, dtype in spec["state_dict"]}
        kwargs = spec["constructor_kwargs"]
        with torch.device("meta"):
            if spec["class"] == "MyAutoencoderDC":
                model = build_dcae(kwargs["config"])
                names = dict(model.state_dict())
            else:
                cfg = config_from_official(kwargs["resolved_config"], long=spec["class"] == "FAR_Long")
                model = FAR(cfg)
                names = {our_key_to_official(k): v for k, v in model.state_dict().items()}
        got = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in names.items()}
        assert set(got) == set(expected), (
            f"{f.name}: missing {sorted(set(expected) - set(got))[:5]}, extra {sorted(set(got) - set(expected))[:5]}")
        bad = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
        assert not bad, f"{f.name}: shape/dtype mismatches {list(bad.items())[:5]}"
        assert count_parameters(model) == spec["num_parameters"], f"{f.name}: parameter count"
        record_error("A_keys", 0.0)


def check_far_forward(case: Path) -> None:
    """B and D (forward): train-mode outputs, eval last frame, and the KV-cache trace."""
    kind = _kind(case) + "_forward"
    meta = _meta(case)
    model = _load_far(meta, case / "model.safetensors")
    t = load_file(str(case / "case.safetensors"))
    with torch.no_grad():
        out = model(t["latents"], t["timesteps"], **_conditions(t))
        _close(kind, out, t["out_train"], "out_train")
        last = model(t["latents"], t["timesteps"], last_frame_only=True, **_conditions(t))
        _close(kind, last, t["out_eval_nocache"], "out_eval_nocache")
        if "trace_noisy" not in t:
            return
        cache = MultiLevelKVCache.empty(model.cfg.num_layers)
        b = t["latents"].shape[0]
        for i in range(t["trace_noisy"].shape[0]):
            k = int(t["trace_num_context"][i])
            x = torch.cat([t["latents"][:, :k], t["trace_noisy"][i]], dim=1)
            ts = torch.cat([torch.full((b, k), -1.0), t["trace_t"][i][:, None]], dim=1)
            cond = _conditions(t, slice(0, k + 1))
            cached = model(x, ts, cache=cache, cache_step=bool(t["trace_is_cache_step"][i]), **cond)
            _close(kind + "_kvcache", cached, t["trace_out_cached"][i], f"trace call {i} (cached)")
            full = model(x, ts, last_frame_only=True, **cond)
            _close(kind + "_kvcache", full, t["trace_out_nocache"][i], f"trace call {i} (no cache)")


def _codec(case: Path, meta: dict) -> LatentCodec:
    vae = build_dcae(case / meta["vae"]["config"]).eval()
    vae.load_state_dict(load_file(str(case / meta["vae"]["weights"])), strict=True)
    return LatentCodec(vae)


def check_pipeline(case: Path) -> None:
    """C and D (pipeline): full rollouts through the DC-AE, with and without cache, every guidance."""
    kind = _kind(case) + "_pipeline"
    meta = _meta(case)
    tmeta = json.loads((case / meta["transformer"]["meta"]).read_text())
    model = _load_far(tmeta, case / meta["transformer"]["weights"])
    codec = _codec(case, meta)
    t = load_file(str(case / "case.safetensors"))
    g = meta["generate_kwargs"]
    context = None
    if "context_video" in t:
        context = codec.encode(t["context_video"])
        _close(kind, context, t["context_latents"], "context_latents")
    checked = set()
    for scale in g["guidance_scales"]:
        tag = "g" + f"{float(scale)}".replace(".", "p")
        for use_cache in (True, False):
            suffix = "kvon" if use_cache else "kvoff"
            outs: list[torch.Tensor] = []
            latents = rollout(model, context, g["unroll_length"],
                              SamplerConfig(num_steps=g["num_inference_steps"], guidance_scale=scale,
                                            use_cache=use_cache),
                              noise=t["init_noise"], on_call=lambda *a: outs.append(a[-1]),
                              **_conditions(t))
            video = codec.decode(latents)
            _close(kind, latents, t[f"latents_{tag}_{suffix}"], f"latents_{tag}_{suffix}")
            _close(kind, video, t[f"video_{tag}_{suffix}"], f"video_{tag}_{suffix}")
            checked |= {f"latents_{tag}_{suffix}", f"video_{tag}_{suffix}"}
            name = f"transformer_out_{tag}_{suffix}"
            if name in t:
                _close(kind, torch.stack(outs), t[name], name)
                checked.add(name)
            calls = meta.get("observed", {}).get(f"{float(scale)}", {}).get(f"calls_{suffix}")
            if calls is not None:
                assert len(outs) == len(calls), f"{len(outs)} network calls, official made {len(calls)}"
    unchecked = {k for k in t if k.startswith(("latents_", "video_", "transformer_out_"))} - checked
    assert not unchecked, f"case tensors not checked (unknown guidance tag?): {sorted(unchecked)}"


def check_dcae(case: Path) -> None:
    """E: DC-AE encode and decode."""
    cfg = json.loads((case / "dcae_config.json").read_text())
    vae = build_dcae(cfg).eval()
    vae.load_state_dict(load_file(str(case / "model.safetensors")), strict=True)
    meta = _meta(case)
    assert count_parameters(vae) == meta["num_parameters"]
    t = load_file(str(case / "case.safetensors"))
    with torch.no_grad():
        _close("E_dcae", vae.encode(t["images"]).latent, t["latents"], "latents")
        _close("E_dcae", vae.decode(t["latents"]).sample, t["decoded"], "decoded")
        _close("E_dcae", vae.decode(t["latents_random"]).sample, t["decoded_random"], "decoded_random")


def check_scheduler(case: Path) -> None:
    """F: training schedule, inference schedules (exact), noising and Euler trajectory."""
    t = load_file(str(case / "case.safetensors"))
    assert torch.equal(train_timesteps(), t["train_timesteps"])
    assert torch.equal(train_sigmas(), t["train_sigmas"])
    for n in _meta(case)["set_timesteps_n"]:
        s = inference_schedule(n)
        assert torch.equal(s.timesteps, t[f"timesteps_n{n}"]), f"timesteps n={n}"
        assert torch.equal(s.sigmas, t[f"sigmas_n{n}"]), f"sigmas n={n}"
    idx = t["scale_noise_indices"]
    assert torch.equal(train_timesteps()[idx], t["scale_noise_timesteps"])
    noisy = add_noise(t["scale_noise_sample"], t["scale_noise_noise"], train_sigmas()[idx])
    _close("F_scheduler", noisy, t["scale_noise_output"], "scale_noise_output")
    steps = _meta(case).get("step_example_num_inference_steps", t["step_model_outputs"].shape[0])
    s = inference_schedule(steps)
    x = t["step_samples"][0]
    for i in range(steps):
        x = euler_step(x, t["step_model_outputs"][i], s.sigmas[i], s.sigmas[i + 1])
        _close("F_scheduler", x, t["step_samples"][i + 1], f"step {i}")


def check_metrics(case: Path) -> None:
    """G: FAR's evaluation metrics (mse, psnr, ssim) with the official reductions."""
    from bench.metrics import far_video_metrics

    meta = _meta(case)
    t = load_file(str(case / "case.safetensors"))
    sample, gt = t["sample_u8"].float() / 255.0, t["gt_u8"].float() / 255.0
    result = far_video_metrics(sample, gt, context_length=meta["context_length"],
                               metrics=tuple(meta["result"]))
    tol = {"psnr": 1e-4, "mse": 1e-5, "ssim": 1e-5}
    for name, value in meta["result"].items():
        err = abs(float(result[name]) - value)
        record_error("G_metrics", err)
        assert err <= tol.get(name, 1e-5), f"{name}: {float(result[name])} vs official {value}"


def check_lpips(case: Path) -> None:
    """G (LPIPS): FAR's convention ([0, 1] input) with the backbone shipped in the case, per frame and
    reduced (mean over frames, min over trajectories, mean over videos); the standard convention too."""
    from bench.metrics import mean_over_videos, trajectory_reduce, video_values
    from bench.metrics.lpips import build_lpips, lpips_per_frame

    meta = _meta(case)
    t = load_file(str(case / "case.safetensors"))
    net = build_lpips(load_file(str(case / "alexnet_features.safetensors")))
    tc = meta["context_length"]
    sample, gt = t["sample_u8"].float() / 255.0, t["gt_u8"].float() / 255.0
    for convention, name in (("far", "per_frame_lpips_far"), ("standard", "per_frame_lpips_standard")):
        got = lpips_per_frame(sample[:, :, tc:], gt[:, :, tc:], convention=convention, model=net)
        _close_abs("G_lpips", got, t[name], name, atol=1e-6)
    far = lpips_per_frame(sample[:, :, tc:], gt[:, :, tc:], convention="far", model=net)
    result = mean_over_videos(trajectory_reduce(video_values(far), "min", "lpips"))
    err = abs(result - meta["result"]["lpips"])
    record_error("G_lpips", err)
    assert err <= 1e-6, f"lpips: {result} vs official {meta['result']['lpips']}"


def _dispatch(case: Path):
    kind = _kind(case)
    if kind == "A":
        return check_keys
    if kind == "B":
        return check_far_forward
    if kind == "C":
        return check_pipeline
    if kind == "D":
        return check_pipeline if "transformer" in _meta(case) else check_far_forward
    if kind == "E":
        return check_dcae
    if kind == "F":
        return check_scheduler
    if kind == "G":
        return check_lpips if (case / "alexnet_features.safetensors").exists() else check_metrics
    return None


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda p: p.name)
def test_official_case(case: Path):
    check = _dispatch(case)
    if check is None:
        pytest.fail(f"parity case {case.name!r} is of unknown kind {_kind(case)!r}: "
                    f"the tests know kinds A (keys/) and B-G")
    check(case)
