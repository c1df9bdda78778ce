"""Progress bars and notices of a run, readable on a terminal and in a CI log.

:func:`bar` is a tqdm bar on stderr in the phase's natural unit (stand-in videos written, training
steps, videos sampled, videos scored) with rate and ETA. On a terminal it redraws in place; when
stderr is not a terminal (CI, ``| tee``) the same text is printed as whole lines, at most every
``NON_TTY_INTERVAL_S`` seconds and once at the end, so logs stay readable. ``enabled=False``
(``--no-progress``, ranks other than 0) gives a bar that prints nothing.

:class:`Log` wraps the run's line printer so that a notice (a metric unavailable, not applicable)
is printed once however many models and parts report it.
"""

from __future__ import annotations

import sys
from typing import Callable

NON_TTY_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns its in-place redraws into whole lines (for logs that are not a TTY)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").replace("\x1b[A", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_tty(stream=None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def bar(total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0):
    """A tqdm bar of ``total`` ``unit`` s on stderr (see the module doc)."""
    from tqdm import tqdm
    if not enabled:
        return tqdm(total=total, disable=True)
    if is_tty():
        return tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", dynamic_ncols=True, file=sys.stderr)
    return tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", file=_Lines(sys.stderr), ncols=100,
                ascii=True, mininterval=NON_TTY_INTERVAL_S, maxinterval=NON_TTY_INTERVAL_S * 4)


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3.2 min"``, ``"1.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


NOTICE_WORDS = ("unavailable", "not applicable")


class Log:
    """``log(line)``: prints through ``printer``; a notice line already printed is not printed again."""

    def __init__(self, printer: Callable[[str], None] = print):
        self.printer = printer
        self.seen: set[str] = set()

    def __call__(self, line: str) -> None:
        if any(w in line for w in NOTICE_WORDS):
            key = line.split("] ", 1)[-1]
            if key in self.seen:
                return
            self.seen.add(key)
        if self.printer is print:  # above any progress bar on the terminal
            from tqdm import tqdm
            tqdm.write(line)
        else:
            self.printer(line)
