"""Scoring streams: its peak memory does not grow with the number of samples (memory, not time).

Two synthetic stores (16 and 128 samples of 48 px clips) are scored by ``bench score``'s path with
PSNR, SSIM, MSE and FVD (a stand-in feature network from explicit weights), each in a fresh process
(``bench.profile_scoring``). Stacking the larger store would hold ~100 MiB more in float32 alone;
streaming must stay within a quarter of that.
"""

from bench.profile_scoring import measure, stacked_bytes


def test_scoring_peak_memory_does_not_grow_with_the_store(tmp_path):
    small, large, res = 16, 128, 48
    out = measure([small, large], res=res, metrics="fvd", workdir=tmp_path, log=lambda _: None)
    runs = out["runs"]["streaming"]
    grew = runs[large]["peak_rss_mib"] - runs[small]["peak_rss_mib"]
    stacking = (stacked_bytes(large, res) - stacked_bytes(small, res)) / 2 ** 20
    assert stacking > 90
    assert grew < 0.25 * stacking, (runs, stacking)
    assert runs[large]["psnr"] > 0 and runs[small]["psnr"] > 0
