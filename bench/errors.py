"""Errors the harness expects and explains: one line each, no traceback.

``python -m bench`` turns any :class:`BenchError` into one line on stderr (from rank 0 only under
``torchrun``) and exit code 2. Anything else is a bug and keeps its traceback.

- :class:`ConfigError`: an option has the wrong type or is out of range (names the field, the
  expectation and the value);
- :class:`DataError`: a dataset file cannot be read or has the wrong content (names the file, the
  field inside it and the fix);
- :class:`CheckpointError`: a weights file cannot be used (names the file and the fix);
- :class:`RunLocked`: another process holds the run directory;
- :class:`NotWritable`: a directory the run writes into is not writable (checked before any work).
"""

from __future__ import annotations

import os
from pathlib import Path


class BenchError(Exception):
    """An error with a complete one-line explanation for the user."""


class ConfigError(BenchError, ValueError):
    """An option value of the wrong type or out of its range."""


class CheckpointError(BenchError, ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, or made with another configuration."""


class RunLocked(BenchError):
    """Another process is running in the same run directory."""


class NotWritable(BenchError, OSError):
    """A directory the run must write into is not writable."""


class DataError(BenchError, ValueError):
    """A dataset file that cannot be read or holds the wrong content.

    ``path``: the file; ``field``: what inside it (an array, a variable, a record) or None for the
    file as a whole; ``expectation``: what was expected and found; ``fix``: what to do about it.
    """

    def __init__(self, path: str | os.PathLike, field: str | None, expectation: str, fix: str | None = None):
        self.path, self.field, self.expectation, self.fix = str(path), field, expectation, fix
        where = f"{self.path}: {field}" if field else self.path
        super().__init__(f"{where}: {expectation}" + (f"; fix: {fix}" if fix else ""))

    def __reduce__(self):  # picklable (DataLoader workers, broadcasts between processes)
        return (DataError, (self.path, self.field, self.expectation, self.fix))

    def with_fix(self, fix: str) -> "DataError":
        return self if self.fix else DataError(self.path, self.field, self.expectation, fix)

    @classmethod
    def wrap(cls, path: str | os.PathLike, error: BaseException, fix: str | None = None) -> "DataError":
        """A loader's low-level exception (ValueError, OSError, zlib.error, ...) as a DataError about
        ``path``; the message loses a leading repetition of the path and stays on one line."""
        if isinstance(error, DataError):
            return error.with_fix(fix) if fix else error
        text = " ".join(str(error).split()) or type(error).__name__
        for prefix in (f"{path}: ", f"{Path(path).name}: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        if isinstance(error, FileNotFoundError) and "does not exist" not in text:
            text = f"does not exist ({text})"
        return cls(path, getattr(error, "field", None), text, fix)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
