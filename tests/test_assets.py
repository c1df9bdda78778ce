"""The checksum-pinned asset store: fetch over real HTTP from a local server, verify, pin, require."""

import hashlib
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
