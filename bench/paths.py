"""Where things live, and how paths are written into committed outputs.

Run records and tables are committed and compared byte for byte on other machines, so they never
name a path of the machine they were made on. :func:`portable` writes a path relative to a root
that every machine has, first match wins:

- ``$FARZOO_HOME/...`` (stand-ins, assets; default ``~/.cache/farzoo``),
- ``$FARZOO_<DATASET>_ROOT/...`` and ``$FARZOO_DATA/...`` (real datasets),
- the repository: a plain relative path (``runs/dmlab_long__quick/far/...``),
- the user's home: ``~/...``,
- anything else: ``<outside>/<name>`` (the last component only).

:func:`portable_text` applies the same to every absolute path inside a message (e.g. "place the
file at /home/me/.cache/farzoo/assets/x.pth" -> "... at $FARZOO_HOME/assets/x.pth");
:func:`expand` turns a portable path back into a local one where it can.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = "<outside>"
DATASETS = ("ucf101", "bair", "dmlab", "minecraft", "greenearthnet")


def farzoo_home() -> Path:
    """``$FARZOO_HOME`` (default ``~/.cache/farzoo``): stand-ins, assets, caches."""
    return Path(os.environ.get("FARZOO_HOME") or "~/.cache/farzoo").expanduser()


def _roots() -> list[tuple[str, Path]]:
    """(name written, local absolute root), most specific first."""
    roots = [("$FARZOO_HOME", farzoo_home())]
    for ds in DATASETS:
        env = f"FARZOO_{ds.upper()}_ROOT"
        if os.environ.get(env):
            roots.append((f"${env}", Path(os.environ[env]).expanduser()))
    if os.environ.get("FARZOO_DATA"):
        roots.append(("$FARZOO_DATA", Path(os.environ["FARZOO_DATA"]).expanduser()))
    roots.append(("", REPO))
    roots.append(("~", Path.home()))
    out = []
    for name, root in roots:
        for form in {str(root.absolute()), str(root.resolve())}:
            out.append((name, Path(form)))
    # the longest root first: $FARZOO_HOME inside the repository stays $FARZOO_HOME
    return sorted(out, key=lambda nr: -len(nr[1].parts))


def portable(path: str | os.PathLike | None) -> str | None:
    """``path`` as written in committed outputs (see the module doc); relative paths are kept."""
    if path is None:
        return None
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute():
        return p.as_posix()
    p = Path(os.path.normpath(p))
    for name, root in _roots():
        try:
            rel = p.relative_to(root)
        except ValueError:
            continue
        if not name:
            return rel.as_posix() or "."
        return name if rel == Path(".") else f"{name}/{rel.as_posix()}"
    return f"{OUTSIDE}/{p.name}"


# An absolute path inside free text: starts at "/" not preceded by a word character, ".", "~", "$"
# or "/" (so "n/a", "./x", "~/x", "$X/y" are left alone); it may follow a colon ("trained:/x/final.pt").
# A URL's "//host/..." is matched but left alone: its first component is no folder of this machine.
_ABS = re.compile(r"(?<![\w.~$/<>-])/[^\s'\"`,;:()\[\]{}<>|]+")


def portable_text(text: str) -> str:
    """Every absolute path in ``text`` written with :func:`portable`. A match counts as a path only
    when its first component exists on this machine (``/tmp``, ``/home``, ...)."""
    def repl(m: re.Match) -> str:
        raw = m.group(0)
        trail = ""
        while raw and raw[-1] == ".":  # the end of a sentence, not of the path
            raw, trail = raw[:-1], raw[-1] + trail
        first = Path(raw).parts[1] if len(Path(raw).parts) > 1 else ""
        if not first or not os.path.isdir("/" + first):
            return m.group(0)
        return portable(raw) + trail
    return _ABS.sub(repl, text)


def expand(text: str) -> Path:
    """A portable path back on this machine (``$FARZOO_HOME/x`` -> its local folder; relative paths
    are relative to the repository)."""
    if text.startswith("$"):
        name, _, rest = text[1:].partition("/")
        if name == "FARZOO_HOME":
            base = farzoo_home()
        elif os.environ.get(name):
            base = Path(os.environ[name]).expanduser()
        else:
            raise ValueError(f"{text}: ${name} is not set on this machine")
        return base / rest if rest else base
    if text.startswith(OUTSIDE):
        raise ValueError(f"{text}: a path outside the repository and $FARZOO_HOME of the machine it came from")
    p = Path(text).expanduser()
    return p if p.is_absolute() else REPO / p


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file next to ``path`` (same suffix, so writers that infer the format from it work)
    that replaces ``path`` when the block ends without an error and is removed otherwise: nothing
    half-written is ever at ``path``. The file gets the usual mode (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through :func:`replacing`."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
