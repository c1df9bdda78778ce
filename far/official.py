"""Official FAR checkpoints: configs, state-dict key names, safe loading, checksums.

The official code (showlab/FAR) builds its modules from diffusers building blocks, so a few state-dict
names differ from ours; :data:`KEY_RENAMES` maps them both ways. Everything else is identical.
Loading never unpickles arbitrary objects: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from far.model import FAR, FARConfig

# (official pattern, ours); applied with re.sub on full key names.
KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.attn\.to_out\.0\.", ".attn.to_out."),
    (r"\.mlp\.net\.0\.proj\.", ".mlp.fc1."),
    (r"\.mlp\.net\.2\.", ".mlp.fc2."),
    (r"^(label|action)_embedder\.embedding_table\.", r"\1_embedder."),
)
_INVERSE: tuple[tuple[str, str], ...] = (
    (r"\.attn\.to_out\.", ".attn.to_out.0."),
    (r"\.mlp\.fc1\.", ".mlp.net.0.proj."),
    (r"\.mlp\.fc2\.", ".mlp.net.2."),
    (r"^(label|action)_embedder\.(weight)$", r"\1_embedder.embedding_table.\2"),
)

# Wrapper keys under which training scripts commonly nest the weights.
_NESTED = ("ema", "state_dict", "model", "module", "transformer")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(safetensors|pth|pt|bin|ckpt)$")


class CheckpointError(ValueError):
    """A checkpoint does not fit the model; the message names the file and the offending keys."""


def official_key_to_ours(key: str) -> str:
    for pattern, repl in KEY_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def our_key_to_official(key: str) -> str:
    for pattern, repl in _INVERSE:
        key = re.sub(pattern, repl, key)
    return key


def config_from_official(kwargs: Mapping[str, Any], long: bool | None = None, **overrides) -> FARConfig:
    """Our config from the official constructor kwargs (``FAR(...)`` / ``FAR_Long(...)``)."""
    cond = kwargs.get("condition_cfg")
    condition, num_classes = "none", 0
    if cond:
        condition = cond["type"]
        num_classes = cond["num_classes"] if condition == "label" else cond["num_action_classes"]
    is_long = ("context_patch_size" in kwargs) if long is None else long
    cfg = FARConfig(
        num_layers=kwargs.get("num_layers", 12),
        num_heads=kwargs.get("num_attention_heads", 12),
        head_dim=kwargs.get("attention_head_dim", 64),
        in_channels=kwargs.get("in_channels", 32),
        out_channels=kwargs.get("out_channels", 32),
        patch_size=kwargs.get("patch_size", 1),
        context_patch_size=kwargs.get("context_patch_size", 4) if is_long else None,
        short_term_ctx_winsize=kwargs.get("short_term_ctx_winsize", 16),
        axes_dims_rope=tuple(kwargs.get("axes_dims_rope", (16, 24, 24))),
        slope_scale=float(kwargs.get("slope_scale", 0) or 0),
        condition=condition,
        num_classes=num_classes,
    )
    return FARConfig(**{**cfg.__dict__, **overrides})


def verify_hash_prefix(path: str | os.PathLike, digest: str | None = None) -> str | None:
    """Check ``name-<sha256 prefix>.ext`` file names; return the prefix (None if the name has none).

    ``digest`` is the file's sha256 when the caller already knows it (e.g. ``bench.assets``, which
    remembers hashes), so the file is not read twice; otherwise the file is hashed here.
    """
    path = Path(path)
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        return None
    prefix = match.group(1)
    digest = digest.lower() if digest is not None else sha256_file(path)
    if not digest.startswith(prefix):
        raise CheckpointError(f"{path}: file name says sha256 starts with {prefix}, "
                              f"but the file hashes to {digest[:len(prefix)]}... (corrupt or renamed download)")
    return prefix


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike, verify_hash: bool = True,
                    digest: str | None = None) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, never unpickling code; unwraps common nesting (``ema``, ...).

    The hash prefix in the file name (if any) is checked against ``digest`` when given (the file's
    known sha256), else against the file's hash.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if verify_hash:
        verify_hash_prefix(path, digest)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint ({e})") from e
    for _ in range(3):
        if isinstance(sd, Mapping) and not any(isinstance(v, Tensor) for v in sd.values()):
            inner = next((sd[k] for k in _NESTED if k in sd and isinstance(sd[k], Mapping)), None)
            if inner is None:
                raise CheckpointError(f"{path}: no tensors at the top level and none under {_NESTED}; "
                                      f"top-level keys are {sorted(sd)[:10]}")
            sd = inner
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors, got {type(sd).__name__}")
    prefix = "module."
    if sd and all(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor],
                             source: str = "<state dict>") -> None:
    """Load official-named weights into ``model``, strictly: every key used, every shape equal."""
    ours = model.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        mapped[official_key_to_ours(key)] = value
    missing = [our_key_to_official(k) for k in ours if k not in mapped]
    unexpected = [k for k in state_dict if official_key_to_ours(k) not in ours]
    shapes = [f"{our_key_to_official(k)}: checkpoint {tuple(v.shape)}, model {tuple(ours[k].shape)}"
              for k, v in mapped.items() if k in ours and tuple(v.shape) != tuple(ours[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{source} does not fit {type(model).__name__}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        if shapes:
            parts.append(f"mis-shaped keys ({len(shapes)}): {shapes[:8]}")
        raise CheckpointError("; ".join(parts))
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in mapped.items()}, strict=True)


def official_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Our weights under the official names (for exporting back to the official code)."""
    return {our_key_to_official(k): v for k, v in model.state_dict().items()}


def load_far_checkpoint(path: str | os.PathLike, cfg: FARConfig, map_location: str = "cpu") -> FAR:
    """Build ``FAR(cfg)`` and load an official-format checkpoint into it."""
    model = FAR(cfg)
    load_official_state_dict(model, read_state_dict(path), source=str(path))
    return model.to(map_location)
