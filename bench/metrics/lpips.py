"""LPIPS (AlexNet trunk, version 0.1) per frame, as FAR's evaluation computes it.

The network is the ``lpips`` package's own ``LPIPS(net="alex", version="0.1")``: its learned
linear layers ship inside the pip package (``lpips/weights/v0.1/alex.pth``); the AlexNet trunk
is torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``), read from the asset store
with ``torch.load(..., weights_only=True)``. Neither lpips nor torchvision is ever allowed to
download: the trunk is built randomly initialised (``pnet_rand=True``) and then loaded.

Inputs are frames (..., 3, H, W) in [0, 1], scaled to [-1, 1] (``2 x - 1``, what
``lpips.LPIPS.forward(..., normalize=True)`` does) before the network; one value per frame.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from .errors import require_asset

ASSET = "alexnet"
LPIPS_VERSION = "0.1"


def _trunk_state_dict(net: torch.nn.Module, alexnet_sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map torchvision AlexNet keys (``features.<i>.weight``) onto lpips' slices (``slice<k>.<i>.weight``)."""
    out = {}
    for key in net.state_dict():
        _, index, param = key.split(".")
        src = f"features.{index}.{param}"
        if src not in alexnet_sd:
            raise ValueError(f"AlexNet weights lack {src!r}: not a torchvision AlexNet state dict")
        out[key] = alexnet_sd[src]
    return out


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, device: str) -> torch.nn.Module:
    import lpips  # the package: linear layers and the network definition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation note on pretrained=False
        model = lpips.LPIPS(pretrained=True, net="alex", version=LPIPS_VERSION, lpips=True,
                            pnet_rand=True, verbose=False)
    alexnet_sd = torch.load(path, map_location="cpu", weights_only=True)
    model.net.load_state_dict(_trunk_state_dict(model.net, alexnet_sd), strict=True)
    return model.eval().requires_grad_(False).to(device)


def lpips_model(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The LPIPS module (inputs in [-1, 1]); ``MetricUnavailable`` when AlexNet is absent."""
    path = require_asset("lpips", ASSET)
    return _load(str(path), Path(path).stat().st_mtime_ns, str(torch.device(device)))


@torch.no_grad()
def lpips_per_frame(pred: Tensor, target: Tensor, device: torch.device | str = "cpu",
                    batch_size: int = 64) -> Tensor:
    """LPIPS of each frame: ``pred``, ``target`` (..., 3, H, W) in [0, 1] -> float32 (...) on the CPU."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3 or pred.shape[-3] != 3:
        raise ValueError(f"expected RGB frames (..., 3, H, W), got {tuple(pred.shape)}")
    model = lpips_model(device)
    lead = pred.shape[:-3]
    x = pred.reshape(-1, *pred.shape[-3:])
    y = target.reshape(-1, *target.shape[-3:])
    out = []
    for i in range(0, x.shape[0], batch_size):
        a = x[i:i + batch_size].to(device, torch.float32) * 2 - 1
        b = y[i:i + batch_size].to(device, torch.float32) * 2 - 1
        out.append(model(a, b).reshape(-1).float().cpu())
    values = torch.cat(out) if out else torch.zeros(0)
    return values.reshape(lead)


__all__ = ["lpips_per_frame", "lpips_model", "ASSET", "LPIPS_VERSION"]
