"""``finetune``: train an SSL backbone end to end with multitask heads, store its embeddings."""
from __future__ import annotations

import argparse
import logging
import os

from cli.common import (EXIT_CLIPS_FAILED, EXIT_OK, Progress, UsageError, add_ssl_storage,
                        add_workdir, say, ssl_storage)
from extract.devices import DEVICES

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune an SSL backbone with multitask heads, then store its embeddings",
        description="Seed 000's two stages on the workdir's corpus: heads on the frozen backbone "
                    "(AdamW defaults), then everything but the CNN feature encoder (AdamW, --lr, "
                    "cosine schedule after one warm-up epoch), early stopping on the Val headline. "
                    "Writes WORKDIR/finetuned/<run-name>/ (model/ from save_pretrained, heads.pt, "
                    "config.json, metrics.json, curves.json) atomically, then extracts the new "
                    "model's embeddings into the store as the set ssl:<run>/model (use it with "
                    "train, probe, export). Rerunning with the same --run-name reuses a finished "
                    "run and completes the extraction.")
    add_workdir(p)
    p.add_argument("--features", required=True, metavar="ssl:MODEL",
                   help="the base backbone: ssl:<hub id or save_pretrained folder>, e.g. "
                        "ssl:facebook/data2vec-audio-base")
    p.add_argument("--task", required=True, metavar="TASK[,TASK..]",
                   help="tasks trained together: avb-high, avb-two, avb-culture, avb-type, country, "
                        "exvo, regress:COL[,COL..], classify:COL")
    p.add_argument("--frozen-epochs", type=int, default=10, metavar="N",
                   help="stage 1 epochs: heads on the frozen backbone (0 skips; default 10)")
    p.add_argument("--epochs", type=int, default=10, metavar="N",
                   help="stage 2 epochs: the backbone trained too (0 skips; default 10)")
    p.add_argument("--lr", type=float, default=4e-5, help="stage 2 learning rate (default 4e-5)")
    p.add_argument("--head-lr", type=float, default=1e-3,
                   help="stage 1 learning rate of the heads (default 1e-3, AdamW's)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="clips per step (default 32)")
    p.add_argument("--patience", type=int, default=2, metavar="N",
                   help="epochs without a better Val headline before a stage stops (0: never; default 2)")
    p.add_argument("--warmup", type=float, default=1.0, metavar="EPOCHS",
                   help="stage 2 linear warm-up before the cosine decay (default 1 epoch)")
    p.add_argument("--layer", type=int,
                   help="hidden state the heads pool (default: the model's last hidden state)")
    p.add_argument("--weighting", default="uw", metavar="SPEC",
                   help="multitask weighting: uw (Kendall et al., default), equal, fixed:W1,.., "
                        "exvo, ruw, rruw, dwa, druw")
    p.add_argument("--loss", default="ccc", metavar="SPEC",
                   help="regression loss: ccc (default), mse, mae, plus TARGET=LOSS items")
    p.add_argument("--output", default="clamp", metavar="MODE",
                   help="regression output: clamp (default, seed 000's best), sigmoid, clamp-st, linear")
    p.add_argument("--label-smoothing", type=float, default=0.1,
                   help="cross-entropy label smoothing (default 0.1)")
    p.add_argument("--max-seconds", type=float, default=8.0, metavar="S",
                   help="training crops longer clips to a random window of S seconds (bounds "
                        "memory; Val sees whole clips; default 8)")
    p.add_argument("--train-feature-encoder", action="store_true",
                   help="also train the CNN feature encoder in stage 2 (frozen by default)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, slower")
    p.add_argument("--shared-head", action="store_true",
                   help="one shared hidden layer for all outputs (default: one per output)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train and extract (auto: CUDA when available; bfloat16 autocast there)")
    p.add_argument("--seed", type=int, default=0, help="seeds heads, batch order, crops (default 0)")
    p.add_argument("--run-name", help="folder under WORKDIR/finetuned (default: <base>-ft-<tasks>-<time>)")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 2)), metavar="N",
                   help="audio decoding threads")
    p.add_argument("--extract", action=argparse.BooleanOptionalAction, default=True,
                   help="store the fine-tuned model's embeddings in the workdir's store (default: on)")
    g = p.add_argument_group("extraction", "what --extract stores (as `extract` does)")
    add_ssl_storage(g)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    spec = args.features
    if not spec.startswith("ssl:") or not spec[4:].strip():
        raise UsageError(f"finetune trains an SSL backbone: --features must be ssl:<hub id or "
                         f"folder>, e.g. ssl:facebook/data2vec-audio-base; got {spec!r}")
    from data.tasks import TaskError, parse_tasks

    try:
        parse_tasks(args.task)  # before torch is imported: a typo fails in a moment
    except TaskError as exc:
        raise UsageError(str(exc)) from exc
    from heads.finetune import FinetuneConfig

    cfg = FinetuneConfig(
        workdir=args.workdir, model=spec[4:], task=args.task, run_name=args.run_name,
        layer=args.layer, frozen_epochs=args.frozen_epochs, epochs=args.epochs, lr=args.lr,
        head_lr=args.head_lr, batch_size=args.batch_size, patience=args.patience,
        warmup=args.warmup, weighting=args.weighting, loss=args.loss, output=args.output,
        label_smoothing=args.label_smoothing, shared_head=args.shared_head,
        max_seconds=args.max_seconds, freeze_feature_encoder=not args.train_feature_encoder,
        gradient_checkpointing=args.gradient_checkpointing, device=args.device, seed=args.seed,
        workers=args.workers)
    try:
        cfg.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return cfg


def _extract_options(args: argparse.Namespace):
    from extract.base import ExtractOptions

    return ExtractOptions(**ssl_storage(args), device=args.device, workers=args.workers)


class _Bars:
    """One progress bar per pass over clips (embeddings, each epoch, Val, extraction)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def start(self, desc: str, clips: int, audio_s: float) -> None:
        self.close()
        self.bar = Progress(clips, audio_s, desc, enabled=self.enabled and clips > 0)

    def __call__(self, clips: int, audio_s: float) -> None:
        if self.bar is not None:
            self.bar(clips, audio_s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    from data.corpus import CorpusError
    from extract.base import ExtractorUnavailable
    from extract.lock import WorkdirBusy
    from extract.store import StoreError
    from heads.finetune import finetune, store_embeddings

    cfg = _config(args)
    options = _extract_options(args) if args.extract else None
    bars = _Bars(not args.no_progress)
    try:
        try:
            result = finetune(cfg, on_phase=bars.start, progress=bars)
        finally:
            bars.close()
        _print_metrics(result)
        if options is None:
            say(f"not extracted (--no-extract); later: extract --features {result.spec} ...")
            return EXIT_OK
        try:
            s = store_embeddings(result.model_dir, cfg.workdir, options,
                                 on_start=lambda n, a: bars.start(f"store {result.spec}", n, a),
                                 progress=bars)
        finally:
            bars.close()
    except (ValueError, ExtractorUnavailable, FileNotFoundError, FileExistsError, CorpusError,
            WorkdirBusy, StoreError) as exc:
        raise UsageError(str(exc)) from exc
    say(f"{s.key}: {s.total} clips, {s.reused} reused, {s.computed} computed, {len(s.failed)} "
        f"failed, {s.audio_seconds:.1f} audio-s in {s.seconds:.1f} s ({s.audio_s_per_s:.1f} audio-s/s)")
    say(f"use it: train --workdir {cfg.workdir} --features {s.key} --task {cfg.task} ...")
    if s.failed:
        say(f"{len(s.failed)} clip(s) failed (recorded in the store; see `verify`):")
        for cid, reason in sorted(s.failed.items()):
            say(f"  {cid}: {reason}")
        return EXIT_CLIPS_FAILED
    return EXIT_OK


def _print_metrics(result) -> None:
    m = result.metrics
    if result.resumed:
        say(f"{result.run_dir}: finished before with these settings; reused")
    before = (m.get("stage1") or {}).get("val", {})
    for task, entry in m["tasks"].items():
        v = entry["val"]
        ci = v.get("ci") or [float("nan")] * 2
        was = f" (stage 1, frozen backbone: {before[task]:.4f})" if task in before else ""
        say(f"{task}: Val {v['metric']} = {v['score']:.4f} (95% CI {ci[0]:.4f} to {ci[1]:.4f}, "
            f"n={v.get('n')}){was}")
    if m.get("stage2_clips_per_s"):
        say(f"stage 2: {m['stage2_clips_per_s']:.1f} clips/s, {m['stage2_audio_s_per_s']:.1f} audio-s/s")
    if not result.resumed:
        say(f"fine-tuned model written to {result.run_dir}")
