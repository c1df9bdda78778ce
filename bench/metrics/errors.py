"""``MetricUnavailable`` and the lookup of metric networks (I3D, AlexNet) in the asset store.

Metric networks are never downloaded by the metric code. They are looked up by asset name
through ``bench.assets.asset_path`` (the checksum-pinned store); while that module does not
exist, ``fallback_asset_path`` gives ``$FARZOO_HOME/assets/<filename>`` (default
``~/.cache/farzoo``). A missing (or rejected) file raises ``MetricUnavailable`` saying how to
provide it, so a run can report the metric as unavailable instead of crashing.
"""
from __future__ import annotations

import os
from pathlib import Path

# asset name -> file name, as the upstream projects publish them
ASSET_FILES = {
    # StyleGAN-V's TorchScript I3D (Kinetics-400), used by FAR's FVD
    "i3d_torchscript": "i3d_torchscript.pt",
    # torchvision's ImageNet AlexNet (IMAGENET1K_V1), the LPIPS v0.1 trunk
    "alexnet": "alexnet-owt-7be5be79.pth",
}


class MetricUnavailable(Exception):
    """A metric cannot be computed here; ``provide`` is the command or file that would fix it."""

    def __init__(self, metric: str, reason: str, provide: str):
        self.metric = metric
        self.reason = reason
        self.provide = provide
        super().__init__(f"{metric} unavailable: {reason}; provide it with: {provide}")


def fetch_command(name: str) -> str:
    return f"python -m bench assets fetch {name}"


def fallback_asset_path(name: str) -> Path:
    """Where an asset lives when ``bench.assets`` is absent: ``$FARZOO_HOME/assets/<file>``."""
    if name not in ASSET_FILES:
        raise KeyError(f"unknown metric asset {name!r}; known: {sorted(ASSET_FILES)}")
    home = Path(os.environ.get("FARZOO_HOME", "~/.cache/farzoo")).expanduser()
    return home / "assets" / ASSET_FILES[name]


def asset_path(name: str) -> Path:
    """Path of asset ``name``: the asset store's answer, or the fallback location without it."""
    try:
        from bench.assets import asset_path as store_asset_path
    except ModuleNotFoundError as e:
        if e.name not in ("bench.assets", "bench"):
            raise
        return fallback_asset_path(name)
    return Path(store_asset_path(name))


def require_asset(metric: str, name: str) -> Path:
    """The file of asset ``name`` for ``metric``, or ``MetricUnavailable`` naming how to get it."""
    try:
        path = Path(asset_path(name))
    except MetricUnavailable:
        raise
    except Exception as e:  # the store refuses: unknown, missing, checksum mismatch, ...
        raise MetricUnavailable(metric, f"asset {name!r}: {e}", fetch_command(name)) from e
    if not path.is_file():
        where = f" (or place {ASSET_FILES.get(name, name)} at {path})"
        raise MetricUnavailable(metric, f"asset {name!r} not found at {path}",
                                fetch_command(name) + where)
    return path


__all__ = ["MetricUnavailable", "ASSET_FILES", "asset_path", "fallback_asset_path", "require_asset",
           "fetch_command"]
