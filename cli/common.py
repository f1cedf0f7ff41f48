"""What every sub-command shares: exit codes, logging set-up, progress bars, errors."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2        # usage or configuration error: nothing ran
EXIT_CLIPS_FAILED = 3  # finished, but some clips failed (listed; everything else is stored)
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line or configuration error: printed without a traceback, exit code 2."""


PROGRESS_LINE_INTERVAL_S = 15.0
"""Off a terminal (a log file, a pipe), progress is a plain log line at most this often."""

QUIET_LIBRARY_ENV = {
    # transformers' and huggingface_hub's own tqdm bars ("Loading weights", "Writing model
    # shards", downloads) would interleave with ours; their advisory warnings go too
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_libraries(verbosity: int) -> None:
    """Silence the bars and chatter of transformers / huggingface_hub (before they are
    imported; a variable the user set is kept). At -vv (debug) they stay as they are."""
    if verbosity >= 2:
        return
    for name, value in QUIET_LIBRARY_ENV.items():
        os.environ.setdefault(name, value)


class BarAwareHandler(logging.StreamHandler):
    """Writes log lines so that they never run into a progress bar.

    Every line goes through ``tqdm.write``, which clears the live bars of the terminal, writes
    the line and redraws them. A record that carries ``extra={"progress": {...}}`` (library
    code reporting steps: ``key``, ``done``, ``total``, ``unit``) moves a bar on a terminal
    instead of becoming a line; off a terminal it becomes a line at most every
    :data:`PROGRESS_LINE_INTERVAL_S` seconds and when it is done.
    """

    def __init__(self, stream: Any = None, *, tty: bool | None = None,
                 show_every_step: bool = False) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.tty = self.stream.isatty() if tty is None else tty
        self.show_every_step = show_every_step
        self.bars: dict[str, Any] = {}
        self.last_line: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            progress = getattr(record, "progress", None)
            if isinstance(progress, dict) and not self.show_every_step:
                self._progress(record, progress)
                return
            write_line(self.format(record), self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def _progress(self, record: logging.LogRecord, progress: dict[str, Any]) -> None:
        key = str(progress.get("key", record.name))
        done, total = int(progress.get("done", 0)), progress.get("total")
        finished = bool(progress.get("finished")) or (total is not None and done >= int(total))
        if self.tty:
            from tqdm import tqdm

            bar = self.bars.get(key)
            if bar is None:
                bar = self.bars[key] = tqdm(total=total, desc=key, unit=progress.get("unit", "it"),
                                            file=self.stream, dynamic_ncols=True, leave=False)
            bar.update(done - bar.n)
            if finished:
                bar.close()
                del self.bars[key]
            return
        now = time.monotonic()
        first = key not in self.last_line
        if finished or first or now - self.last_line[key] >= PROGRESS_LINE_INTERVAL_S:
            self.last_line[key] = now
            write_line(self.format(record), self.stream)
        if finished:
            self.last_line.pop(key, None)


def write_line(text: str, stream: Any = None) -> None:
    """One line on ``stream`` (stderr by default), clearing and redrawing live bars around it."""
    from tqdm import tqdm

    tqdm.write(text, file=stream if stream is not None else sys.stderr)


def setup_logging(verbosity: int) -> None:
    """Log lines on stderr (``-q`` 0: warnings, default 1: info, ``-vv`` 2: debug), written
    around progress bars (:class:`BarAwareHandler`); Python warnings become log lines."""
    level = max(logging.DEBUG, logging.WARNING - 10 * verbosity)
    handler = BarAwareHandler(sys.stderr, show_every_step=verbosity >= 2)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, BarAwareHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    for noisy in ("matplotlib", "h5py", "urllib3", "filelock", "PIL", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say(*parts: Any) -> None:
    """User-facing output of the command line (the only place that prints); written around
    live progress bars so that neither breaks the other."""
    from tqdm import tqdm

    tqdm.write(" ".join(str(p) for p in parts), file=sys.stdout)
    sys.stdout.flush()


def add_workdir(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--workdir", required=required, metavar="DIR",
                   help="working directory: holds the feature store (features/), runs/ and reports")


class Progress:
    """Progress of clips, with audio seconds per second and the ETA.

    On a terminal: a tqdm bar (log lines are written around it by :class:`BarAwareHandler`).
    Off a terminal: no carriage-return redraws, a plain log line at most every
    :data:`PROGRESS_LINE_INTERVAL_S` seconds and one when it closes.
    """

    def __init__(self, total: int, total_audio_s: float, desc: str, *, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = int(total), desc, enabled
        self.total_audio_s = total_audio_s
        self.audio_s = 0.0
        self.done = 0
        self.t0 = time.perf_counter()
        self.last_line = self.t0
        self.tty = sys.stderr.isatty()
        self.bar = None
        if enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1, mininterval=0.2)

    def __call__(self, clips: int, audio_s: float) -> None:
        self.audio_s += audio_s
        self.done += clips
        now = time.perf_counter()
        rate = self.audio_s / max(1e-9, now - self.t0)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate:,.1f} audio-s/s", refresh=False)
            self.bar.update(clips)
        elif self.enabled and now - self.last_line >= PROGRESS_LINE_INTERVAL_S:
            self.last_line = now
            self._line(now, rate)

    def _line(self, now: float, rate: float) -> None:
        el = now - self.t0
        left = (self.total_audio_s - self.audio_s) / rate if rate > 0 else float("nan")
        eta = f", ETA {left:,.0f} s" if self.done < self.total and left == left else ""
        logging.getLogger("cli.progress").info(
            "%s: %d/%d clips in %.1f s, %.1f audio-s/s%s", self.desc, self.done, self.total,
            el, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            now = time.perf_counter()
            self._line(now, self.audio_s / max(1e-9, now - self.t0))


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


def add_fold_flags(p: argparse.ArgumentParser, *, description: str, cv_val_default: str | None,
                   cv_val_none: str = "") -> None:
    """The cross-validation flags ``--cv`` / ``--test-group`` / ``--cv-val`` (``train`` and
    ``finetune``), in their own group.

    Args:
        description: the group's text: where the stage writes each fold and the scores.
        cv_val_default: ``--cv-val``'s default (``finetune``: None, so that a recipe's
            ``cv_val`` applies when the flag is not given).
        cv_val_none: what ``none`` means for the stage, appended to ``--cv-val``'s help.
    """
    g = p.add_argument_group("cross-validation", description)
    g.add_argument("--cv", metavar="PROTOCOL",
                   help="leave-one-out:COLUMN (IEMOCAP: leave-one-out:session, 5 folds, or "
                        "leave-one-out:speaker, 10), test-group:[COLUMN=]VALUE, emobox:FOLDER")
    g.add_argument("--test-group", metavar="VALUE",
                   help="one fold holding out one speaker (or COLUMN=VALUE): --cv test-group:VALUE "
                        "(paper 004: --test-group 01F)")
    g.add_argument("--cv-val", default=cv_val_default, metavar="RULE",
                   help="Val of each fold: partner (default: the held-out speaker's session "
                        "partner; the next session when the whole session is held out), "
                        "next-session, next-group, none" + (f" ({cv_val_none})" if cv_val_none else ""))


def fold_protocol(args: argparse.Namespace) -> str | None:
    """The fold protocol of :func:`add_fold_flags`' ``--cv`` / ``--test-group`` (one of
    them), or None for one plain run.

    Raises:
        UsageError: both are given.
    """
    cv, group = getattr(args, "cv", None), getattr(args, "test_group", None)
    if cv and group:
        raise UsageError("give --cv PROTOCOL or --test-group VALUE, not both "
                         f"(--test-group {group} is --cv test-group:{group})")
    return cv or (f"test-group:{group}" if group else None)


def add_auxiliary_flags(p: argparse.ArgumentParser, *, title: str, description: str,
                        adversary_on: str, adversary_reports: str, ctc_on: str, ctc_needs: str
                        ) -> Any:
    """Paper 004's auxiliary heads, ``--adversary`` / ``--adversary-mode`` / ``--ctc``
    (``train`` and ``finetune``; none by default), in their own group, which is returned.

    Args:
        title, description: the group's title and text.
        adversary_on: what the speaker classifier reads (``the pooled output``).
        adversary_reports: what the stage reports beside the speaker accuracy ("" for none).
        ctc_on: what the CTC head reads (``the net's frames``).
        ctc_needs: what the CTC head needs or writes in the stage.
    """
    g = p.add_argument_group(title, description)
    g.add_argument("--adversary", metavar="COLUMN:BETA",
                   help=f"a classifier of COLUMN (speaker: the clips' speaker) on {adversary_on}, "
                        f"its loss weighted BETA (paper 004: speaker:0.1, speaker:1); reports "
                        f"speaker accuracy{adversary_reports}")
    g.add_argument("--adversary-mode", metavar="MODE",
                   help="reverse (default: gradient reversal) or forward (no reversal: paper "
                        "004's ablation)")
    g.add_argument("--ctc", type=float, metavar="ALPHA",
                   help=f"a character CTC head on {ctc_on}, its loss weighted ALPHA (paper 004: "
                        f"0.1); {ctc_needs}; reports WER / CER")
    return g


def add_corpus_flags(p: argparse.ArgumentParser, *, layout_required: bool) -> None:
    """How a corpus is read, ``--layout`` / ``--labels`` / ``--table`` / ``--column`` (``extract``
    and ``predict``, which reads a corpus as ``extract`` does)."""
    from data.corpora import LAYOUTS

    p.add_argument("--layout", required=layout_required, choices=sorted(LAYOUTS),
                   help="corpus layout: avb (A-VB 2022), exvo (ExVo 2022 data_info.csv), csv (any "
                        "corpus; optional start/end columns make segments), iemocap "
                        "(IEMOCAP_full_release as distributed), audformat (a db.yaml database "
                        "folder), hf (a `datasets` folder written by save_to_disk)")
    p.add_argument("--labels", metavar="CSV",
                   help="label table (csv layout: the CSV with a `file` column; default ROOT/labels.csv)")
    p.add_argument("--table", metavar="NAME[,NAME]",
                   help="audformat: the filewise/segmented table(s) holding the labels (default: all)")
    p.add_argument("--column", metavar="COL[,COL]",
                   help="audformat, hf: the label column(s) to read (default: all)")
