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


def add_ssl_storage(p: argparse.ArgumentParser | Any) -> None:
    """The flags that say what an SSL extraction stores (``extract`` and ``finetune``)."""
    p.add_argument("--layers", default="all", metavar="all|I[,J..]",
                   help="SSL hidden states to keep: all (L+1; 0 = input of layer 1) or indices "
                        "like 12 or 6,12")
    p.add_argument("--poolings", default="mean,last", metavar="P[,P..]",
                   help="SSL poolings over each clip's true frames: mean,last,first,max,std")
    p.add_argument("--frames-layers", default="", metavar="I[,J..]",
                   help="SSL layers whose frame sequences are stored too (for sequence heads)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="storage dtype of SSL arrays")
    p.add_argument("--batch-seconds", type=float, default=64.0, metavar="S",
                   help="upper bound of audio seconds per SSL batch (padding included)")
    p.add_argument("--whisper-input", default="padded", choices=["padded", "trimmed"],
                   help="Whisper checkpoints only: padded (default: the model's own 30 s window) or "
                        "trimmed (input cut to each clip's frames; faster, a different "
                        "representation stored under its own key)")


def ssl_storage(args: argparse.Namespace) -> dict[str, Any]:
    """``ExtractOptions`` fields from :func:`add_ssl_storage`'s flags, checked."""
    if args.batch_seconds <= 0:
        raise UsageError(f"--batch-seconds must be positive, got {args.batch_seconds}")
    return {"layers": parse_int_list(args.layers, "--layers"),
            "poolings": tuple(p.strip() for p in args.poolings.split(",") if p.strip()),
            "frames_layers": parse_int_list(args.frames_layers or None, "--frames-layers") or (),
            "dtype": args.dtype, "batch_seconds": args.batch_seconds,
            "whisper_input": getattr(args, "whisper_input", "padded")}


def step_progress(desc: str, unit: str):
    """A ``progress(done, total, what)`` callback drawing one tqdm bar on a terminal (nothing
    when stderr is not one), for library functions that report steps rather than clips."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int, what: str) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                                disable=not sys.stderr.isatty(), dynamic_ncols=True)
        bar = state["bar"]
        bar.set_postfix_str(what, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
