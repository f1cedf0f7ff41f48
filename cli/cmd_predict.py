"""``predict``: score a corpus or loose audio files with a run's saved model."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from cli.common import EXIT_CLIPS_FAILED, EXIT_OK, Progress, UsageError, add_corpus_flags, say
from extract.devices import DEVICES

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="score new audio with a trained run's saved model",
        description="Computes exactly the features the run was trained on (the extractor "
                    "configuration in RUN/model.json; clips whose audio is already in the run's "
                    "workdir store are read from there, new audio goes into the prediction "
                    "store WORKDIR/predict/, never into the corpus's own store) and writes one "
                    "row per clip: id, file, start, end, the predicted class name or value of "
                    "every label column of every task, and p_<column>_<class> probabilities "
                    "for classifiers that give them (logreg, xgb, torch heads; not ridge or "
                    "svc). Every head works: classical, torch nets on vectors and on frame "
                    "sequences (lstm, CNNs on log-mel). Exit 3 when some clips could not be "
                    "scored (listed).")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="the run folder, WORKDIR/runs/<run-name> (written by `train`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", metavar="ROOT", help="a corpus folder to score (with --layout)")
    src.add_argument("--audio", nargs="+", metavar="FILE", help="audio files to score")
    add_corpus_flags(p, layout_required=False)  # of --corpus, as for extract
    p.add_argument("--split", metavar="SPLIT",
                   help="only the clips of this split of --corpus (Train, Val, Test)")
    p.add_argument("--out", default="predictions.csv", metavar="FILE",
                   help="output CSV (default: predictions.csv in the current folder)")
    p.add_argument("--store", metavar="DIR",
                   help="prediction store for audio the run's workdir lacks (default: "
                        "WORKDIR/predict, or RUN_DIR/predict for a run kept outside a workdir)")
    p.add_argument("--device", default="auto", choices=list(DEVICES),
                   help="where SSL models and torch heads run (auto: CUDA when available)")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 2), metavar="N",
                   help="processes for openSMILE / log-mel and audio decoding (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _corpus(args: argparse.Namespace):
    from data.corpora import read_corpus
    from data.corpus import CorpusError
    from heads.predict import PredictError, audio_corpus, default_store_dir

    if args.audio:
        for flag in ("layout", "labels", "table", "column", "split"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} applies to --corpus, not to --audio")
        try:
            return audio_corpus(args.audio), None
        except PredictError as exc:
            raise UsageError(str(exc)) from exc
    if not args.layout:
        raise UsageError("--corpus needs --layout (avb, exvo, csv, iemocap, audformat, hf), as "
                         "for extract")
    if not Path(args.corpus).is_dir():
        raise UsageError(f"--corpus {args.corpus} is not a folder")
    try:
        # hf: the audio bytes are written out next to the prediction store
        corpus = read_corpus(args.corpus, args.layout, labels=args.labels, table=args.table,
                             column=args.column,
                             workdir=args.store or default_store_dir(Path(args.run)))
        ids = corpus.split_ids(args.split) if args.split else None
    except (CorpusError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if ids is not None and not ids:
        raise UsageError(f"--split {args.split}: no clip of {args.corpus} is in that split")
    return corpus, ids


def run(args: argparse.Namespace) -> int:
    from extract.lock import WorkdirBusy
    from extract.store import StoreError
    from heads.predict import PredictError, predict_clips
    from heads.rundir import write_text
    from heads.saved_model import SavedModelError

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out must end in .csv, got {out.name!r}")
    if not out.absolute().parent.is_dir():
        raise UsageError(f"the folder of --out {out} does not exist; create it first "
                         f"(mkdir -p {out.absolute().parent}) or choose another path")
    corpus, ids = _corpus(args)
    bar: Progress | None = None

    def on_start(spec: str, n: int, audio_s: float) -> None:
        nonlocal bar
        bar = Progress(n, audio_s, spec, enabled=not args.no_progress and n > 0)

    def progress(n: int, audio_s: float) -> None:
        if bar is not None:
            bar(n, audio_s)

    def on_end() -> None:
        if bar is not None:
            bar.close()

    try:
        result = predict_clips(args.run, corpus, ids=ids, store_dir=args.store, device=args.device,
                               workers=args.workers, progress=progress, on_start=on_start,
                               on_end=on_end)
    except (SavedModelError, PredictError, WorkdirBusy, StoreError) as exc:
        raise UsageError(str(exc)) from exc
    write_text(out, result.table.to_csv(index=False))
    say(f"wrote {out}: {len(result.table)} clip(s) scored by {args.run} "
        f"({result.reused} read from the run's workdir store, {result.stored} already in the "
        f"prediction store, {result.computed} extracted into {result.store_dir})")
    if result.failed:
        say(f"{len(result.failed)} clip(s) not scored:")
        for cid, reason in sorted(result.failed.items()):
            say(f"  {cid}: {reason}")
        return EXIT_CLIPS_FAILED
    return EXIT_OK
