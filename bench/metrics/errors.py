"""``MetricUnavailable`` and the lookup of metric networks (I3D, AlexNet) in the asset store.

Metric networks are never downloaded by the metric code, and never loaded unverified: they come
from the checksum-pinned asset store (``bench.assets.require``), which hashes the file (once per
file version) and compares it with the pinned sha256 before handing out its path. A missing file,
or one that is not the pinned network (a look-alike with the right interface but other weights),
raises ``MetricUnavailable`` with the reason ("checksum mismatch: ...") and the command that fixes
it, so a run reports the metric as unavailable instead of computing a number with it.

Tests and callers holding their own weights build networks from them explicitly
(``bench.metrics.lpips.build_lpips``, ``bench.metrics.fvd.I3DFeatures(detector=...)``); no path
leads from a file to a network around the check.
"""
from __future__ import annotations

from pathlib import Path


class MetricUnavailable(Exception):
    """A metric cannot be computed here; ``provide`` is the command or file that would fix it."""

    def __init__(self, metric: str, reason: str, provide: str):
        self.metric = metric
        self.reason = reason
        self.provide = provide
        super().__init__(f"{metric} unavailable: {reason}; provide it with: {provide}")


def fetch_command(name: str) -> str:
    return f"python -m bench assets fetch {name}"


def require_asset(metric: str, name: str) -> Path:
    """The verified file of asset ``name`` for ``metric``, or ``MetricUnavailable`` saying why and how
    to fix it: not in the store (fetch it), checksum mismatch (fetch it again with ``--force``)."""
    from bench import assets

    try:
        return assets.require(name)
    except assets.AssetMissing as e:
        path = assets.asset_path(name)
        raise MetricUnavailable(metric, f"asset {name!r} not found at {path}",
                                f"{fetch_command(name)} (or place {assets.get_asset(name).filename} at {path})") from e
    except assets.AssetCorrupt as e:
        raise MetricUnavailable(metric, f"asset {name!r}: {e}", assets.repair_command(name)) from e
    except assets.AssetError as e:  # unverifiable, unknown name, unreadable pins
        raise MetricUnavailable(metric, f"asset {name!r}: {e}", fetch_command(name)) from e
    except OSError as e:  # present but unreadable
        raise MetricUnavailable(metric, f"asset {name!r}: cannot read {assets.asset_path(name)}: {e}",
                                assets.repair_command(name)) from e


__all__ = ["MetricUnavailable", "require_asset", "fetch_command"]
