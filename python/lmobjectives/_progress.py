"""A tiny, dependency-free progress bar.

Used by corpus building, the CLI and the benchmarks. It renders a single line such as::

    tokenize: 42% |####      | 420/1000 sent [00:03<00:04, 130.2 sent/s]

rewritten in place with ``\\r`` at most ~10 times per second, and finishes with a newline on
:meth:`Progress.close`. When the total is unknown it shows the count, elapsed time and rate only.

Whether it draws is decided once, at construction:

* ``enabled=True`` / ``enabled=False`` force it on or off;
* ``enabled=None`` (the default) draws iff the environment variable ``LMOBJECTIVES_PROGRESS`` is
  ``1`` (force on) or, when that variable is unset, iff the output stream is a TTY.
  ``LMOBJECTIVES_PROGRESS=0`` disables every bar whose ``enabled`` is ``None``.

A disabled bar prints nothing at all.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress", "progress_enabled"]

_ENV = "LMOBJECTIVES_PROGRESS"
_MIN_INTERVAL = 0.1  # seconds between redraws
_BAR_WIDTH = 10


def progress_enabled(enabled: bool | None, file: TextIO | None = None) -> bool:
    """Resolve an ``enabled`` setting: ``None`` consults ``LMOBJECTIVES_PROGRESS``, then the TTY."""
    if enabled is not None:
        return bool(enabled)
    env = os.environ.get(_ENV, "").strip().lower()
    if env in {"1", "true", "yes", "on"}:
        return True
    if env in {"0", "false", "no", "off"}:
        return False
    stream = sys.stderr if file is None else file
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _format_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


class Progress:
    """A minimal progress bar; use as a context manager or call :meth:`close` yourself.

    Args:
        total: the expected number of units, or ``None`` when unknown.
        desc: a short label printed before the bar.
        unit: the unit name shown after the counts and in the rate.
        enabled: ``True``/``False`` to force; ``None`` to decide from ``LMOBJECTIVES_PROGRESS``
            and whether ``file`` is a TTY.
        file: the stream to draw on (default: ``sys.stderr`` at construction time).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        enabled: bool | None = None,
        file: TextIO | None = None,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total: must be >= 0 or None, got {total}")
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file: TextIO = sys.stderr if file is None else file
        self.enabled = progress_enabled(enabled, self.file)
        self.n = 0
        self.postfix = ""  # shown after the rate, e.g. "loss 3.21"
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._last_len = 0
        self._closed = False
        if self.enabled:
            self._draw(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units; redraws at most every 0.1 s."""
        self.n += n
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= _MIN_INTERVAL:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(time.monotonic())
            self._write("\n")

    def render(self, now: float | None = None) -> str:
        """The bar's current text (without ``\\r``); useful for tests and logs."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        rate_text = f"{rate:.1f} {self.unit}/s" + (f", {self.postfix}" if self.postfix else "")
        if self.total is None:
            return f"{self.desc}: {self.n} {self.unit} [{_format_time(elapsed)}, {rate_text}]"
        frac = min(1.0, self.n / self.total) if self.total > 0 else 1.0
        filled = int(frac * _BAR_WIDTH)
        bar = "#" * filled + " " * (_BAR_WIDTH - filled)
        remaining = (self.total - self.n) / rate if rate > 0 and self.n < self.total else 0.0
        return (
            f"{self.desc}: {int(frac * 100):3d}% |{bar}| {self.n}/{self.total} {self.unit} "
            f"[{_format_time(elapsed)}<{_format_time(remaining)}, {rate_text}]"
        )

    def _draw(self, now: float) -> None:
        self._last_draw = now
        text = self.render(now)
        pad = " " * max(0, self._last_len - len(text))
        self._last_len = len(text)
        self._write("\r" + text + pad)

    def _write(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError):  # closed or broken stream: stop drawing, never crash
            self.enabled = False

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return f"Progress(desc={self.desc!r}, n={self.n}, total={total}, enabled={self.enabled})"
