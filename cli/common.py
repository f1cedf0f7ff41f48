"""What every sub-command shares: exit codes, logging set-up, progress bars, errors."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2        # usage or configuration error: nothing ran
EXIT_CLIPS_FAILED = 3  # finished, but some clips failed (listed; everything else is stored)
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line or configuration error: printed without a traceback, exit code 2."""


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(level=max(logging.DEBUG, level),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("matplotlib", "h5py", "urllib3", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say(*parts: Any) -> None:
    """User-facing output of the command line (the only place that prints)."""
    print(*parts, flush=True)


def add_workdir(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--workdir", required=required, metavar="DIR",
                   help="working directory: holds the feature store (features.h5), runs/ and reports")


class Progress:
    """A tqdm bar counting clips, with audio seconds per second and ETA in the postfix."""

    def __init__(self, total: int, total_audio_s: float, desc: str, *, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.total_audio_s = total_audio_s
        self.audio_s = 0.0
        self.t0 = time.perf_counter()
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="clip", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                        mininterval=0.2 if tty else 15.0)

    def __call__(self, clips: int, audio_s: float) -> None:
        self.audio_s += audio_s
        el = max(1e-9, time.perf_counter() - self.t0)
        rate = self.audio_s / el
        self.bar.set_postfix_str(f"{rate:,.1f} audio-s/s", refresh=False)
        self.bar.update(clips)

    def close(self) -> None:
        self.bar.close()


def parse_int_list(text: str | None, what: str) -> tuple[int, ...] | None:
    """``all`` -> None, ``12`` -> (12,), ``6,12`` -> (6, 12)."""
    if text is None or text == "all":
        return None
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"{what} must be 'all' or integers separated by commas, got {text!r}") from None
