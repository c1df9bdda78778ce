"""Pixel metrics and reductions against scikit-image and hand-computed values."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import SHARED

from bench.metrics import far_video_metrics, mse, psnr, ssim, trajectory_reduce, over_seeds


def _pair(seed=0, shape=(3, 40, 48)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    b = (a + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_mse_match_skimage(seed):
    a, b = _pair(seed)
    ref = peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)
    assert abs(psnr(b, a).item() - ref) < 1e-4
    assert abs(mse(b, a).item() - np.mean((a.numpy() - b.numpy()) ** 2)) < 1e-7


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_cropped_matches_skimage(seed):
    a, b = _pair(seed)
    ref = structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), channel_axis=2,
                                data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    # scikit-image filters with scipy's symmetric padding, torch's reflect differs only at the
    # border, which crop_border removes
    assert abs(ssim(b, a, crop_border=True).item() - ref) < 1e-3


def test_ssim_identity_and_batch_shape():
    a, _ = _pair(0, (2, 5, 3, 32, 32))
    assert torch.allclose(ssim(a, a), torch.ones(2, 5), atol=1e-5)
    assert psnr(a, a).isinf().all()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shape"):
        mse(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))


def test_trajectory_reductions():
    v = torch.tensor([[1.0, 3.0, 2.0]])
    assert trajectory_reduce(v, "best", "psnr").item() == 3.0
    assert trajectory_reduce(v, "best", "lpips").item() == 1.0
    assert trajectory_reduce(v, "max", "mse").item() == 3.0
    assert trajectory_reduce(v, "mean", "mse").item() == 2.0
    with pytest.raises(ValueError):
        trajectory_reduce(v, "median", "psnr")


def test_far_reduction_is_max_over_trajectories_for_every_metric():
    gt = torch.rand(2, 1, 3, 3, 16, 16).expand(2, 2, 3, 3, 16, 16).clone()
    noise = torch.randn_like(gt) * torch.tensor([0.02, 0.2]).view(1, 2, 1, 1, 1, 1)
    sample = (gt + noise).clamp(0, 1)
    r = far_video_metrics(sample, gt, context_length=1)
    pf = ((sample - gt) ** 2)[:, :, 1:].mean(dim=(-3, -2, -1))
    assert abs(r["mse"] - pf.mean(-1).max(-1).values.mean().item()) < 1e-7  # worst trajectory
    assert r["psnr"] > 25  # best trajectory (the 0.02 one)


def test_over_seeds_spread():
    s = over_seeds([1.0, 3.0])
    assert s.mean == 2.0 and abs(s.std - 2 ** 0.5) < 1e-12 and s.n == 2
    assert over_seeds([5.0]).std == 0.0


# ----------------------------------------------------------------------------- input checks

def test_integer_frames_are_refused_by_every_metric():
    """uint8 frames read as values in [0, 255] gave PSNR -21 dB instead of 27 (and wrong SSIM, LPIPS, FVD)."""
    from bench.metrics import per_frame_metric
    from bench.metrics.fvd import I3DFeatures, fvd_videos
    from bench.metrics.lpips import lpips_per_frame
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 2, 3, 3, 32, 32, generator=g)
    sample = (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    s8, g8 = (sample * 255).round().to(torch.uint8), (gt * 255).round().to(torch.uint8)
    right = far_video_metrics(s8.float() / 255, g8.float() / 255, context_length=1)["psnr"]
    assert 20 < right < 40
    calls = {
        "mse": lambda: mse(s8, g8), "psnr": lambda: psnr(s8, g8), "ssim": lambda: ssim(s8, g8),
        "per_frame_metric": lambda: per_frame_metric("psnr", s8, g8, 1),
        "far_video_metrics": lambda: far_video_metrics(s8, g8, context_length=1),
        "lpips": lambda: lpips_per_frame(s8[0, 0], g8[0, 0], convention="far"),
        "fvd": lambda: fvd_videos(g8[0], s8[0]),
        "i3d": lambda: I3DFeatures(detector=torch.nn.Identity())(s8[0]),
        "mixed": lambda: psnr(s8.float() / 255, g8),
        "int64": lambda: mse(s8.long(), g8.long()),
        "bool": lambda: mse(s8 > 128, g8 > 128),
    }
    for what, call in calls.items():
        with pytest.raises(TypeError, match=r"float.*\[0, 1\].*x\.float\(\) / 255") as e:
            call()
        assert "uint8" in str(e.value) or "int64" in str(e.value) or "bool" in str(e.value), what
    with pytest.raises(TypeError, match="torch.Tensor"):
        mse(np.zeros((3, 8, 8), np.float32), torch.zeros(3, 8, 8))


# ----------------------------------------------------------------------------- SSIM as torchmetrics

DMLAB = SHARED / "fixtures" / "datasets" / "dmlab" / "test" / "0" / "5.npz"
# torchmetrics 1.6.1 structural_similarity_index_measure(x, y, data_range=1.0) on the real DMLab fixture
# (frames / 255): SSIM(frame i, frame i + 1) for the pairs where float32 rounding makes local variances
# negative in flat regions, and SSIM(frame, itself), which is not 1 there. Before variances were clamped at
# 0 as torchmetrics does, these came out up to 1.3e-4 higher (exactly 1.0 for a frame with itself).
TORCHMETRICS_NEXT_FRAME = {135: 0.7281241416931152, 136: 0.5222029089927673, 137: 0.40842655301094055,
                           244: 0.36507323384284973, 252: 0.3884773254394531, 272: 0.36651697754859924}
TORCHMETRICS_SELF = {0: 0.9999651312828064, 50: 0.9999671578407288, 150: 0.9999604225158691}


def _dmlab_frames() -> torch.Tensor:
    if not DMLAB.exists():
        pytest.skip(f"fixture {DMLAB} not present")
    return torch.from_numpy(np.load(DMLAB)["video"]).permute(0, 3, 1, 2).float() / 255.0


def test_ssim_clamps_negative_variances_as_torchmetrics():
    v = _dmlab_frames()
    for i, ref in TORCHMETRICS_NEXT_FRAME.items():
        assert ssim(v[i], v[i + 1]).item() == pytest.approx(ref, abs=1e-6), i
    for i, ref in TORCHMETRICS_SELF.items():
        assert ssim(v[i], v[i]).item() == pytest.approx(ref, abs=1e-6), i


def test_ssim_matches_torchmetrics_per_frame():
    """The independent reference itself (dev dependency torchmetrics==1.6.1, what FAR's evaluation ran)."""
    tm = pytest.importorskip("torchmetrics.functional.image")
    v = _dmlab_frames()
    a, b = v[:-1], v[1:]
    ref = torch.stack([tm.structural_similarity_index_measure(a[i:i + 1], b[i:i + 1], data_range=1.0)
                       for i in range(a.shape[0])])
    assert (ssim(a, b) - ref).abs().max().item() <= 1e-6
    x, y = _pair(3, (4, 3, 40, 48))
    ref = torch.stack([tm.structural_similarity_index_measure(x[i:i + 1], y[i:i + 1], data_range=1.0)
                       for i in range(4)])
    assert (ssim(x, y) - ref).abs().max().item() <= 1e-6
