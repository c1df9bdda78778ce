"""LPIPS, FVD and GreenEarthNet scores: wrappers against direct computations, no downloads.

Metric networks are replaced by stand-ins given explicitly, never through the asset store: a
randomly initialised torchvision AlexNet (``build_lpips(state_dict)``) and a tiny TorchScript
module with the I3D's call signature (``I3DFeatures(detector=...)``). Placed in the store under
the real networks' names, the same stand-ins are refused ("checksum mismatch").
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from bench.metrics import MetricUnavailable
from bench.metrics import errors
from bench.metrics import earthnet as en
from bench.metrics import fvd as fvdm

GEN_FIXTURES = Path(os.environ.get("BENCH_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) \
    / "fixtures" / "datasets" / "greenearthnet"
CUBE = "MJJ21/32ULB_2021-05-01_2021-09-27_1977_2105_1721_1849_30_110_26_106.nc"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty asset store in a temporary FARZOO_HOME."""
    monkeypatch.setenv("FARZOO_HOME", str(tmp_path / "farzoo"))
    (tmp_path / "farzoo" / "assets").mkdir(parents=True)
    return tmp_path / "farzoo" / "assets"


# ----------------------------------------------------------------------------- asset lookup

def test_metric_networks_live_in_the_asset_store(monkeypatch, tmp_path):
    from bench import assets
    monkeypatch.setenv("FARZOO_HOME", str(tmp_path))
    assert assets.asset_path("i3d_torchscript") == tmp_path / "assets" / "i3d_torchscript.pt"
    assert assets.asset_path("alexnet") == tmp_path / "assets" / "alexnet-owt-7be5be79.pth"
    monkeypatch.delenv("FARZOO_HOME")
    assert assets.asset_path("alexnet") == Path("~/.cache/farzoo/assets/alexnet-owt-7be5be79.pth").expanduser()


def test_missing_asset_names_the_fetch_command(store):
    with pytest.raises(MetricUnavailable) as e:
        errors.require_asset("fvd", "i3d_torchscript")
    assert e.value.metric == "fvd" and "i3d_torchscript" in e.value.reason
    assert e.value.provide.startswith("python -m bench assets fetch i3d_torchscript")
    assert str(store / "i3d_torchscript.pt") in e.value.provide


def test_store_errors_become_unavailable(store, monkeypatch):
    from bench import assets

    def unverifiable(name):
        raise assets.AssetUnverified("nothing pins it")
    monkeypatch.setattr(assets, "require", unverifiable)
    with pytest.raises(MetricUnavailable, match="nothing pins it") as e:
        errors.require_asset("lpips", "alexnet")
    assert e.value.metric == "lpips"


# ----------------------------------------------------------------------------- LPIPS

@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory):
    """A random torchvision AlexNet state dict, saved once for the module."""
    from torchvision.models import alexnet
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_lpips(random_alexnet):
    """LPIPS built from explicit (random) test weights, never through the asset store."""
    from bench.metrics.lpips import build_lpips
    return build_lpips(torch.load(random_alexnet, weights_only=True))


def _frames(seed, shape=(2, 3, 3, 64, 64)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    b = (a + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("convention,normalize", [("standard", True), ("far", False)])
def test_lpips_matches_the_lpips_package(random_lpips, random_alexnet, tmp_path, monkeypatch, convention,
                                         normalize):
    import lpips
    from bench.metrics.lpips import lpips_per_frame
    # the reference: the package exactly as users call it, with torchvision's own pretrained
    # loading pointed at the same (random) weights in a private torch hub cache
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").symlink_to(random_alexnet)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's note on lpips' pretrained=True
        ref_net = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    a, b = _frames(0)
    got = lpips_per_frame(a, b, convention=convention, batch_size=4, model=random_lpips)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    with torch.no_grad():
        ref = ref_net(a.reshape(-1, 3, 64, 64), b.reshape(-1, 3, 64, 64), normalize=normalize).reshape(2, 3)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7), (got, ref)
    assert (got > 0).all()


def test_lpips_conventions_differ(random_lpips):
    """FAR's [0, 1] input is not the standard [-1, 1] one: the two must not be confused."""
    from bench.metrics.lpips import lpips_per_frame
    a, b = _frames(3, (4, 3, 32, 32))
    far = lpips_per_frame(a, b, convention="far", model=random_lpips)
    std = lpips_per_frame(a, b, convention="standard", model=random_lpips)
    assert (far - std).abs().max() > 1e-3
    with pytest.raises(ValueError, match="convention"):
        lpips_per_frame(a, b, convention="", model=random_lpips)


def test_lpips_identity_and_batching(random_lpips):
    from bench.metrics.lpips import lpips_per_frame
    a, b = _frames(1, (5, 3, 48, 48))
    assert torch.equal(lpips_per_frame(a, a, "far", model=random_lpips), torch.zeros(5))
    assert torch.allclose(lpips_per_frame(a, b, "far", batch_size=2, model=random_lpips),
                          lpips_per_frame(a, b, "far", batch_size=64, model=random_lpips), atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        lpips_per_frame(a, b[:4], "far", model=random_lpips)
    with pytest.raises(TypeError, match="float"):
        lpips_per_frame((a * 255).to(torch.uint8), (b * 255).to(torch.uint8), "far", model=random_lpips)


def test_lpips_without_alexnet_is_unavailable(store):
    from bench.metrics.lpips import lpips_per_frame
    a, b = _frames(2, (1, 3, 32, 32))
    with pytest.raises(MetricUnavailable) as e:
        lpips_per_frame(a, b, "far")
    assert e.value.metric == "lpips" and "alexnet" in e.value.reason
    assert "python -m bench assets fetch alexnet" in e.value.provide


# ----------------------------------------------------------------------------- Fréchet distance

def _gaussian(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return rng.standard_normal(d), a @ a.T / d + (0 if rank else 0.1 * np.eye(d))


def _scipy_frechet(mu1, s1, mu2, s2):
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_matches_scipy_sqrtm_when_well_conditioned(seed):
    rng = np.random.default_rng(seed)
    mu1, s1 = _gaussian(rng, 24)
    mu2, s2 = _gaussian(rng, 24)
    ref = _scipy_frechet(mu1, s1, mu2, s2)
    assert fvdm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    assert fvdm.frechet_distance_eig is fvdm.frechet_distance  # the old name, the same implementation
    assert fvdm.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_matches_scipy_sqrtm_on_many_i3d_sized_features():
    """More videos than the 400 feature dimensions: FAR's sqrtm formula is well defined; same number."""
    rng = np.random.default_rng(7)
    x1, x2 = _i3d_like(rng, 1000, 0.0), _i3d_like(rng, 1000, 0.3)
    m1, s1, m2, s2 = x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False)
    assert fvdm.frechet_distance(m1, s1, m2, s2) == pytest.approx(_scipy_frechet(m1, s1, m2, s2), rel=1e-9)


def test_frechet_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    v1, v2 = rng.uniform(0.1, 2, 10), rng.uniform(0.1, 2, 10)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert fvdm.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-12)


def _i3d_like(rng, n, shift):
    """n feature vectors of 400 I3D logits: per-dimension scales from 9 down to 0.15, as real ones vary."""
    return rng.standard_normal((n, 400)) * np.linspace(9, 0.15, 400) + shift


def _low_rank_reference(x1, x2):
    """The Fréchet distance of two feature sets from their small (n1 x n2) cross product, in float64.

    With centred data A (n1 x d), B (n2 x d), S1 = A'A / (n1 - 1), S2 = B'B / (n2 - 1), the
    non-zero eigenvalues of S1 S2 are the squared singular values of A B' / sqrt((n1 - 1)(n2 - 1)),
    so tr sqrtm(S1 S2) is that matrix's nuclear norm: no d x d square root at all.
    """
    a, b = x1 - x1.mean(0), x2 - x2.mean(0)
    cross = a @ b.T / np.sqrt((len(x1) - 1) * (len(x2) - 1))
    tr_sqrt = np.linalg.svd(cross, compute_uv=False).sum()
    tr1 = (a * a).sum() / (len(x1) - 1)
    tr2 = (b * b).sum() / (len(x2) - 1)
    diff = x1.mean(0) - x2.mean(0)
    return float(diff @ diff + tr1 + tr2 - 2 * tr_sqrt)


@pytest.mark.parametrize("n", [2, 4, 16, 64])
def test_frechet_with_fewer_videos_than_feature_dimensions(n):
    """Quick-scale FVD uses 4-16 videos: rank-deficient covariances. FAR's sqrtm(S1 S2) returned finite
    garbage there with SciPy 1.11 (-5.4e16 at n = 2, -9.4e8 at n = 64 on these features; true values
    1.3e4-3.4e4). The reference needs no SciPy; the implementation neither (numpy.linalg only)."""
    rng = np.random.default_rng(n)
    x1, x2 = _i3d_like(rng, n, 0.0), _i3d_like(rng, n, 0.5)
    ref = _low_rank_reference(x1, x2)
    got = fvdm.fvd(x2, x1)  # through the streaming statistics, as the harness computes it
    assert got == pytest.approx(ref, rel=1e-10)
    assert fvdm.frechet_distance(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0),
                                 np.cov(x2, rowvar=False)) == pytest.approx(ref, rel=1e-10)
    same = fvdm.fvd(x1, x1)
    assert 0.0 <= same <= 1e-9 * ref  # >= 0: round-off never makes it negative


def test_frechet_with_singular_covariances():
    """Fewer samples than dimensions, singular covariances given directly."""
    rng = np.random.default_rng(4)
    mu1, s1 = _gaussian(rng, 40, rank=6)
    mu2, s2 = _gaussian(rng, 40, rank=6)
    got = fvdm.frechet_distance(mu1, s1, mu2, s2)
    # independent: tr sqrtm(S1 S2) from the eigenvalues of the product (real, >= 0 in exact arithmetic)
    ev = np.linalg.eigvals(s1 @ s2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum()
    assert np.isfinite(got) and got == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="mismatched"):
        fvdm.frechet_distance(mu1, s1, mu2[:5], s2)
    with pytest.raises(ValueError, match="not a covariance"):
        fvdm.frechet_distance(mu1, -s1, mu2, s2)


def test_non_finite_features_raise_at_once():
    """A NaN feature used to hang for minutes inside sqrtm; now it is refused where it enters."""
    import time
    rng = np.random.default_rng(6)
    x = _i3d_like(rng, 8, 0.0)
    bad = x.copy()
    bad[3, 17] = np.nan
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"not finite.*rows \[3\]"):
        fvdm.FeatureStats().update(bad)
    with pytest.raises(ValueError, match="not finite"):
        fvdm.FeatureStats().update(torch.from_numpy(np.where(np.arange(400) == 5, np.inf, x)))
    mu, cov = x.mean(0), np.cov(x, rowvar=False)
    for args in ((mu, np.where(np.eye(400) > 0, np.nan, cov), mu, cov), (mu, cov, mu * np.inf, cov)):
        with pytest.raises(ValueError, match="non-finite"):
            fvdm.frechet_distance(*args)
    assert time.monotonic() - t0 < 5


def test_streaming_stats_and_fvd_match_far_formula():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((300, 16)) * 3 + 1
    fake = rng.standard_normal((200, 16)) @ rng.standard_normal((16, 16)) * 0.5
    acc = fvdm.FeatureStats()
    for chunk in np.array_split(real, 7):
        acc.update(torch.from_numpy(chunk))  # tensors or arrays
    assert acc.n == 300
    np.testing.assert_allclose(acc.mean, real.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.cov(), np.cov(real, rowvar=False), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(acc.cov(ddof=0), np.cov(real, rowvar=False, bias=True), rtol=1e-10, atol=1e-12)
    halves = fvdm.FeatureStats.of(real[:100]).merge(fvdm.FeatureStats.of(real[100:]))
    np.testing.assert_allclose(halves.cov(), acc.cov(), rtol=1e-10, atol=1e-12)
    # FAR's compute_fvd(feats_fake, feats_real): np.cov, sqrtm, real part
    mg, sg = fake.mean(0), np.cov(fake, rowvar=False)
    mr, sr = real.mean(0), np.cov(real, rowvar=False)
    far = _scipy_frechet(mg, sg, mr, sr)
    assert fvdm.fvd(real, fake) == pytest.approx(far, rel=1e-9)


# ----------------------------------------------------------------------------- I3D plumbing

class FakeI3D(torch.nn.Module):
    """The I3D TorchScript's call signature; its 400 outputs describe the input it was given."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        b = x.shape[0]
        diag = torch.stack([
            x.amin(dim=(1, 2, 3, 4)), x.amax(dim=(1, 2, 3, 4)),
            torch.full((b,), float(x.shape[1])), torch.full((b,), float(x.shape[2])),
            torch.full((b,), float(x.shape[3])), torch.full((b,), float(x.shape[4])),
            torch.full((b,), float(rescale)), torch.full((b,), float(resize)),
            torch.full((b,), float(return_features)),
            x[:, :, 0].mean(dim=(1, 2, 3)), x[:, :, -1].mean(dim=(1, 2, 3)),
        ], dim=1)
        per_channel = x.mean(dim=(2, 3, 4))  # (B, 3)
        per_frame = x.mean(dim=(1, 3, 4))  # (B, T)
        feats = torch.cat([diag, per_channel, per_frame], dim=1)
        return F.pad(feats, (0, 400 - feats.shape[1]))


@pytest.fixture(scope="module")
def fake_i3d():
    """The stand-in I3D as TorchScript, like the real network, given explicitly as the detector."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        return torch.jit.script(FakeI3D())


def _save_lookalike_i3d(store: Path) -> Path:
    path = store / "i3d_torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    return path


def _videos(seed, v=5, t=10, h=32, w=40):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(v, t, 3, h, w, generator=g)


def test_i3d_input_convention_is_fars(fake_i3d):
    net = fvdm.I3DFeatures(batch_size=4, detector=fake_i3d)
    v = torch.zeros(2, 12, 3, 16, 16)
    v[:, :, 0] = 0.0
    v[:, :, 1] = 0.5
    v[:, :, 2] = 1.0
    v[1, -1] = 1.0  # the last frame of video 1 is white
    f = net(v)
    assert f.shape == (2, 400) and f.dtype == torch.float64
    lo, hi, c, t, h, w, rescale, resize, ret_feats = f[0, :9].tolist()
    assert (lo, hi) == (-1.0, 1.0)  # [0, 1] -> [-1, 1]
    assert (c, t, h, w) == (3, 12, 224, 224)  # (B, 3, T, H, W), resized by the network to 224
    assert (rescale, resize, ret_feats) == (0.0, 1.0, 1.0)  # FAR's rescale=False, resize=True
    torch.testing.assert_close(f[0, 11:14], torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    assert f[1, 10] == 1.0 and f[1, 9] == pytest.approx(0.0, abs=1e-6)  # time axis kept in order
    assert fvdm.I3D_KWARGS == {"rescale": False, "resize": True, "return_features": True}


def test_i3d_batching_and_fvd_videos(fake_i3d):
    real, fake = _videos(0, v=7), _videos(1, v=7) * 0.8
    f_small = fvdm.I3DFeatures(batch_size=3, detector=fake_i3d)(real)
    f_big = fvdm.I3DFeatures(batch_size=32, detector=fake_i3d)(real)
    torch.testing.assert_close(f_small, f_big, rtol=1e-6, atol=1e-6)
    got = fvdm.fvd_videos(real, fake, detector=fake_i3d)
    ref = fvdm.fvd(f_big.numpy(), fvdm.I3DFeatures(detector=fake_i3d)(fake).numpy())
    assert got == pytest.approx(ref, rel=1e-9) and got > 0
    assert abs(fvdm.fvd_videos(real, real, detector=fake_i3d)) < 1e-6
    stats = fvdm.I3DFeatures(batch_size=2, detector=fake_i3d).stats(real[:3])
    fvdm.I3DFeatures(batch_size=2, detector=fake_i3d).stats(real[3:], into=stats)
    np.testing.assert_allclose(stats.mean, f_big.numpy().mean(0), atol=1e-12)


def test_missing_i3d_is_unavailable(store):
    with pytest.raises(MetricUnavailable) as e:
        fvdm.fvd_videos(_videos(0, v=2), _videos(1, v=2))
    assert e.value.metric == "fvd" and "i3d_torchscript" in e.value.reason
    assert e.value.provide.startswith("python -m bench assets fetch i3d_torchscript")


def test_lookalike_i3d_in_the_store_is_unavailable(store):
    """A network with the I3D's interface but other weights under the I3D's name gives no FVD (it gave
    one before: the file was loaded because it existed)."""
    path = _save_lookalike_i3d(store)
    for make in (lambda: fvdm.I3DFeatures(), lambda: fvdm.fvd_videos(_videos(0, v=3), _videos(1, v=3))):
        with pytest.raises(MetricUnavailable) as e:
            make()
        assert e.value.metric == "fvd" and "checksum mismatch" in e.value.reason and str(path) in e.value.reason
        assert e.value.provide == "python -m bench assets fetch i3d_torchscript --force"


def test_i3d_has_no_unverified_file_path():
    """Files reach the I3D only through the verified store; the old ``path=`` bypass is gone."""
    import inspect
    assert "path" not in inspect.signature(fvdm.I3DFeatures).parameters
    with pytest.raises(TypeError):
        fvdm.I3DFeatures(path="i3d_torchscript.pt")


def test_random_alexnet_in_the_store_is_unavailable(store, random_alexnet):
    """A random AlexNet under torchvision's file name gives no LPIPS (it gave values before)."""
    from bench.metrics.lpips import lpips_per_frame
    path = store / "alexnet-owt-7be5be79.pth"
    path.symlink_to(random_alexnet)  # a 244 MB look-alike, not copied
    a, b = _frames(2, (1, 3, 32, 32))
    with pytest.raises(MetricUnavailable) as e:
        lpips_per_frame(a, b, "far")
    assert e.value.metric == "lpips" and "checksum mismatch" in e.value.reason
    assert e.value.provide == "python -m bench assets fetch alexnet --force"


def test_score_store_reports_lookalike_networks_as_unavailable(store, random_alexnet, tmp_path):
    """End to end: with look-alike networks in the store, the record holds "unavailable", not a number."""
    from bench.evaluate import sample_to_store, score_store
    from bench.models.dummy import RepeatLastFrame
    from bench.tasks import Metric, Part, QuickScale, Task
    _save_lookalike_i3d(store)
    (store / "alexnet-owt-7be5be79.pth").symlink_to(random_alexnet)
    part = Part("A", 2, 10, "none", (Metric("psnr", "best"), Metric("lpips", "best", convention="far"),
                                     Metric("fvd", "mean", include_context=True, context="model")))
    task = Task(name="tiny_fvd", version=1, dataset="dmlab", split="validation", selection="all", num_videos=3,
                resolution=32, num_frames=12, frame_stride=1, parts=(part,), trajectories=1, seeds=(0,),
                quick=QuickScale(num_videos=3))
    g = torch.Generator().manual_seed(0)
    data = [{"video": torch.rand(12, 3, 32, 32, generator=g), "id": f"v{i}"} for i in range(3)]
    sample_to_store(RepeatLastFrame(), task, data, tmp_path / "samples")
    logs = []
    scores = score_store(task, data, tmp_path / "samples", log=logs.append)
    assert isinstance(scores["psnr"]["mean"], float)
    for name, asset in (("fvd", "i3d_torchscript"), ("lpips", "alexnet")):
        assert "mean" not in scores[name], scores[name]
        assert "checksum mismatch" in scores[name]["unavailable"]
        assert scores[name]["provide"] == f"python -m bench assets fetch {asset} --force"
    assert any("checksum mismatch" in line for line in logs)


def test_fvd_clips_protocol_knobs():
    v = torch.rand(3, 16, 3, 8, 8)
    assert fvdm.fvd_clips(v, include_context=True, context_frames=4, min_frames=10) is v
    assert torch.equal(fvdm.fvd_clips(v, include_context=False, context_frames=4, min_frames=10), v[:, 4:])
    with pytest.raises(ValueError, match="at least 10 frames"):
        fvdm.fvd_clips(v, include_context=False, context_frames=8, min_frames=10)
    with pytest.raises(ValueError, match="at least 2 frames"):
        fvdm.fvd_clips(v[:, :1], include_context=True, context_frames=0, min_frames=0)


# ----------------------------------------------------------------------------- GreenEarthNet

@pytest.fixture(scope="module")
def cube():
    xr = pytest.importorskip("xarray")
    path = GEN_FIXTURES / "ood-t_chopped" / CUBE
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    targ = pred = None
    for engine in ("h5netcdf", "netcdf4"):  # whichever this environment can open
        try:
            targ = xr.open_dataset(path, engine=engine)
            pred = xr.open_dataset(GEN_FIXTURES / "preds" / "ood-t_chopped" / CUBE, engine=engine)
            break
        except (ImportError, ValueError):
            continue
    if targ is None:
        pytest.skip("neither h5netcdf (with h5py) nor netCDF4 can open NetCDF4 files here")
    yield targ, pred
    targ.close()
    pred.close()


def _official_pixel_frame(targ, pred_da):
    """The official per-cube definition written out with xarray/pandas (float32, daily axis)."""
    import xarray as xr
    mask_full = (targ.s2_dlmask < 1) & targ.s2_SCL.isin([1, 2, 4, 5, 6, 7])
    mask = mask_full.sel(time=pred_da.time)
    t_full = ((targ.s2_B8A - targ.s2_B04) / (targ.s2_B8A + targ.s2_B04 + 1e-8)).where(mask_full == 1).clip(-1, 1)
    t = t_full.sel(time=pred_da.time)
    p = pred_da.clip(-1, 1).fillna(0.5)
    m = {"nnse": 1 / (2 - (1 - ((t - p) ** 2).sum("time") / ((t - t.mean("time")) ** 2).sum("time"))),
         "n_obs_full": (mask_full == 1).sum("time"), "n_obs": (mask == 1).sum("time"),
         "sigma_targ": t.std("time"), "sigma_pred": p.where(mask == 1).std("time"),
         "bias": t.mean("time") - p.where(mask == 1).mean("time"),
         "min_ndvi_targ": t_full.min("time"), "rmse": (((t - p) ** 2).mean("time")) ** 0.5,
         "r": xr.corr(t, p, dim="time"), "landcover": targ.esawc_lc}
    for i in (0, 5, 10, 15):
        m[f"rmse_{i}_{i + 5}"] = (((t - p) ** 2).isel(time=slice(i, i + 5)).mean("time")) ** 0.5
    df = xr.Dataset(m).to_dataframe().drop(columns=["sentinel:product_id", "longitude_eobs", "latitude_eobs"],
                                           errors="ignore")
    return df[(df.landcover < 41) & (df.min_ndvi_targ > 0.0) & (df.n_obs >= 10)
              & ((df.n_obs_full - df.n_obs) >= 3) & (df.sigma_targ > 0.1)]


def _zero_r_where_constant(df):
    """Our one deliberate difference: r = 0 (not float32 noise or NaN) for a constant prediction."""
    return df.assign(r=df.r.where(df.sigma_pred > 1e-6, 0.0))


def _official_summary(df, ref=None):
    """``summarize_scores`` written out with pandas; ``df``/``ref`` have columns lat, lon, id, landcover, ..."""
    def g(col):
        return df.assign(v=col).groupby(["id", "landcover"])["v"].mean().groupby("landcover").mean()
    out = {"nse": 2 - 1 / g(df.nnse).mean(), "rmse": g(df.rmse).mean(), "r2": g(df.r ** 2).mean(),
           "biasabs": g(df.bias.abs()).mean()}
    for k in ("rmse_0_5", "rmse_5_10", "rmse_10_15", "rmse_15_20"):
        out[k] = g(df[k]).mean()
    for lc, name in en.LANDCOVER_NAMES.items():
        if lc in set(df.landcover):
            out[f"nse_{name}"] = 2 - 1 / g(df.nnse).loc[lc]
            out[f"r2_{name}"] = g(df.r ** 2).loc[lc]
    if ref is not None:
        key = ["lon", "lat", "id", "landcover"]
        a, b = df.set_index(key), ref.set_index(key)
        gains = {"rmse": b.rmse - a.rmse, "nnse": 1 / b.nnse - 1 / a.nnse,
                 "R2": a.r ** 2 - b.r ** 2, "biasabs": b.bias.abs() - a.bias.abs()}
        thr = {"rmse": 0.01, "nnse": 0.05, "R2": 0.05, "biasabs": 0.01}
        per_group = {k: v.groupby(["id", "landcover"]).mean() for k, v in gains.items()}
        out["outperformance"] = (sum((per_group[k] > thr[k]).astype(float) for k in gains) > 2).mean()
        for k in gains:
            out[f"gain_{k}_mean"] = per_group[k].groupby("landcover").mean().mean()
    return out


def _inputs(targ):
    c = en.cube_targets(targ)
    return c["ndvi"], c["valid"], c["landcover"]


def test_cube_targets_follow_the_official_reading(cube):
    targ, pred = cube
    c = en.cube_targets(targ)
    assert c["ndvi"].shape == (30, 16, 16) and c["valid"].dtype == bool
    assert np.array_equal(c["time"][10:], pred.time.values)  # prediction times = time[4::5][10:30]
    assert not c["valid"][17].any()  # the missing acquisition (5-daily step 17)


def test_fixture_scores_match_official_definition_and_hand_computation(cube):
    targ, pred = cube
    ndvi, valid, lc = _inputs(targ)
    p = pred.ndvi_pred.values
    s = en.pixel_scores(p, ndvi, valid, lc)
    assert s.hq.sum() == 175  # the fixture README: about 175 of 256 pixels pass the filter
    # a few pixels by hand, straight from the bands
    b8a, b04 = targ.s2_B8A.values[4::5].astype(np.float64), targ.s2_B04.values[4::5].astype(np.float64)
    dl, scl = targ.s2_dlmask.values[4::5], targ.s2_SCL.values[4::5]
    for y, x in [tuple(ix) for ix in np.argwhere(s.hq)[[0, 50, 120]]] + [(0, 0)]:
        ok = (dl[:, y, x] < 1) & np.isin(scl[:, y, x], [1, 2, 4, 5, 6, 7])
        nd = np.clip((b8a[:, y, x] - b04[:, y, x]) / (b8a[:, y, x] + b04[:, y, x] + 1e-8), -1, 1)
        tt, pp, okt = nd[10:][ok[10:]], p[:, y, x][ok[10:]], ok[10:]
        nse = 1 - np.sum((tt - pp) ** 2) / np.sum((tt - tt.mean()) ** 2)
        assert s.nnse[y, x] == pytest.approx(1 / (2 - nse), rel=1e-6)
        assert s.rmse[y, x] == pytest.approx(np.sqrt(np.mean((tt - pp) ** 2)), rel=1e-6)
        assert s.bias[y, x] == pytest.approx(tt.mean() - pp.mean(), abs=1e-7)
        assert s.n_obs[y, x] == okt.sum() and s.n_obs_full[y, x] == ok.sum()
        assert s.sigma_targ[y, x] == pytest.approx(tt.std(), rel=1e-6)
        assert s.min_ndvi_targ[y, x] == pytest.approx(nd[ok].min(), rel=1e-6)
    # the whole summary against the official definition (float32 xarray + pandas)
    official = _official_pixel_frame(targ, pred.ndvi_pred).assign(id="cube").reset_index()
    assert len(official) == 175
    ours = en.greenearthnet_scores(p[None], ndvi[None], valid[None], lc[None], cube_ids=["cube"])
    ref = _official_summary(official)
    for k, v in ref.items():
        if k.startswith("r2"):  # constant prediction: official r is float32 noise, ours exactly 0
            assert abs(v) < 1e-9 and ours[k] == 0.0
        else:
            assert ours[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    assert _official_summary(_zero_r_where_constant(official))["r2"] == 0.0
    assert np.isnan(ours["nse_crop"])  # no crop pixel passes the filter in this cube
    assert ours["n_pixels"] == 175


def test_outperformance_over_climatology_matches_official(cube):
    targ, pred = cube
    ndvi, valid, lc = _inputs(targ)
    clim = pred.ndvi_pred.values
    rng = np.random.default_rng(0)
    t = np.where(valid, ndvi, np.nan)[10:]
    filled = np.where(np.isfinite(t), t, np.nanmean(t, 0))
    noise = np.linspace(0.01, 0.4, 16)[None, None, :]  # the model gets worse from left to right
    model = (filled + noise * rng.standard_normal(t.shape)).astype(np.float32)
    model[3, 2, 2] = np.nan  # filled with 0.5 as the official code does
    ours = en.greenearthnet_scores(model[None], ndvi[None], valid[None], lc[None], reference=clim[None],
                                   cube_ids=["cube"])
    da = pred.ndvi_pred.copy(data=model)
    df = _official_pixel_frame(targ, da).assign(id="cube").reset_index()
    df_ref = _official_pixel_frame(targ, pred.ndvi_pred).assign(id="cube").reset_index()
    # the fixture's climatology is constant in time: its r is float32 noise or NaN officially, 0 here
    ref = _official_summary(df, _zero_r_where_constant(df_ref))
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    official_as_is = _official_summary(df, df_ref)
    assert ours["outperformance"] == official_as_is["outperformance"]
    assert 0 < ours["outperformance"] <= 1 and ours["r2"] > 0.3


def test_all_masked_cube_gives_nan_scores_and_a_clear_error():
    rng = np.random.default_rng(1)
    target = rng.uniform(0.2, 0.8, (30, 4, 4))
    valid = np.zeros((30, 4, 4), bool)
    lc = np.full((4, 4), 30.0)
    s = en.pixel_scores(rng.uniform(0, 1, (20, 4, 4)), target, valid, lc)
    for a in (s.nnse, s.rmse, s.r, s.bias, s.min_ndvi_targ):
        assert np.isnan(a).all()
    assert not s.hq.any() and (s.n_obs == 0).all()
    with pytest.raises(ValueError, match="no high-quality vegetation pixels"):
        en.greenearthnet_scores(rng.uniform(0, 1, (1, 20, 4, 4)), target[None], valid[None], lc[None])
    scorer = en.GreenEarthNetScorer()
    scorer.add("a", rng.uniform(0, 1, (20, 4, 4)), target, valid, lc)
    with pytest.raises(ValueError, match="reference"):
        scorer.add("b", rng.uniform(0, 1, (20, 4, 4)), target, valid, lc, reference=target[10:])
    with pytest.raises(ValueError, match="already"):
        scorer.add("a", rng.uniform(0, 1, (20, 4, 4)), target, valid, lc)
    with pytest.raises(ValueError, match="cover the 20 steps"):
        en.pixel_scores(np.zeros((19, 4, 4)), target, valid, lc)


def test_ndvi_psnr():
    rng = np.random.default_rng(2)
    t = rng.uniform(-0.2, 0.9, (3, 8, 8))
    p = t + 0.05 * rng.standard_normal(t.shape)
    valid = rng.uniform(size=t.shape) > 0.3
    valid[2] = False
    got = en.ndvi_psnr(p, t, valid)
    for i in range(2):
        mse = np.mean((p[i][valid[i]] - t[i][valid[i]]) ** 2)
        assert got[i] == pytest.approx(10 * np.log10(4 / mse), rel=1e-12)
    assert np.isnan(got[2])
    assert np.isinf(en.ndvi_psnr(t, t)).all()
    assert en.video_ndvi_psnr(p, t, valid) == pytest.approx(got[:2].mean(), rel=1e-12)
