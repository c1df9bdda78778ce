"""LPIPS (AlexNet trunk, version 0.1) per frame, under an explicit input convention.

The network is the ``lpips`` package's own ``LPIPS(net="alex", version="0.1")``: its learned
linear layers ship inside the pip package (``lpips/weights/v0.1/alex.pth``); the AlexNet trunk
is torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``). Neither lpips nor torchvision
is ever allowed to download: the trunk is built randomly initialised (``pnet_rand=True``) and
then loaded from weights given explicitly (:func:`build_lpips`) or from the checksum-verified
asset store (:func:`lpips_model`, the only path the harness uses).

Two input conventions exist, and they give different numbers:

* ``"far"``: the official FAR evaluation (``far/metrics/metric.py``) passes frames in **[0, 1]**
  to ``lpips.LPIPS.forward`` without ``normalize=True``, although the network expects [-1, 1].
  FAR's reported LPIPS (0.037 UCF, 0.049 BAIR, 0.104 DMLab, 0.251 Minecraft) is this one; the
  parity fixture ``G_lpips`` checks it.
* ``"standard"``: the package's convention, frames scaled to [-1, 1] (``2 x - 1``, what
  ``normalize=True`` does); MCVD/ExtDM's ``calculate_lpips.py`` uses it.

One value per frame, float32.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from .errors import require_asset

ASSET = "alexnet"
LPIPS_VERSION = "0.1"
CONVENTIONS = ("far", "standard")  # [0, 1] input as FAR's evaluation | [-1, 1] as the package expects


def _trunk_state_dict(net: torch.nn.Module, alexnet_sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map torchvision AlexNet keys (``features.<i>.weight``) onto lpips' slices (``slice<k>.<i>.weight``)."""
    out = {}
    for key in net.state_dict():
        _, index, param = key.split(".")
        src = f"features.{index}.{param}"
        if src not in alexnet_sd:
            raise ValueError(f"AlexNet weights lack {src!r}: not a torchvision AlexNet state dict")
        out[key] = alexnet_sd[src]
    return out


def build_lpips(alexnet_state_dict: Mapping[str, Tensor], device: torch.device | str = "cpu") -> torch.nn.Module:
    """LPIPS v0.1 with the AlexNet trunk taken from ``alexnet_state_dict`` (torchvision key names;
    only the ``features.*`` entries are used). For explicit weights, e.g. a test's; users get the
    verified network through :func:`lpips_model`."""
    import lpips  # the package: linear layers and the network definition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation note on pretrained=False
        model = lpips.LPIPS(pretrained=True, net="alex", version=LPIPS_VERSION, lpips=True,
                            pnet_rand=True, verbose=False)
    model.net.load_state_dict(_trunk_state_dict(model.net, alexnet_state_dict), strict=True)
    return model.eval().requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int, device: str) -> torch.nn.Module:
    return build_lpips(torch.load(path, map_location="cpu", weights_only=True), device)


def lpips_model(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The LPIPS module from the asset store's verified AlexNet; ``MetricUnavailable`` when the file
    is absent or fails its checksum."""
    path = Path(require_asset("lpips", ASSET))
    st = path.stat()
    return _load(str(path), st.st_size, st.st_mtime_ns, str(torch.device(device)))


def _network_input(frames: Tensor, convention: str) -> Tensor:
    x = frames.to(torch.float32)
    return x if convention == "far" else x * 2 - 1


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown LPIPS convention {convention!r}; choose one of {CONVENTIONS} "
                         "('far': [0, 1] input as FAR's evaluation; 'standard': [-1, 1])")
    return convention


@torch.no_grad()
def lpips_per_frame(pred: Tensor, target: Tensor, convention: str, device: torch.device | str = "cpu",
                    batch_size: int = 64, model: torch.nn.Module | None = None) -> Tensor:
    """LPIPS of each frame: ``pred``, ``target`` (..., 3, H, W) float in [0, 1] -> float32 (...) on the CPU.

    ``convention`` is ``"far"`` or ``"standard"`` (see the module docstring). ``model`` defaults to
    the asset store's verified network.
    """
    check_convention(convention)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3 or pred.shape[-3] != 3:
        raise ValueError(f"expected RGB frames (..., 3, H, W), got {tuple(pred.shape)}")
    for what, t in (("prediction", pred), ("target", target)):
        if not t.is_floating_point():
            raise TypeError(f"LPIPS {what} must be a float tensor in [0, 1], got {t.dtype} "
                            "(convert uint8 frames with x.float() / 255)")
    if model is None:
        model = lpips_model(device)
    device = next(model.parameters()).device
    lead = pred.shape[:-3]
    x = pred.reshape(-1, *pred.shape[-3:])
    y = target.reshape(-1, *target.shape[-3:])
    out = []
    for i in range(0, x.shape[0], batch_size):
        a = _network_input(x[i:i + batch_size].to(device), convention)
        b = _network_input(y[i:i + batch_size].to(device), convention)
        out.append(model(a, b).reshape(-1).float().cpu())
    values = torch.cat(out) if out else torch.zeros(0)
    return values.reshape(lead)


__all__ = ["lpips_per_frame", "lpips_model", "build_lpips", "check_convention", "CONVENTIONS", "ASSET",
           "LPIPS_VERSION"]
