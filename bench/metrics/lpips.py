"""LPIPS (AlexNet trunk, version 0.1) per frame, under an explicit input convention.

The network is the ``lpips`` package's own ``LPIPS(net="alex", version="0.1")``: its learned
linear layers ship inside the pip package (``lpips/weights/v0.1/alex.pth``, checked against the
sha256 of lpips 0.1.4's file before use); the AlexNet trunk is torchvision's ImageNet AlexNet
(``alexnet-owt-7be5be79.pth``). Neither lpips nor torchvision is ever allowed to download or
unpickle: the network is built without weights and then loaded (``weights_only``) from weights
given explicitly (:func:`build_lpips`, e.g. a test's) or from the asset store's file after its
sha256 matched the pin (:func:`lpips_model`, the only path from a file; a look-alike AlexNet
makes LPIPS unavailable with "checksum mismatch").

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

import hashlib
import io
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from .errors import MetricUnavailable, require_asset
from .pixel import check_float_frames

ASSET = "alexnet"
LPIPS_VERSION = "0.1"
CONVENTIONS = ("far", "standard")  # [0, 1] input as FAR's evaluation | [-1, 1] as the package expects
# sha256 of lpips 0.1.4's lpips/weights/v0.1/alex.pth (the learned linear layers)
LIN_WEIGHTS_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LIN_KEYS = tuple(f"lin{i}.model.1.weight" for i in range(5))


@lru_cache(maxsize=1)
def _lin_state_dict() -> dict[str, Tensor]:
    """The linear layers shipped in the lpips package, after their sha256 matched lpips 0.1.4's."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / f"v{LPIPS_VERSION}" / "alex.pth"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MetricUnavailable("lpips", f"cannot read the lpips package's linear layers {path}: {e}",
                                "pip install --force-reinstall lpips==0.1.4") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != LIN_WEIGHTS_SHA256:
        raise MetricUnavailable("lpips", f"checksum mismatch: {path} (the lpips package's linear layers): "
                                f"expected sha256 {LIN_WEIGHTS_SHA256}, got {digest}",
                                "pip install --force-reinstall lpips==0.1.4")
    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if set(sd) != set(LIN_KEYS):
        raise MetricUnavailable("lpips", f"{path} holds {sorted(sd)}, expected {list(LIN_KEYS)}",
                                "pip install --force-reinstall lpips==0.1.4")
    return dict(sd)


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
    import lpips  # the package: the network definition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation note on pretrained=False
        model = lpips.LPIPS(pretrained=False, net="alex", version=LPIPS_VERSION, lpips=True,
                            pnet_rand=True, verbose=False)
    model.net.load_state_dict(_trunk_state_dict(model.net, alexnet_state_dict), strict=True)
    missing, unexpected = model.load_state_dict(_lin_state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("net.", "scaling_layer.", "lins.")) for k in missing), \
        (missing, unexpected)
    return model.eval().requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int, ctime_ns: int, device: str) -> torch.nn.Module:
    return build_lpips(torch.load(path, map_location="cpu", weights_only=True), device)


def lpips_model(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The LPIPS module from the asset store's AlexNet, loaded only after its sha256 matched the pin;
    ``MetricUnavailable`` when the file is absent or is not the pinned one ("checksum mismatch")."""
    path = Path(require_asset("lpips", ASSET))
    st = path.stat()
    return _load(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, str(torch.device(device)))


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
    check_float_frames("lpips", prediction=pred, target=target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3 or pred.shape[-3] != 3:
        raise ValueError(f"expected RGB frames (..., 3, H, W), got {tuple(pred.shape)}")
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
