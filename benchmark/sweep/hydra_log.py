"""Hydra's own log lines of a multirun (its job listing, `#0 : cell=rnn ...`, one line per job with
absolute paths) go to `results/<sweep>/hydra/multirun.log`, not the terminal (conf/hydra/hydra_logging/sweep.yaml).

Hydra configures this logging before it makes the sweep folder, so the file and its folder are made at
the first line written. Where they cannot be made (an unwritable results folder), the lines go to stderr,
after one line saying why.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO, Any


class SweepLogFile(logging.FileHandler):
    """A FileHandler that opens (and makes the folder of) its file at the first line; stderr if it cannot."""

    def __init__(self, filename: str, mode: str = "a", encoding: str = "utf-8") -> None:
        super().__init__(filename, mode, encoding, delay=True)

    def _open(self) -> IO[Any]:
        try:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            return super()._open()
        except OSError as e:
            print(f"hydra's log lines go to stderr: cannot write {self.baseFilename} ({e.strerror})", file=sys.stderr)
            return sys.stderr

    def handleError(self, record: logging.LogRecord) -> None:
        """A write that fails (a full disk): one line saying so, its lines to stderr, no traceback per line."""
        e = sys.exc_info()[1]
        if not isinstance(e, OSError) or self.stream is sys.stderr:
            return super().handleError(record)
        print(f"hydra's log lines go to stderr: cannot write {self.baseFilename} ({e.strerror})", file=sys.stderr)
        self.stream = sys.stderr  # the file's stream is dropped: closing it would flush, and fail, again
        self.stream.write(self.format(record) + self.terminator)

    def close(self) -> None:
        if self.stream is sys.stderr:  # not ours to close
            self.stream = None  # type: ignore[assignment]
        super().close()
