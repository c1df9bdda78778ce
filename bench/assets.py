"""A checksum-pinned store for the large files the harness needs but never ships.

Metric networks (StyleGAN-V's TorchScript I3D for FVD, torchvision's AlexNet for LPIPS) and the
official FAR checkpoints (transformers and DC-AEs) live in one user directory::

    $FARZOO_HOME/assets/<filename>      (FARZOO_HOME defaults to ~/.cache/farzoo)

Every file is known by a short name in :data:`ASSETS`. A file is trusted when its sha256 matches
the one pinned in the registry, or, where the registry cannot pin it (the upstream publishes no
checksum), the one the user recorded with ``python -m bench assets pin NAME`` in
``$FARZOO_HOME/pins.json``. File names carrying a hash prefix (``alexnet-owt-7be5be79.pth``,
``FAR_B_Long_DMLab_Action64-c09441dc.pth``: the first hex digits of the file's sha256, the torch
hub / FAR convention) are checked against that prefix as well.

``fetch`` streams into a temporary file next to the target and renames it into place only after
the size and every known hash matched, so the store never holds a partial or unverified file
under an asset's name. Nothing is loaded unverified: ``require`` (the metric networks, the
official checkpoints and DC-AEs) hashes the file and compares it with every pin before handing
out its path, and ``check_file``/``read_checked_state_dict`` do the same for weights given by
path (a file carrying a registry asset's name is held to that asset's pins, any other to the
hash prefix in its name). A mismatch raises ``AssetCorrupt`` ("checksum mismatch", with the
repair command). Hashes are remembered in ``$FARZOO_HOME/hashes.json`` by absolute path, size,
mtime, ctime and inode, so a file is hashed once until it changes; a damaged cache is ignored.

Command line (``python -m bench assets ...``)::

    list                      name, kind, status, path of every asset
    verify [NAME ...]         hash the files and compare with the pins
    fetch NAME ... [--url U]  download, check, move into place
    pin NAME                  record the sha256 of a present, unpinned file
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

STATUSES = ("missing", "present", "verified", "corrupt")
CHUNK = 1 << 20
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_HF = "https://huggingface.co/guyuchao/FAR_Models/resolve/main"
_FAR_SOURCE = ("showlab/FAR README model zoo (MIT code; weights on huggingface.co/guyuchao/FAR_Models, "
               "may need an HF token: set HF_TOKEN)")
_DCAE_SOURCE = ("path from showlab/FAR options/test/far/*.yml (vae.from_config_pretrained); URL built with the "
                "README's huggingface resolve/main pattern (not listed in the README itself)")


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Asset:
    """One downloadable file. ``sha256``/``size`` are None where no trustworthy value is known."""

    name: str
    filename: str
    url: str | None
    sha256: str | None
    size: int | None
    kind: str  # metric | checkpoint | autoencoder
    provides: str  # what it is used for
    source: str  # where the URL / file name is documented, and the license where known

    @property
    def hash_prefix(self) -> str | None:
        """The sha256 prefix the file name carries (``name-<hex>.ext``), if any."""
        m = _HASH_IN_NAME.search(self.filename)
        return m.group(1) if m else None


def _far(name: str, subdir: str, filename: str, provides: str) -> Asset:
    return Asset(name, filename, f"{_HF}/{subdir}/{filename}", None, None, "checkpoint", provides, _FAR_SOURCE)


def _dcae(name: str, filename: str, provides: str) -> Asset:
    return Asset(name, filename, f"{_HF}/dcae/{filename}", None, None, "autoencoder", provides, _DCAE_SOURCE)


ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("i3d_torchscript", "i3d_torchscript.pt",
          "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
          "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2", 51_235_320, "metric",
          "FVD: StyleGAN-V's TorchScript I3D (Kinetics-400), called with rescale=False, resize=True, "
          "return_features=True -> 400-d features",
          "detector_url in StyleGAN-V src/metrics/frechet_video_distance.py and showlab/FAR far/metrics/fvd.py; "
          "sha256 and size as recorded by several independent public FVD implementations"),
    Asset("alexnet", "alexnet-owt-7be5be79.pth",
          "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
          "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244_408_911, "metric",
          "LPIPS v0.1: the ImageNet AlexNet trunk (torchvision IMAGENET1K_V1)",
          "torchvision model zoo (BSD-3-Clause); the file name carries the first 8 hex digits of its sha256"),
    # FAR transformers, as released (README model zoo)
    _far("far_l_ucf101_uncond128", "video_generation", "FAR_L_UCF101_Uncond128-c19abd2c.pth",
         "FAR-L, UCF-101 128px unconditional; task ucf101_uncond128; DC-AE dcae_ucf101_res128"),
    _far("far_l_ucf101_cond128", "video_generation", "FAR_L_UCF101_Cond128-c6f798bf.pth",
         "FAR-L, UCF-101 128px class-conditional; tasks ucf101_cond128(_10k); DC-AE dcae_ucf101_res128"),
    _far("far_l_ucf101_uncond256", "video_generation", "FAR_L_UCF101_Uncond256-adea51e9.pth",
         "FAR-L, UCF-101 256px unconditional; task ucf101_uncond256; DC-AE dcae_ucf101_res256"),
    _far("far_l_ucf101_cond256", "video_generation", "FAR_L_UCF101_Cond256-41c6033f.pth",
         "FAR-L, UCF-101 256px class-conditional; task ucf101_cond256; DC-AE dcae_ucf101_res256"),
    _far("far_xl_ucf101_uncond256", "video_generation", "FAR_XL_UCF101_Uncond256-3594ce6b.pth",
         "FAR-XL, UCF-101 256px unconditional; task ucf101_uncond256; DC-AE dcae_ucf101_res256"),
    _far("far_xl_ucf101_cond256", "video_generation", "FAR_XL_UCF101_Cond256-28a88f56.pth",
         "FAR-XL, UCF-101 256px class-conditional; task ucf101_cond256; DC-AE dcae_ucf101_res256"),
    _far("far_b_ucf101", "short_video_prediction", "FAR_B_UCF101_Uncond64-381d295f.pth",
         "FAR-B, UCF-101 64px unconditional (prediction 4 -> 12); task ucf101_pred; DC-AE dcae_ucf101_res64"),
    _far("far_b_bair", "short_video_prediction", "FAR_B_BAIR_Uncond64-1983191b.pth",
         "FAR-B (short_term_ctx_winsize 30), BAIR 64px unconditional; tasks bair_pred, bair_pred14; "
         "DC-AE dcae_bair_res64"),
    _far("far_b_long_dmlab", "long_video_prediction", "FAR_B_Long_DMLab_Action64-c09441dc.pth",
         "FAR-B-Long, DMLab 64px, 4 actions + null; task dmlab_long; DC-AE dcae_dmlab_res64"),
    _far("far_m_long_minecraft", "long_video_prediction", "FAR_M_Long_Minecraft_Action128-4c041561.pth",
         "FAR-M-Long, Minecraft 128px, 4 actions + null; task minecraft_long; DC-AE dcae_minecraft_res128"),
    # DC-AEs (32 latent channels), one per dataset and resolution
    _dcae("dcae_ucf101_res64", "DCAE_UCF101_Res64-9da18dcf.pth", "DC-AE 8x (model_8x_c32), UCF-101 64px"),
    _dcae("dcae_ucf101_res128", "DCAE_UCF101_Res128-bb9d1258.pth", "DC-AE 16x (model_16x_c32), UCF-101 128px"),
    _dcae("dcae_ucf101_res256", "DCAE_UCF101_Res256-9c4355c8.pth", "DC-AE 32x (model_32x_c32), UCF-101 256px"),
    _dcae("dcae_bair_res64", "DCAE_BAIR_Res64-1a8547fb.pth", "DC-AE 8x (model_8x_c32), BAIR 64px"),
    _dcae("dcae_dmlab_res64", "DCAE_DMLab_Res64-17035ae5.pth", "DC-AE 8x (model_8x_c32), DMLab 64px"),
    _dcae("dcae_minecraft_res128", "DCAE_Minecraft_Res128-a5677f66.pth",
          "DC-AE 16x (model_16x_c32), Minecraft 128px"),
]}


# ----------------------------------------------------------------------------- errors

class AssetError(RuntimeError):
    """Base class: every message says what is wrong, where, and the command that fixes it."""


class UnknownAsset(AssetError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class AssetMissing(AssetError):
    """The file is not in the store."""


class AssetCorrupt(AssetError):
    """The file in the store (or a download) does not match its pinned size or hash."""


class AssetUnverified(AssetError):
    """The file has nothing to be verified against (no pinned sha256, no hash prefix in its name)."""


class DownloadError(AssetError):
    """The download failed or delivered something other than the pinned file."""


# ----------------------------------------------------------------------------- locations and pins

def farzoo_home() -> Path:
    return Path(os.environ.get("FARZOO_HOME") or "~/.cache/farzoo").expanduser()


def assets_dir() -> Path:
    return farzoo_home() / "assets"


def pins_path() -> Path:
    return farzoo_home() / "pins.json"


def _hash_cache_path() -> Path:
    return farzoo_home() / "hashes.json"


def get_asset(name: str) -> Asset:
    """The registry entry of ``name``; unknown names raise with the closest valid names."""
    if name in ASSETS:
        return ASSETS[name]
    close = difflib.get_close_matches(name, list(ASSETS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownAsset(f"unknown asset {name!r}{hint} (all: {', '.join(ASSETS)}; see `python -m bench assets list`)")


def asset_path(name: str) -> Path:
    """Where asset ``name`` is, or would be once fetched (the file need not exist)."""
    return assets_dir() / get_asset(name).filename


def fetch_command(name: str) -> str:
    return f"python -m bench assets fetch {name}"


def repair_command(name: str) -> str:
    """The command that replaces a bad store file with a verified download."""
    return f"python -m bench assets fetch {name} --force"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AssetError(f"{path} is not valid JSON ({e}); fix or delete it") from e
    return data if isinstance(data, dict) else {}


def _write_json_atomic(path: Path, data: dict) -> None:
    from bench.paths import write_atomic
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_pins() -> dict[str, dict]:
    return _read_json(pins_path())


def pinned_sha256(name: str) -> tuple[str | None, str]:
    """(sha256, where it comes from: "registry" | "pins.json" | "none")."""
    asset = get_asset(name)
    if asset.sha256:
        return asset.sha256.lower(), "registry"
    pin = load_pins().get(name)
    if pin and pin.get("filename", asset.filename) == asset.filename and pin.get("sha256"):
        return str(pin["sha256"]).lower(), "pins.json"
    return None, "none"


def _expected_size(name: str) -> int | None:
    asset = get_asset(name)
    if asset.size is not None:
        return asset.size
    pin = load_pins().get(name) or {}
    if pin.get("filename", asset.filename) == asset.filename and pin.get("size") is not None:
        return int(pin["size"])
    return None


# ----------------------------------------------------------------------------- hashing

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> dict:
    """What must be unchanged for a remembered hash to hold: size, mtime, ctime and inode (a file
    rewritten in place, or replaced by another, changes at least one of them)."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_hash_cache() -> dict:
    """hashes.json, or {} when it is absent or damaged (a cache only ever saves re-hashing)."""
    try:
        data = json.loads(_hash_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cache_hit(entry, st: os.stat_result) -> str | None:
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in _stat_key(st).items()):
        return None
    digest = entry.get("sha256")
    if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


def _remember(path: Path, st: os.stat_result, digest: str) -> None:
    cache = _read_hash_cache()  # re-read: another process may have added entries meanwhile
    cache[str(path.resolve())] = {**_stat_key(st), "sha256": digest}
    try:
        _write_json_atomic(_hash_cache_path(), cache)
    except OSError:
        pass  # a read-only home only costs re-hashing


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, hashed once: remembered in hashes.json by (absolute path, size, mtime,
    ctime, inode) and hashed again only when one of them changed."""
    path = Path(path)
    st = path.stat()
    hit = _cache_hit(_read_hash_cache().get(str(path.resolve())), st)
    if hit is not None:
        return hit
    digest = sha256_file(path)
    after = path.stat()
    if _stat_key(after) == _stat_key(st):  # not changed while it was being read
        _remember(path, after, digest)
    return digest


_file_sha256 = file_sha256  # the name before it was public


def _cached_sha256(path: Path) -> str | None:
    """The remembered sha256 of ``path`` if it is still current; never hashes."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _cache_hit(_read_hash_cache().get(str(path.resolve())), st)


def _mismatches(asset: Asset, expected_sha: str | None, size: int | None, digest: str | None,
                expected_size: int | None) -> list[str]:
    """Human-readable differences between a file (size, digest) and what the asset pins."""
    problems = []
    if expected_size is not None and size is not None and size != expected_size:
        problems.append(f"size: expected {expected_size} bytes, got {size}")
    if digest is not None:
        if expected_sha and digest != expected_sha:
            problems.append(f"sha256: expected {expected_sha}, got {digest}")
        prefix = asset.hash_prefix
        if prefix and not digest.startswith(prefix):
            problems.append(f"sha256 prefix from the file name: expected {prefix}..., got {digest[:len(prefix)]}...")
    return problems


# ----------------------------------------------------------------------------- status / verify

@dataclass(frozen=True)
class Verification:
    name: str
    status: str  # one of STATUSES
    path: Path
    message: str
    sha256: str | None = None
    problems: tuple[str, ...] = ()  # what differs from the pins (status "corrupt")


def status(name: str) -> str:
    """missing | present | verified | corrupt, without hashing (uses remembered hashes).

    ``present`` means the file exists but has not been verified, or there is nothing to verify it
    against (no pinned sha256 and no hash prefix in its name); ``verify`` decides.
    """
    asset = get_asset(name)
    path = asset_path(name)
    if not path.is_file():
        return "missing"
    expected, _ = pinned_sha256(name)
    size = path.stat().st_size
    exp_size = _expected_size(name)
    if exp_size is not None and size != exp_size:
        return "corrupt"
    digest = _cached_sha256(path)
    if digest is None:
        return "present"
    if _mismatches(asset, expected, size, digest, exp_size):
        return "corrupt"
    return "verified" if (expected or asset.hash_prefix) else "present"


def verify(name: str) -> Verification:
    """Hash the file and compare it with every pin; never raises for a bad file (see ``status``)."""
    asset = get_asset(name)
    path = asset_path(name)
    if not path.is_file():
        return Verification(name, "missing", path, f"missing: {path} (get it with `{fetch_command(name)}`)")
    expected, origin = pinned_sha256(name)
    exp_size = _expected_size(name)
    size = path.stat().st_size
    # a wrong size already proves the file wrong: no need to read it
    digest = None if exp_size is not None and size != exp_size else file_sha256(path)
    problems = _mismatches(asset, expected, size, digest, exp_size)
    if problems:
        return Verification(name, "corrupt", path,
                            f"corrupt: {path}: " + "; ".join(problems)
                            + f" (replace it with `{repair_command(name)}`)", digest, tuple(problems))
    if expected:
        return Verification(name, "verified", path, f"verified: sha256 {digest} matches the {origin} pin", digest)
    if asset.hash_prefix:
        return Verification(name, "verified", path,
                            f"verified: sha256 {digest} matches the file name's prefix {asset.hash_prefix} "
                            f"(full sha256 not pinned; record it with `python -m bench assets pin {name}`)", digest)
    return Verification(name, "present", path,
                        f"unpinned: record the sha256 with `python -m bench assets pin {name}` "
                        f"(it is {digest})", digest)


def require(name: str) -> Path:
    """The path of asset ``name`` once its file matched every pin (hashed once, then remembered).

    Raises ``AssetMissing`` (not in the store), ``AssetCorrupt`` (checksum mismatch: size, sha256 or
    the file name's hash prefix differ from the pins) or ``AssetUnverified`` (nothing pins it); each
    message names the file and the command that fixes it. There is no way around the check: every
    network the harness loads from the store comes through here.
    """
    asset = get_asset(name)
    path = asset_path(name)
    if not path.is_file():
        where = f"from {asset.url}" if asset.url else "(no known URL: download it yourself)"
        raise AssetMissing(f"asset {name!r} ({asset.provides}) is not in the store: expected {path}. "
                           f"Get it with `{fetch_command(name)}` {where}, or place {asset.filename} at {path}.")
    v = verify(name)
    if v.status == "corrupt":
        raise AssetCorrupt(f"checksum mismatch: {path} is not the pinned {name!r} file ({'; '.join(v.problems)}); "
                           f"replace it with `{repair_command(name)}`")
    if v.status != "verified":
        raise AssetUnverified(f"asset {name!r} at {path} cannot be verified: no sha256 is pinned for it and its "
                              f"name carries no hash prefix; check the file, then record its sha256 with "
                              f"`python -m bench assets pin {name}`")
    return path


# weights files outside the store: "name-<sha256 prefix>.ext" (torch hub / FAR convention, as far.official)
_WEIGHTS_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(safetensors|pth|pt|bin|ckpt)$")


def check_file(path: str | os.PathLike) -> str:
    """The sha256 of a weights file given by path, after checking it against every pin that applies.

    A file named like a registry asset (``FAR_B_Long_DMLab_Action64-c09441dc.pth``, wherever it is)
    is held to that asset's pinned size and sha256 (registry or ``pins.json``); any name carrying a
    hash prefix (``name-<hex>.ext``) to that prefix. A file with neither (a checkpoint trained here)
    has nothing to be checked against; its hash is returned for the record. Hashed once per file
    version (``file_sha256``). Raises ``AssetCorrupt`` ("checksum mismatch") on any difference.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    size = path.stat().st_size
    digest = file_sha256(path)
    problems: list[str] = []
    names = [n for n, a in ASSETS.items() if a.filename == path.name]
    for name in names:
        problems += _mismatches(ASSETS[name], pinned_sha256(name)[0], size, digest, _expected_size(name))
    m = _WEIGHTS_HASH_IN_NAME.search(path.name)
    if m and not digest.startswith(m.group(1)):
        problems.append(f"sha256 prefix from the file name: expected {m.group(1)}..., got {digest[:len(m.group(1))]}...")
    if problems:
        fix = (f"replace it with `{repair_command(names[0])}` (a verified copy at {asset_path(names[0])})"
               if names else "replace it with an intact copy (a renamed or damaged download?)")
        raise AssetCorrupt(f"checksum mismatch: {path}: {'; '.join(dict.fromkeys(problems))}; {fix}")
    return digest


def read_checked_state_dict(path: str | os.PathLike) -> dict:
    """The tensors of a weights file (``far.official.read_state_dict``: safetensors or weights-only
    torch.load, never unpickling code) after ``check_file`` accepted it."""
    from far.official import read_state_dict
    return read_state_dict(path, digest=check_file(path))


# ----------------------------------------------------------------------------- fetch

def _default_progress(done: int, total: int | None) -> None:
    if not sys.stderr.isatty():
        return
    if total:
        sys.stderr.write(f"\r  {done / 2**20:9.1f} / {total / 2**20:.1f} MiB ({100 * done / total:5.1f}%)")
    else:
        sys.stderr.write(f"\r  {done / 2**20:9.1f} MiB")
    sys.stderr.flush()


def _request(url: str) -> urllib.request.Request:
    headers = {"User-Agent": "farzoo-assets/1"}
    host = urllib.parse.urlparse(url).hostname or ""
    token = os.environ.get("HF_TOKEN")
    if token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


def fetch(name: str, url: str | None = None, force: bool = False, timeout: float = 60.0,
          progress: Callable[[int, int | None], None] | None = _default_progress, log=print) -> Path:
    """Download asset ``name`` (from ``url`` or its registry URL) into the store, checked.

    The bytes go to a temporary file in the store directory; only when the byte count matches the
    server's Content-Length and the pinned size, and the sha256 matches the pin and the file name's
    prefix, is it renamed onto the asset's path. On any failure (including Ctrl-C) the temporary
    file is removed and an existing file is left untouched.
    """
    asset = get_asset(name)
    dest = asset_path(name)
    if dest.is_file() and not force:
        v = verify(name)
        if v.status in ("verified", "present"):
            log(f"{name}: already in the store ({v.message})")
            return dest
        log(f"{name}: {v.message}; downloading again")
    src = url or asset.url
    if not src:
        raise DownloadError(f"asset {name!r} has no known URL; download {asset.filename} yourself "
                            f"(source: {asset.source}) and place it at {dest}, or pass --url URL")
    expected, origin = pinned_sha256(name)
    exp_size = _expected_size(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{asset.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    log(f"{name}: downloading {src} -> {dest}")
    try:
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(_request(src), timeout=timeout)
            except urllib.error.HTTPError as e:
                hint = " (Hugging Face may need a token: set HF_TOKEN)" if e.code in (401, 403) else ""
                raise DownloadError(f"asset {name!r}: HTTP {e.code} {e.reason} for {src}{hint}") from e
            except (urllib.error.URLError, OSError) as e:
                raise DownloadError(f"asset {name!r}: cannot download {src}: {e}") from e
            with resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                try:
                    while block := resp.read(CHUNK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total or exp_size)
                except (OSError, urllib.error.URLError, ConnectionError) as e:
                    raise DownloadError(f"asset {name!r}: download of {src} broke off after {done} bytes: {e}") from e
            out.flush()
            os.fsync(out.fileno())
        if progress and sys.stderr.isatty():
            sys.stderr.write("\n")
        if total is not None and done != total:
            raise DownloadError(f"asset {name!r}: incomplete download from {src}: received {done} of "
                                f"{total} bytes (Content-Length); nothing was written to {dest}")
        digest = h.hexdigest()
        problems = _mismatches(asset, expected, done, digest, exp_size)
        if problems:
            raise DownloadError(f"asset {name!r}: the file downloaded from {src} does not match "
                                f"({'; '.join(problems)}); nothing was written to {dest}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _remember(dest, dest.stat(), digest)  # the hash of the bytes just written: no second read
    except OSError:
        pass
    if expected:
        log(f"{name}: sha256 {digest} matches the {origin} pin; saved {dest}")
    else:
        what = f"matches the file name's prefix {asset.hash_prefix}; " if asset.hash_prefix else ""
        log(f"{name}: sha256 {digest} ({what}unpinned: record it with `python -m bench assets pin {name}`); "
            f"saved {dest}")
    return dest


# ----------------------------------------------------------------------------- pin

def pin(name: str) -> str:
    """Record the sha256 (and size) of the present file of an asset the registry does not pin."""
    asset = get_asset(name)
    path = asset_path(name)
    if asset.sha256:
        raise AssetError(f"asset {name!r} is pinned in the registry (sha256 {asset.sha256}); "
                         f"use `python -m bench assets verify {name}`")
    if not path.is_file():
        raise AssetMissing(f"asset {name!r} is not in the store: expected {path}; "
                           f"get it with `{fetch_command(name)}` before pinning")
    digest = file_sha256(path)
    size = path.stat().st_size
    problems = _mismatches(asset, None, size, digest, asset.size)
    if problems:
        raise AssetCorrupt(f"asset {name!r}: refusing to pin {path}: {'; '.join(problems)}")
    pins = load_pins()
    old = pins.get(name)
    pins[name] = {"filename": asset.filename, "sha256": digest, "size": size}
    _write_json_atomic(pins_path(), pins)
    if old and old.get("sha256") != digest:
        print(f"warning: {name} was pinned to {old.get('sha256')}; now {digest}", file=sys.stderr)
    return digest


# ----------------------------------------------------------------------------- CLI

def _table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def _names(given: Iterable[str]) -> list[str]:
    names = list(given) or list(ASSETS)
    for n in names:
        get_asset(n)
    return names


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench assets",
                                     description=f"Checksum-pinned asset store in {assets_dir()} "
                                                 "(set FARZOO_HOME to move it).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="name, kind, status, path of every asset")
    p = sub.add_parser("verify", help="hash files and compare with the pins")
    p.add_argument("names", nargs="*", metavar="NAME")
    p = sub.add_parser("fetch", help="download, check size and sha256, move into place")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--url", default=None, help="download from here instead of the registry URL (one NAME)")
    p.add_argument("--force", action="store_true", help="download even if a good file is present")
    p = sub.add_parser("pin", help="record the sha256 of a present file whose sha256 the registry lacks")
    p.add_argument("name", metavar="NAME")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "list":
            rows = []
            for n, a in ASSETS.items():
                sha, origin = pinned_sha256(n)
                pinned = origin if sha else (f"prefix {a.hash_prefix}" if a.hash_prefix else "unpinned")
                rows.append([n, a.kind, status(n), pinned, str(asset_path(n))])
            print(_table(rows, ["name", "kind", "status", "pin", "path"]))
            print(f"\nstatus without hashing; `python -m bench assets verify` hashes. Store: {assets_dir()}")
            return 0
        if args.cmd == "verify":
            bad = 0
            for n in _names(args.names):
                v = verify(n)
                print(f"{n}: {v.message}")
                bad += v.status == "corrupt" or (v.status == "missing" and bool(args.names))
            return 1 if bad else 0
        if args.cmd == "fetch":
            names = _names(args.names)
            if args.url and len(names) != 1:
                parser.error("--url needs exactly one NAME")
            failed = 0
            for n in names:
                try:
                    fetch(n, url=args.url, force=args.force)
                except AssetError as e:
                    print(f"error: {e}", file=sys.stderr)
                    failed += 1
            return 1 if failed else 0
        if args.cmd == "pin":
            digest = pin(args.name)
            print(f"{args.name}: pinned sha256 {digest} in {pins_path()}")
            return 0
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2


__all__ = ["Asset", "ASSETS", "STATUSES", "AssetError", "UnknownAsset", "AssetMissing", "AssetCorrupt",
           "AssetUnverified", "DownloadError", "Verification", "farzoo_home", "assets_dir", "pins_path", "get_asset",
           "asset_path", "fetch_command", "repair_command", "pinned_sha256", "sha256_file", "file_sha256", "status",
           "verify", "require", "check_file", "read_checked_state_dict", "fetch", "pin", "main"]
