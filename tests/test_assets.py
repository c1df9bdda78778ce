"""The checksum-pinned asset store: fetch over real HTTP from a local server, verify, pin, require."""

import hashlib
import json
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from bench import assets
from bench.assets import Asset, AssetMissing, DownloadError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, a few read chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``/truncated/<file>`` promises the full length but sends half and hangs up."""

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.startswith("/truncated/"):
            data = (Path(self.directory) / self.path.removeprefix("/truncated/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "payload.bin").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "farzoo"
    monkeypatch.setenv("FARZOO_HOME", str(home))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return home


def _register(monkeypatch, name="toy", filename=None, url=None, sha256=SHA, size=len(PAYLOAD)) -> Asset:
    asset = Asset(name, filename or f"{name}.bin", url, sha256, size, "metric", "a test payload", "tests")
    monkeypatch.setitem(assets.ASSETS, name, asset)
    return asset


def _store_files(home: Path) -> list[str]:
    d = home / "assets"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _quiet(*_args, **_kw):
    pass


def test_fetch_verifies_and_moves_into_place(server, home, monkeypatch):
    _register(monkeypatch, url=f"{server}/payload.bin")
    assert assets.status("toy") == "missing"
    path = assets.fetch("toy", progress=None, log=_quiet)
    assert path == home / "assets" / "toy.bin" == assets.asset_path("toy")
    assert path.read_bytes() == PAYLOAD
    assert _store_files(home) == ["toy.bin"]  # no temporary file left
    assert assets.status("toy") == "verified"
    v = assets.verify("toy")
    assert v.status == "verified" and v.sha256 == SHA and "registry" in v.message
    assert assets.require("toy") == path
    # a second fetch is a no-op
    assert assets.fetch("toy", progress=None, log=_quiet) == path


def test_wrong_checksum_is_refused_and_leaves_nothing(server, home, monkeypatch):
    wrong = "0" * 64
    _register(monkeypatch, url=f"{server}/payload.bin", sha256=wrong)
    with pytest.raises(DownloadError) as e:
        assets.fetch("toy", progress=None, log=_quiet)
    msg = str(e.value)
    assert f"{server}/payload.bin" in msg and wrong in msg and SHA in msg
    assert _store_files(home) == []
    assert assets.status("toy") == "missing"


def test_hash_prefix_in_file_name_is_checked(server, home, monkeypatch):
    _register(monkeypatch, filename="toy-deadbeef.bin", url=f"{server}/payload.bin", sha256=None, size=None)
    with pytest.raises(DownloadError, match=r"prefix.*deadbeef.*" + SHA[:8]):
        assets.fetch("toy", progress=None, log=_quiet)
    assert _store_files(home) == []
    # the right prefix alone is accepted and counts as verified
    _register(monkeypatch, name="toy2", filename=f"toy2-{SHA[:8]}.bin", url=f"{server}/payload.bin",
              sha256=None, size=None)
    assets.fetch("toy2", progress=None, log=_quiet)
    v = assets.verify("toy2")
    assert v.status == "verified" and SHA[:8] in v.message and "python -m bench assets pin toy2" in v.message


def test_truncated_download_leaves_no_partial_file(server, home, monkeypatch):
    _register(monkeypatch, url=f"{server}/truncated/payload.bin", sha256=None, size=None)
    with pytest.raises(DownloadError, match="incomplete download") as e:
        assets.fetch("toy", progress=None, log=_quiet)
    assert f"{server}/truncated/payload.bin" in str(e.value)
    assert _store_files(home) == []


def test_size_mismatch_is_refused(server, home, monkeypatch):
    _register(monkeypatch, url=f"{server}/payload.bin", sha256=None, size=len(PAYLOAD) + 1)
    with pytest.raises(DownloadError, match=rf"size: expected {len(PAYLOAD) + 1} bytes, got {len(PAYLOAD)}"):
        assets.fetch("toy", progress=None, log=_quiet)
    assert _store_files(home) == []


def test_http_error_and_interrupt_leave_nothing(server, home, monkeypatch):
    _register(monkeypatch, url=f"{server}/nope.bin")
    with pytest.raises(DownloadError, match=r"HTTP 404.*nope\.bin"):
        assets.fetch("toy", progress=None, log=_quiet)
    assert _store_files(home) == []

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assets.fetch("toy", url=f"{server}/payload.bin", progress=interrupt, log=_quiet)
    assert _store_files(home) == []


def test_failed_refetch_keeps_the_good_file(server, home, monkeypatch):
    _register(monkeypatch, url=f"{server}/payload.bin")
    path = assets.fetch("toy", progress=None, log=_quiet)
    with pytest.raises(DownloadError):
        assets.fetch("toy", url=f"{server}/truncated/payload.bin", force=True, progress=None, log=_quiet)
    assert path.read_bytes() == PAYLOAD and _store_files(home) == ["toy.bin"]


def test_require_names_the_fetch_command_and_path(home, monkeypatch):
    _register(monkeypatch, url="https://example.invalid/toy.bin")
    with pytest.raises(AssetMissing) as e:
        assets.require("toy")
    msg = str(e.value)
    assert "python -m bench assets fetch toy" in msg
    assert str(home / "assets" / "toy.bin") in msg
    with pytest.raises(AssetMissing, match="python -m bench assets fetch alexnet"):
        assets.require("alexnet")


def test_corrupt_file_is_detected(home, monkeypatch):
    _register(monkeypatch)
    path = assets.asset_path("toy")
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[:-1] + b"X")  # right size, wrong bytes
    assert assets.status("toy") == "present"  # not hashed yet
    v = assets.verify("toy")
    assert v.status == "corrupt" and SHA in v.message and "python -m bench assets fetch toy" in v.message
    assert assets.status("toy") == "corrupt"  # remembered
    with pytest.raises(assets.AssetCorrupt):
        assets.require("toy")


def test_cli_list_verify_pin(server, home, monkeypatch, capsys):
    _register(monkeypatch, url=f"{server}/payload.bin", sha256=None, size=None)
    assert assets.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("toy", "i3d_torchscript", "alexnet", "far_b_long_dmlab", "dcae_dmlab_res64"):
        assert name in out
    assert "missing" in out and str(home / "assets" / "toy.bin") in out and "autoencoder" in out

    assert assets.main(["fetch", "toy"]) == 0
    capsys.readouterr()
    assert assets.main(["verify", "toy"]) == 0
    out = capsys.readouterr().out
    assert "unpinned: record the sha256 with `python -m bench assets pin toy`" in out

    assert assets.main(["pin", "toy"]) == 0
    assert SHA in capsys.readouterr().out
    assert (home / "pins.json").is_file()
    assert assets.pinned_sha256("toy") == (SHA, "pins.json")
    assert assets.main(["verify", "toy"]) == 0
    assert "matches the pins.json pin" in capsys.readouterr().out

    assets.asset_path("toy").write_bytes(b"tampered")
    assert assets.main(["verify", "toy"]) == 1
    assert "corrupt" in capsys.readouterr().out

    assert assets.main(["verify", "i3d_torchscript"]) == 1  # named and missing
    assert "python -m bench assets fetch i3d_torchscript" in capsys.readouterr().out


def test_cli_fetch_with_url_and_unknown_names(server, home, monkeypatch, capsys):
    _register(monkeypatch, url=None)
    assert assets.main(["fetch", "toy"]) == 1
    assert "no known URL" in capsys.readouterr().err
    assert assets.main(["fetch", "toy", "--url", f"{server}/payload.bin"]) == 0
    assert assets.status("toy") == "verified"
    assert assets.main(["verify", "alexnt"]) == 1
    assert "did you mean alexnet" in capsys.readouterr().err
    with pytest.raises(KeyError):
        assets.asset_path("nope")


def test_registry_entries():
    assert assets.ASSETS["alexnet"].hash_prefix == "7be5be79"
    assert assets.ASSETS["i3d_torchscript"].filename == "i3d_torchscript.pt"
    alex = assets.ASSETS["alexnet"]
    assert alex.sha256.startswith(alex.hash_prefix)  # the pin agrees with torchvision's file name
    for name, a in assets.ASSETS.items():
        assert a.name == name
        assert a.kind in ("metric", "checkpoint", "autoencoder")
        assert a.url is None or a.url.startswith("https://")
        assert a.sha256 is None or len(a.sha256) == 64
        if a.kind != "metric":
            assert a.hash_prefix and len(a.hash_prefix) == 8, name
            assert a.url.endswith("/" + a.filename)


# ----------------------------------------------------------------------------- hashed once, never bypassed

def _count_hashes(monkeypatch) -> list[Path]:
    """Record every full read-and-hash of a file."""
    calls: list[Path] = []
    real = assets.sha256_file

    def counting(path):
        calls.append(Path(path))
        return real(path)
    monkeypatch.setattr(assets, "sha256_file", counting)
    return calls


def _place(home: Path, name: str, data: bytes) -> Path:
    path = home / "assets" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_verified_file_is_hashed_once_until_it_changes(home, monkeypatch):
    import os
    _register(monkeypatch)
    path = _place(home, "toy.bin", PAYLOAD)
    calls = _count_hashes(monkeypatch)
    assert assets.require("toy") == path
    assert assets.require("toy") == path and assets.verify("toy").status == "verified"
    assert assets.status("toy") == "verified"
    assert len(calls) == 1  # then remembered in hashes.json by (path, size, mtime, ...)
    entry = json.loads((home / "hashes.json").read_text())[str(path.resolve())]
    assert entry["sha256"] == SHA and entry["size"] == len(PAYLOAD) and entry["mtime_ns"] == path.stat().st_mtime_ns
    # a new mtime means a new file version: hashed again
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert assets.require("toy") == path
    assert len(calls) == 2
    assert assets.require("toy") == path and len(calls) == 2


def test_rewritten_file_with_the_old_size_and_mtime_is_hashed_again(home, monkeypatch):
    """Same size, mtime put back: the remembered hash must not vouch for the new bytes."""
    import os
    _register(monkeypatch)
    path = _place(home, "toy.bin", PAYLOAD)
    assert assets.require("toy") == path
    st = path.stat()
    path.write_bytes(PAYLOAD[:-1] + b"X")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(assets.AssetCorrupt, match="checksum mismatch"):
        assets.require("toy")


def test_damaged_hash_cache_is_ignored(home, monkeypatch):
    _register(monkeypatch)
    path = _place(home, "toy.bin", PAYLOAD)
    (home / "hashes.json").write_text("{not json")
    calls = _count_hashes(monkeypatch)
    assert assets.require("toy") == path and len(calls) == 1
    # a forged entry with the right stat but a malformed digest is not trusted either
    cache = json.loads((home / "hashes.json").read_text())
    cache[str(path.resolve())]["sha256"] = "not-a-digest"
    (home / "hashes.json").write_text(json.dumps(cache))
    assert assets.require("toy") == path and len(calls) == 2


def test_require_refuses_corrupt_and_unverifiable_files(home, monkeypatch):
    _register(monkeypatch)
    _place(home, "toy.bin", b"x" * len(PAYLOAD))
    with pytest.raises(assets.AssetCorrupt) as e:
        assets.require("toy")
    msg = str(e.value)
    assert "checksum mismatch" in msg and SHA in msg and "python -m bench assets fetch toy --force" in msg
    _register(monkeypatch, name="loose", sha256=None, size=None)  # nothing pins it
    _place(home, "loose.bin", PAYLOAD)
    with pytest.raises(assets.AssetUnverified, match="python -m bench assets pin loose"):
        assets.require("loose")
    import inspect
    assert list(inspect.signature(assets.require).parameters) == ["name"]  # no verify_hash=False bypass


def test_lookalike_metric_networks_are_corrupt(home):
    """The registry's real pins: a wrong file under the I3D's or AlexNet's name never passes."""
    _place(home, "i3d_torchscript.pt", b"a look-alike network")
    _place(home, "alexnet-owt-7be5be79.pth", b"random weights")
    for name in ("i3d_torchscript", "alexnet"):
        with pytest.raises(assets.AssetCorrupt, match="checksum mismatch"):
            assets.require(name)
        assert assets.verify(name).status == "corrupt"


def test_weights_given_by_path_are_checked_against_the_pins(home, monkeypatch, tmp_path):
    """Official checkpoints and DC-AEs: a file with a registry asset's name is held to its pins
    (wherever it is), any name-<prefix> file to its prefix; loading goes through the check."""
    import torch
    from safetensors.torch import save_file
    weights = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0)}, str(weights))
    data = weights.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    good = tmp_path / f"toy_far-{sha[:8]}.safetensors"
    good.write_bytes(data)
    _register(monkeypatch, name="toy_far", filename=good.name, sha256=None, size=None)
    calls = _count_hashes(monkeypatch)
    assert assets.check_file(good) == sha
    assert torch.equal(assets.read_checked_state_dict(good)["a"], torch.arange(6.0))
    assert len(calls) == 1  # checked and loaded: hashed once
    # a wrong prefix in the name
    bad = tmp_path / "toy_far-0123abcd.safetensors"
    bad.write_bytes(data)
    with pytest.raises(assets.AssetCorrupt, match=r"checksum mismatch.*0123abcd"):
        assets.read_checked_state_dict(bad)
    # the full sha256 pinned in pins.json counts as well, also for a copy outside the store
    (home).mkdir(exist_ok=True)
    (home / "pins.json").write_text(json.dumps({"toy_far": {"filename": good.name, "sha256": "f" * 64}}))
    with pytest.raises(assets.AssetCorrupt, match="python -m bench assets fetch toy_far --force"):
        assets.check_file(good)
    # a registry file name: the registry's pin, not only the prefix
    fake = tmp_path / assets.ASSETS["far_b_long_dmlab"].filename
    fake.write_bytes(data)
    with pytest.raises(assets.AssetCorrupt, match="c09441dc"):
        assets.read_checked_state_dict(fake)


def test_far_adapter_loads_official_weights_only_after_the_check(home, tmp_path):
    """bench's FAR adapter: a damaged official checkpoint or DC-AE is refused before loading."""
    from bench.models.far import FARModelConfig, FARVideoModel
    model = FARVideoModel(FARModelConfig(num_layers=1, num_heads=1, codec="unshuffle8"))
    fake = tmp_path / assets.ASSETS["far_b_long_dmlab"].filename
    fake.write_bytes(b"not the released checkpoint")
    with pytest.raises(assets.AssetCorrupt, match="checksum mismatch"):
        model.load_official(fake)
    # DC-AE weights: the tiny DC-AE of the parity fixtures stands in for the released one
    import shutil
    from far.autoencoder import LatentCodec, build_dcae
    from conftest import SHARED
    case = SHARED / "fixtures" / "far_official" / "E_dcae"
    if not case.is_dir():
        pytest.skip(f"{case} not present")
    model.codec = LatentCodec(build_dcae(json.loads((case / "dcae_config.json").read_text())))
    fake_vae = tmp_path / assets.ASSETS["dcae_dmlab_res64"].filename
    shutil.copy(case / "model.safetensors", fake_vae)  # real DC-AE weights, but not the pinned file
    with pytest.raises(assets.AssetCorrupt, match="checksum mismatch.*17035ae5"):
        model.load_codec_weights(fake_vae)
    model.load_codec_weights(case / "model.safetensors")  # nothing pins this name: loads
