"""Pixel metrics and reductions against scikit-image and hand-computed values."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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
