"""Parity with the official FAR implementation (showlab/FAR), case by case.

Every case folder under ``$FAR_PARITY_DIR`` (default ``../shared/fixtures/far_official``) is
discovered and checked according to its kind (the letter before the first underscore; ``keys/`` is
kind A). A folder of a kind these tests do not know fails. See the fixtures' README for what each
kind holds.

Every tensor a case's ``meta.json`` lists under ``tensors`` must be in the case file, with the listed
shape and dtype, and must be used by the check: fed to our code as an input, or compared with what
our code computes (a tensor in the file that nothing uses fails too). Tolerance, per element:
``|actual - expected| <= 3e-5 * max(1, |expected|)``, i.e. 3e-5 absolute where ``|expected| <= 1``
and 3e-5 relative above (the official code's own reproducibility is 2.9e-6; our largest observed
error is 1.8e-5 on values of magnitude ~5). Integer tensors and the scheduler are compared exactly;
metric values with the README's tighter absolute bounds as well (psnr 1e-4, mse and ssim 1e-5,
LPIPS 1e-6). The self-tests at the end feed deliberately wrong cases that must be rejected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO, record_error
from far.autoencoder import LatentCodec, build_dcae
from far.cache import MultiLevelKVCache
from far.flow import add_noise, euler_step, inference_schedule, train_sigmas, train_timesteps
from far.model import FAR, count_parameters
from far.official import config_from_official, load_official_state_dict, our_key_to_official
from far.sample import SamplerConfig, rollout

PARITY_DIR = Path(os.environ.get("FAR_PARITY_DIR", REPO.parent / "shared" / "fixtures" / "far_official"))
RTOL = 3e-5  # allowed |actual - expected| / max(1, |expected|), per element
METRIC_ATOL = {"psnr": 1e-4, "mse": 1e-5, "ssim": 1e-5, "lpips": 1e-6}  # README section 11 (LPIPS: G_lpips)
_record = record_error  # the self-tests swap this out so that their deliberate errors stay out of the summary


class ParityMismatch(AssertionError):
    """A case's tensor differs from what our code computes, or the case is incomplete."""


def check_close(kind: str, actual: torch.Tensor, expected: torch.Tensor, what: str, exact: bool = False,
                atol_cap: float | None = None) -> None:
    """Element-wise ``|actual - expected| <= RTOL * max(1, |expected|)`` (and ``<= atol_cap`` if given);
    bit-exact for integer tensors or ``exact``. Equal infinities count as equal; NaN never does."""
    if not isinstance(actual, torch.Tensor):
        raise ParityMismatch(f"{what}: expected a tensor, our code gave {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise ParityMismatch(f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    if actual.dtype != expected.dtype:
        raise ParityMismatch(f"{what}: dtype {actual.dtype} != expected {expected.dtype}")
    if expected.numel() == 0:
        _record(kind, 0.0, 0.0)
        return
    if exact or not expected.is_floating_point():
        if not torch.equal(actual, expected):
            diff = (actual != expected).nonzero()[0].tolist()
            raise ParityMismatch(f"{what}: not bit-identical ({int((actual != expected).sum())} of "
                                 f"{expected.numel()} elements differ; first at {diff}: "
                                 f"{actual[tuple(diff)].item()!r} vs expected {expected[tuple(diff)].item()!r})")
        _record(kind, 0.0, 0.0)
        return
    a, e = actual.detach().double(), expected.double()
    err = torch.where(a == e, torch.zeros_like(a), (a - e).abs())  # equal infinities: 0; NaN stays NaN
    scale = e.abs().clamp(min=1.0)
    allowed = RTOL * scale
    if atol_cap is not None:
        allowed = allowed.clamp(max=atol_cap)
    bad = ~(err <= allowed)  # NaN is bad
    err_f = torch.nan_to_num(err, nan=float("inf"))
    _record(kind, err_f.max().item(), (err_f / scale).max().item(), (err_f / allowed).max().item())
    if bad.any():
        idx = tuple(bad.nonzero()[0].tolist())
        bound = f"{RTOL:g} * max(1, |expected|)" + (f" and {atol_cap:g}" if atol_cap is not None else "")
        raise ParityMismatch(
            f"{what}: {int(bad.sum())} of {expected.numel()} elements exceed |error| <= {bound}; first at "
            f"index {list(idx)}: {a[idx].item():.9g} vs expected {e[idx].item():.9g} (error {err[idx].item():.3g}, "
            f"allowed {allowed[idx].item():.3g}); max scaled error {(err_f / scale).max().item():.3g}")


def check_value(kind: str, actual: float, expected: float, what: str, atol_cap: float | None = None) -> None:
    """A reduced metric value (a Python float in meta.json) under the same rule, in float64."""
    check_close(kind, torch.tensor(float(actual), dtype=torch.float64),
                torch.tensor(float(expected), dtype=torch.float64), what, atol_cap=atol_cap)


class Case:
    """A case folder's meta.json and tensors, with the bookkeeping that no listed tensor goes unchecked.

    ``input(name)`` hands a tensor to our code; ``compare(name, actual)`` checks one. ``finish()``
    fails if a listed tensor (or one in the file) was neither.
    """

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.meta = _meta(path)
        listed = self.meta.get("tensors")
        if not isinstance(listed, dict) or not listed:
            raise ParityMismatch(f"{path.name}/meta.json lists no tensors")
        self.listed = listed
        self.tensors = load_file(str(path / "case.safetensors"))
        missing = [n for n in listed if n not in self.tensors]
        if missing:
            raise ParityMismatch(f"{path.name}: tensors listed in meta.json are missing from case.safetensors: "
                                 f"{missing}")
        for name, spec in listed.items():
            t = self.tensors[name]
            want_shape, want_dtype = tuple(spec.get("shape", t.shape)), spec.get("dtype", str(t.dtype)[6:])
            got_dtype = str(t.dtype).removeprefix("torch.")
            if tuple(t.shape) != want_shape or got_dtype != want_dtype:
                raise ParityMismatch(f"{path.name}: {name} is {tuple(t.shape)} {got_dtype} in case.safetensors, "
                                     f"meta.json lists {want_shape} {want_dtype}")
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def input(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise ParityMismatch(f"{self.path.name}: input tensor {name!r} is missing from case.safetensors")
        self.used.add(name)
        return self.tensors[name]

    def compare(self, name: str, actual: torch.Tensor, kind: str | None = None, index=None, **kw) -> None:
        if name not in self.tensors:
            raise ParityMismatch(f"{self.path.name}: expected tensor {name!r} is missing from case.safetensors")
        self.used.add(name)
        expected = self.tensors[name] if index is None else self.tensors[name][index]
        what = f"{self.path.name}/{name}" + ("" if index is None else f"[{index}]")
        check_close(kind or self.kind, actual, expected, what, **kw)

    def conditions(self, frames: slice | None = None) -> dict:
        kw = {}
        if "labels" in self.tensors:
            kw["labels"] = self.input("labels")
        if "actions" in self.tensors:
            actions = self.input("actions")
            kw["actions"] = actions if frames is None else actions[:, frames]
        return kw

    def finish(self) -> None:
        unchecked = sorted((set(self.listed) | set(self.tensors)) - self.used)
        if unchecked:
            raise ParityMismatch(f"{self.path.name}: tensors neither fed to our code nor compared: {unchecked}")


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


def _load_far(meta: dict, weights: Path) -> FAR:
    cfg = config_from_official(meta["constructor_kwargs"], long=meta["class"].endswith("FAR_Long"))
    model = FAR(cfg).eval()
    load_official_state_dict(model, load_file(str(weights)), source=str(weights))
    assert count_parameters(model) == meta["num_parameters"]
    return model


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
        _record("A_keys", 0.0)


def check_far_forward(case: Path) -> None:
    """B and D (forward): train-mode outputs, eval last frame, and the KV-cache trace."""
    kind = _kind(case) + "_forward"
    c = Case(case, kind)
    model = _load_far(c.meta, case / "model.safetensors")
    latents, timesteps = c.input("latents"), c.input("timesteps")
    with torch.no_grad():
        c.compare("out_train", model(latents, timesteps, **c.conditions()))
        c.compare("out_eval_nocache", model(latents, timesteps, last_frame_only=True, **c.conditions()))
        if "trace_noisy" in c:
            noisy, trace_t = c.input("trace_noisy"), c.input("trace_t")
            num_context, is_cache_step = c.input("trace_num_context"), c.input("trace_is_cache_step")
            cache = MultiLevelKVCache.empty(model.cfg.num_layers)
            b = latents.shape[0]
            for i in range(noisy.shape[0]):
                k = int(num_context[i])
                x = torch.cat([latents[:, :k], noisy[i]], dim=1)
                ts = torch.cat([torch.full((b, k), -1.0), trace_t[i][:, None]], dim=1)
                cond = c.conditions(slice(0, k + 1))
                cached = model(x, ts, cache=cache, cache_step=bool(is_cache_step[i]), **cond)
                c.compare("trace_out_cached", cached, kind + "_kvcache", index=i)
                c.compare("trace_out_nocache", model(x, ts, last_frame_only=True, **cond), kind + "_kvcache", index=i)
    c.finish()


def _codec(case: Path, meta: dict) -> LatentCodec:
    vae = build_dcae(case / meta["vae"]["config"]).eval()
    vae.load_state_dict(load_file(str(case / meta["vae"]["weights"])), strict=True)
    return LatentCodec(vae)


def check_pipeline(case: Path) -> None:
    """C and D (pipeline): full rollouts through the DC-AE, with and without cache, every guidance."""
    kind = _kind(case) + "_pipeline"
    c = Case(case, kind)
    meta = c.meta
    tmeta = json.loads((case / meta["transformer"]["meta"]).read_text())
    model = _load_far(tmeta, case / meta["transformer"]["weights"])
    codec = _codec(case, meta)
    g = meta["generate_kwargs"]
    context = None
    if "context_video" in c:
        context = codec.encode(c.input("context_video"))
        c.compare("context_latents", context)
    for scale in g["guidance_scales"]:
        tag = "g" + f"{float(scale)}".replace(".", "p")
        for use_cache in (True, False):
            suffix = "kvon" if use_cache else "kvoff"
            outs: list[torch.Tensor] = []
            latents = rollout(model, context, g["unroll_length"],
                              SamplerConfig(num_steps=g["num_inference_steps"], guidance_scale=scale,
                                            use_cache=use_cache),
                              noise=c.input("init_noise"), on_call=lambda *a: outs.append(a[-1]),
                              **c.conditions())
            video = codec.decode(latents)
            c.compare(f"latents_{tag}_{suffix}", latents)
            c.compare(f"video_{tag}_{suffix}", video)
            name = f"transformer_out_{tag}_{suffix}"
            if name in c:
                c.compare(name, torch.stack(outs))
            calls = meta.get("observed", {}).get(f"{float(scale)}", {}).get(f"calls_{suffix}")
            if calls is not None:
                assert len(outs) == len(calls), f"{len(outs)} network calls, official made {len(calls)}"
    c.finish()


def check_dcae(case: Path) -> None:
    """E: DC-AE encode and decode."""
    cfg = json.loads((case / "dcae_config.json").read_text())
    vae = build_dcae(cfg).eval()
    vae.load_state_dict(load_file(str(case / "model.safetensors")), strict=True)
    c = Case(case, "E_dcae")
    assert count_parameters(vae) == c.meta["num_parameters"]
    with torch.no_grad():
        c.compare("latents", vae.encode(c.input("images")).latent)
        c.compare("decoded", vae.decode(c.input("latents")).sample)
        c.compare("decoded_random", vae.decode(c.input("latents_random")).sample)
    c.finish()


def check_scheduler(case: Path) -> None:
    """F: training schedule, inference schedules, noising and Euler trajectory, all bit for bit."""
    c = Case(case, "F_scheduler")
    c.compare("train_timesteps", train_timesteps(), exact=True)
    c.compare("train_sigmas", train_sigmas(), exact=True)
    for n in c.meta["set_timesteps_n"]:
        s = inference_schedule(n)
        c.compare(f"timesteps_n{n}", s.timesteps, exact=True)
        c.compare(f"sigmas_n{n}", s.sigmas, exact=True)
    idx = c.input("scale_noise_indices")
    c.compare("scale_noise_timesteps", train_timesteps()[idx], exact=True)
    noisy = add_noise(c.input("scale_noise_sample"), c.input("scale_noise_noise"), train_sigmas()[idx])
    c.compare("scale_noise_output", noisy, exact=True)
    outputs, samples = c.input("step_model_outputs"), c.input("step_samples")
    steps = c.meta.get("step_example_num_inference_steps", outputs.shape[0])
    s = inference_schedule(steps)
    x = samples[0]
    for i in range(steps):
        x = euler_step(x, outputs[i], s.sigmas[i], s.sigmas[i + 1])
        c.compare("step_samples", x, index=i + 1, exact=True)
    c.finish()


def check_metrics(case: Path) -> None:
    """G: FAR's evaluation metrics (mse, psnr, ssim): per frame, and reduced as the official code does."""
    from bench.metrics import far_video_metrics, per_frame_metric

    c = Case(case, "G_metrics")
    tc = c.meta["context_length"]
    sample, gt = c.input("sample_u8").float() / 255.0, c.input("gt_u8").float() / 255.0
    for name in c.meta["result"]:
        if f"per_frame_{name}" in c:
            c.compare(f"per_frame_{name}", per_frame_metric(name, sample, gt, tc), atol_cap=METRIC_ATOL[name])
    result = far_video_metrics(sample, gt, context_length=tc, metrics=tuple(c.meta["result"]))
    for name, value in c.meta["result"].items():
        check_value("G_metrics", result[name], value, f"{case.name}: result {name}", atol_cap=METRIC_ATOL[name])
    c.finish()


def check_lpips(case: Path) -> None:
    """G (LPIPS): FAR's convention ([0, 1] input) with the backbone shipped in the case, per frame and
    reduced (mean over frames, min over trajectories, mean over videos); the standard convention too."""
    from bench.metrics import mean_over_videos, trajectory_reduce, video_values
    from bench.metrics.lpips import build_lpips, lpips_per_frame

    c = Case(case, "G_lpips")
    net = build_lpips(load_file(str(case / "alexnet_features.safetensors")))
    tc = c.meta["context_length"]
    sample, gt = c.input("sample_u8").float() / 255.0, c.input("gt_u8").float() / 255.0
    per_frame = {}
    for convention, name in (("far", "per_frame_lpips_far"), ("standard", "per_frame_lpips_standard")):
        per_frame[convention] = lpips_per_frame(sample[:, :, tc:], gt[:, :, tc:], convention=convention, model=net)
        c.compare(name, per_frame[convention], atol_cap=METRIC_ATOL["lpips"])
    result = mean_over_videos(trajectory_reduce(video_values(per_frame["far"]), "min", "lpips"))
    check_value("G_lpips", result, c.meta["result"]["lpips"], f"{case.name}: result lpips",
                atol_cap=METRIC_ATOL["lpips"])
    c.finish()


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


# ------------------------------------------------------------------------------------- self-tests
# The comparison must reject what a wrong implementation (or an incomplete case) would produce.

@pytest.fixture
def quiet(monkeypatch):
    """Keep the deliberate errors of these tests out of the parity summary."""
    monkeypatch.setitem(globals(), "_record", lambda *args: None)


def _copy_case(name: str, dest: Path, edit=None, edit_meta=None) -> Path:
    """A copy of public case ``name`` whose tensors (and meta.json) ``edit``/``edit_meta`` change."""
    src = PARITY_DIR / name
    if not (src / "case.safetensors").is_file():
        pytest.skip(f"parity case {src} not present")
    case = dest / name
    case.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in ("case.safetensors", "meta.json"):
            (case / f.name).symlink_to(f)
    tensors = load_file(str(src / "case.safetensors"))
    meta = _meta(src)
    if edit:
        edit(tensors)
    if edit_meta:
        edit_meta(meta)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(case / "case.safetensors"))
    (case / "meta.json").write_text(json.dumps(meta))
    return case


def test_rule_is_3e5_absolute_up_to_1_and_relative_above(quiet):
    expected = torch.tensor([-5.16, 0.5, 1e-3, 20.0, float("inf")])
    for delta, ok in [([5e-4, 0, 0, 0, 0], False), ([1.5e-4, 0, 0, 0, 0], True), ([0, 3.1e-5, 0, 0, 0], False),
                      ([0, 2.9e-5, 0, 0, 0], True), ([0, 0, 3.1e-5, 0, 0], False), ([0, 0, 0, 5.9e-4, 0], True),
                      ([0, 0, 0, 6.2e-4, 0], False)]:
        actual = (expected.double() + torch.tensor(delta, dtype=torch.float64)).float()
        if ok:
            check_close("self", actual, expected, "t")
        else:
            with pytest.raises(ParityMismatch, match="exceed"):
                check_close("self", actual, expected, "t")
    nan = expected.clone()
    nan[1] = float("nan")
    with pytest.raises(ParityMismatch):
        check_close("self", nan, expected, "t")
    with pytest.raises(ParityMismatch, match="dtype"):
        check_close("self", expected.double(), expected, "t")
    with pytest.raises(ParityMismatch, match="shape"):
        check_close("self", expected[:4], expected, "t")
    with pytest.raises(ParityMismatch, match="bit-identical"):
        check_close("self", torch.tensor([1, 3]), torch.tensor([1, 2]), "t")
    with pytest.raises(ParityMismatch, match="bit-identical"):
        check_close("self", torch.nextafter(expected, torch.tensor(0.0)), expected, "t", exact=True)
    with pytest.raises(ParityMismatch, match="exceed"):
        check_close("self", torch.tensor([28.0002]), torch.tensor([28.0]), "psnr", atol_cap=METRIC_ATOL["psnr"])


def test_out_train_off_by_5e4_on_a_large_value_is_rejected(tmp_path, quiet):
    """The old tolerance (1e-4 + 1e-4 relative) let this through: 5e-4 on -5.16 is 35x the observed noise."""
    def nudge(t):
        out = t["out_train"]
        i = int(out.abs().argmax())
        assert out.abs().max() > 5  # -5.158 in B_far_action
        out.view(-1)[i] += 5e-4
    case = _copy_case("B_far_action", tmp_path, nudge)
    with pytest.raises(ParityMismatch, match="out_train"):
        check_far_forward(case)


def test_a_listed_tensor_missing_from_the_case_is_rejected(tmp_path, quiet):
    case = _copy_case("B_far_uncond", tmp_path, lambda t: t.pop("trace_out_nocache"))
    with pytest.raises(ParityMismatch, match=r"missing.*trace_out_nocache"):
        check_far_forward(case)
    case = _copy_case("G_metrics", tmp_path / "g", lambda t: t.pop("per_frame_ssim"))
    with pytest.raises(ParityMismatch, match=r"missing.*per_frame_ssim"):
        check_metrics(case)


def test_a_listed_tensor_nobody_checks_is_rejected(tmp_path, quiet):
    def add(t):
        t["per_frame_fvd"] = torch.zeros(2, 2, 2)

    def list_it(m):
        m["tensors"]["per_frame_fvd"] = {"shape": [2, 2, 2], "dtype": "float32", "description": "unknown"}
    case = _copy_case("G_metrics", tmp_path, add, list_it)
    with pytest.raises(ParityMismatch, match=r"neither fed to our code nor compared: \['per_frame_fvd'\]"):
        check_metrics(case)
    case = _copy_case("F_scheduler", tmp_path / "f", lambda t: t.update(timesteps_n7=torch.zeros(7)),
                      lambda m: m["tensors"].update(timesteps_n7={"shape": [7], "dtype": "float32"}))
    with pytest.raises(ParityMismatch, match="timesteps_n7"):
        check_scheduler(case)


def test_listed_shape_must_match_the_file(tmp_path, quiet):
    case = _copy_case("G_metrics", tmp_path, edit_meta=lambda m: m["tensors"]["per_frame_psnr"].update(shape=[2, 2]))
    with pytest.raises(ParityMismatch, match="per_frame_psnr"):
        check_metrics(case)


@pytest.mark.parametrize("name,delta", [("per_frame_ssim", 2e-5), ("per_frame_mse", 2e-5), ("per_frame_psnr", 5e-4)])
def test_per_frame_metrics_are_compared(tmp_path, quiet, name, delta):
    """Case G's per-frame values, not only the reduced ones (a per-frame error the mean may hide)."""
    case = _copy_case("G_metrics", tmp_path, lambda t: t[name].view(-1).__setitem__(1, t[name].view(-1)[1] + delta))
    with pytest.raises(ParityMismatch, match=name):
        check_metrics(case)
    check_metrics(_copy_case("G_metrics", tmp_path / "intact"))  # the copy itself passes


def test_scheduler_is_compared_bit_for_bit(tmp_path, quiet):
    def nudge(t):
        t["sigmas_n4"][1] = torch.nextafter(t["sigmas_n4"][1], torch.tensor(1.0))
    with pytest.raises(ParityMismatch, match=r"sigmas_n4.*bit-identical"):
        check_scheduler(_copy_case("F_scheduler", tmp_path, nudge))

    def nudge_step(t):
        t["step_samples"][2, 0, 0, 0, 0] = torch.nextafter(t["step_samples"][2, 0, 0, 0, 0], torch.tensor(9.0))
    with pytest.raises(ParityMismatch, match=r"step_samples\[2\]"):
        check_scheduler(_copy_case("F_scheduler", tmp_path / "s", nudge_step))
