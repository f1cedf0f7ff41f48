"""``finetune``: train an SSL backbone end to end with multitask heads, store its embeddings."""
from __future__ import annotations

import argparse
import logging
import os

from typing import Any

from cli.common import (EXIT_CLIPS_FAILED, EXIT_OK, Progress, UsageError, add_auxiliary_flags,
                        add_fold_flags, add_ssl_storage, add_workdir, fold_protocol, say,
                        ssl_storage)
from extract.devices import DEVICES

log = logging.getLogger(__name__)


# flag -> FinetuneConfig field, for the settings a recipe may also give (defaults None: a flag
# not given leaves the recipe's value, else FinetuneConfig's default)
_SETTINGS = ("task", "layer", "frozen_epochs", "epochs", "lr", "head_lr", "batch_size", "grad_accum",
             "patience", "warmup", "warmup_ratio", "schedule", "weight_decay", "weighting", "loss",
             "output", "label_smoothing", "head_hidden", "head_rnn", "frame_pooling", "optimizer",
             "max_seconds", "ctc", "adversary",
             "adversary_mode", "adversary_at", "seed")
_RUNTIME = ("device", "workers", "run_name")


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
                    "run and completes the extraction. Paper 004's system adds --ctc ALPHA "
                    "(characters from the Train transcripts) and --adversary speaker:BETA (gradient "
                    "reversal), --warmup-ratio, --schedule linear and --grad-accum; --cv / "
                    "--test-group run one fine-tuning per fold (WORKDIR/finetuned/<run-name>/<fold>/, "
                    "cv.json). --recipe NAME runs a recipe's [finetune] table (`recipes` lists them).")
    add_workdir(p)
    p.add_argument("--recipe", metavar="NAME",
                   help="run a reproduced end-to-end system: recipes/NAME.toml's [finetune] table "
                        "(e.g. ser-mtl-grl-1); flags given explicitly override it")
    p.add_argument("--features", metavar="ssl:MODEL",
                   help="the base backbone: ssl:<hub id or save_pretrained folder>, e.g. "
                        "ssl:facebook/data2vec-audio-base (required without --recipe)")
    p.add_argument("--task", metavar="TASK[,TASK..]",
                   help="tasks trained together: avb-high, avb-two, avb-culture, avb-type, country, "
                        "exvo, iemocap4, regress:COL[,COL..], classify:COL (required without --recipe)")
    p.add_argument("--frozen-epochs", type=int, metavar="N",
                   help="stage 1 epochs: heads on the frozen backbone (0 skips; default 10)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="stage 2 epochs: the backbone trained too (0 skips; default 10)")
    p.add_argument("--lr", type=float, help="stage 2 learning rate (default 4e-5)")
    p.add_argument("--head-lr", type=float,
                   help="stage 1 learning rate of the heads (default 1e-3, AdamW's)")
    p.add_argument("--weight-decay", type=float,
                   help="weight decay of backbone and heads (default 0.01, AdamW's; an L2 term "
                        "with --optimizer adam)")
    p.add_argument("--batch-size", type=int, metavar="N", help="clips per (micro-)batch (default 32)")
    p.add_argument("--grad-accum", type=int, metavar="K",
                   help="stage 2: micro-batches per optimiser step; the accumulated batch is "
                        "--batch-size x K clips (default 1)")
    p.add_argument("--patience", type=int, metavar="N",
                   help="epochs without a better Val headline before a stage stops (0: never; default 2)")
    p.add_argument("--warmup", type=float, metavar="EPOCHS",
                   help="stage 2 linear warm-up before the decay (default 1 epoch)")
    p.add_argument("--warmup-ratio", type=float, metavar="R",
                   help="stage 2 linear warm-up over this fraction of its optimiser steps instead "
                        "of --warmup epochs (paper 004: 0.1)")
    p.add_argument("--schedule", metavar="DECAY",
                   help="stage 2 decay after the warm-up: cosine (default, seed 000), linear (to 0 "
                        "at the last step), constant")
    p.add_argument("--layer", type=int,
                   help="hidden state the heads pool (default: the model's last hidden state)")
    p.add_argument("--weighting", metavar="SPEC",
                   help="multitask weighting: uw (Kendall et al., default), equal, fixed:W1,.., "
                        "exvo, ruw, rruw, dwa, druw")
    p.add_argument("--loss", metavar="SPEC",
                   help="regression loss: ccc (default), mse, mae, plus TARGET=LOSS items")
    p.add_argument("--output", metavar="MODE",
                   help="regression output: clamp (default, seed 000's best), sigmoid, clamp-st, linear")
    p.add_argument("--label-smoothing", type=float,
                   help="cross-entropy label smoothing (default 0.1)")
    p.add_argument("--head-hidden", type=int, metavar="N",
                   help="hidden width of each task head (default 256; 0: one linear layer per output)")
    p.add_argument("--head-rnn", metavar="lstm:LxH",
                   help="a sequence head on the layer's frames (paper 002: lstm:2x512): an LSTM of L "
                        "layers and hidden size H over each clip's true frames, one linear layer per "
                        "frame to the outputs, then --frame-pooling; needs --head-hidden 0 and "
                        "--frozen-epochs 0 (default: heads on the frames' masked mean)")
    p.add_argument("--frame-pooling", metavar="POOL",
                   help="the sequence head's pooling over true frames: first, last (each clip's own "
                        "last true frame; paper 002's best), max, mean (default mean)")
    p.add_argument("--optimizer", metavar="NAME",
                   help="stage 2 optimiser: adamw (default; decoupled weight decay) or adam "
                        "(torch.optim.Adam, the decay an L2 term: paper 002)")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="training crops longer clips to a random window of S seconds (bounds "
                        "memory; Val sees whole clips; a cropped clip leaves the CTC term; default 8; 0: "
                        "whole clips)")
    g = add_auxiliary_flags(
        p, title="paper 004's auxiliary heads",
        description="CTC on the frame outputs and a speaker classifier behind gradient reversal "
                    "on the pooled output: L = L_tasks + alpha L_CTC + beta L_spk",
        adversary_on="the pooled output", adversary_reports="",
        ctc_on="the backbone's frame outputs",
        ctc_needs="vocabulary from the Train transcripts (column text), stored as vocab.json")
    g.add_argument("--adversary-at", metavar="WHERE",
                   help="where BETA scales: loss (default, the paper's joint loss) or grl (the "
                        "reversal layer; the classifier then learns at full rate)")
    add_fold_flags(p, description="one fine-tuning run per fold (WORKDIR/finetuned/<run-name>/"
                   "<fold>/), then the scores over folds (mean ± std, pooled) in cv.json / cv.csv; "
                   "the fold models are not extracted into the store unless --extract is given",
                   cv_val_default=None,
                   cv_val_none="none: train on every clip not held out, keep the last epoch")
    p.add_argument("--train-feature-encoder", action="store_true", default=None,
                   help="also train the feature encoder in stage 2 (frozen by default): the CNN "
                        "feature encoder of wav2vec2-style models, Whisper's conv stem, w2v-BERT's "
                        "feature projection")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass: less memory, slower")
    p.add_argument("--shared-head", action="store_true", default=None,
                   help="one shared hidden layer for all outputs (default: one per output)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train and extract (auto: CUDA when available; bfloat16 autocast there)")
    p.add_argument("--seed", type=int, help="seeds heads, batch order, crops (default 0)")
    p.add_argument("--run-name", help="folder under WORKDIR/finetuned (default: <base>-ft-<tasks>-<time>)")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 2)), metavar="N",
                   help="audio decoding threads")
    p.add_argument("--extract", action=argparse.BooleanOptionalAction, default=None,
                   help="store the fine-tuned model's embeddings in the workdir's store (default: "
                        "on for one run, off for --cv / --test-group)")
    g = p.add_argument_group("extraction", "what --extract stores (as `extract` does); "
                             "--whisper-input also sets the input fine-tuning trains on")
    add_ssl_storage(g)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None: not given)."""
    out = {k: getattr(args, k) for k in _SETTINGS if getattr(args, k, None) is not None}
    if getattr(args, "train_feature_encoder", None):
        out["freeze_feature_encoder"] = False
    for k in ("gradient_checkpointing", "shared_head"):
        if getattr(args, k, None):
            out[k] = True
    if getattr(args, "whisper_input", "padded") != "padded":  # trained and stored with that input
        out["whisper_input"] = args.whisper_input
    return out


def _config(args: argparse.Namespace):
    """(FinetuneConfig, recipe or None, fold protocol or None, Val rule)."""
    spec = args.features
    if spec is not None and (not spec.startswith("ssl:") or not spec[4:].strip()):
        raise UsageError(f"finetune trains an SSL backbone: --features must be ssl:<hub id or "
                         f"folder>, e.g. ssl:facebook/data2vec-audio-base; got {spec!r}")
    from data.tasks import TaskError, parse_tasks

    if args.task is not None:
        try:
            parse_tasks(args.task)  # before torch is imported: a typo fails in a moment
        except TaskError as exc:
            raise UsageError(str(exc)) from exc
    protocol = fold_protocol(args)
    flags = _flags(args)
    runtime = {"device": args.device, "workers": args.workers}
    if args.recipe:
        from heads.recipes import RecipeError, load_recipe

        try:
            recipe = load_recipe(args.recipe)
            if spec is not None:
                flags["features"] = spec
            cfg = recipe.finetune_config(args.workdir, run_name=args.run_name, **flags, **runtime)
            protocol, val = recipe.fold_protocol(cv=args.cv, test_group=args.test_group,
                                                 cv_val=args.cv_val)
        except RecipeError as exc:
            raise UsageError(str(exc)) from exc
        return cfg, recipe, protocol, val
    if spec is None or args.task is None:
        raise UsageError("finetune needs --features ssl:MODEL and --task (or --recipe NAME)")
    from heads.finetune import FinetuneConfig

    try:
        cfg = FinetuneConfig(workdir=args.workdir, model=spec[4:], run_name=args.run_name,
                             **flags, **runtime)
        cfg.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return cfg, None, protocol, args.cv_val or "partner"


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
    from data.folds import FoldError
    from extract.base import ExtractorUnavailable
    from extract.lock import WorkdirBusy
    from extract.store import StoreError
    from heads.finetune import finetune, store_embeddings

    cfg, recipe, protocol, val = _config(args)
    extract = args.extract if args.extract is not None else protocol is None
    options = _extract_options(args) if extract else None
    bars = _Bars(not args.no_progress)
    record = None
    if recipe is not None:
        use = recipe.reuse(cfg.task)
        record = recipe.run_record(use)
    try:
        if protocol is not None:
            from heads.finetune import finetune_cross_validation

            try:
                study = finetune_cross_validation(
                    cfg, protocol, val=val, recipe=record, on_phase=bars.start, progress=bars,
                    on_fold=lambda i, n, f: say(f"fold {i + 1}/{n} {f.name}: " + ", ".join(
                        f"{k} {v}" for k, v in f.counts().items())))
            finally:
                bars.close()
            _print_cv(study.summary, study.folder)
            _print_published(recipe, record)
            results = [r for _, r in study.folds]
        else:
            try:
                result = finetune(cfg, on_phase=bars.start, progress=bars,
                                  record=None if record is None else {"recipe": record})
            finally:
                bars.close()
            _print_metrics(result)
            _print_published(recipe, record)
            results = [result]
        if options is None:
            specs = " ".join(r.spec for r in results)
            say(f"not extracted (--no-extract{'' if args.extract is False else ', the default with folds'}); "
                f"later: extract --workdir {cfg.workdir} --features {specs} ...")
            return EXIT_OK
        failed = 0
        for r in results:
            try:
                s = store_embeddings(r.model_dir, cfg.workdir, options,
                                     on_start=lambda n, a, r=r: bars.start(f"store {r.spec}", n, a),
                                     progress=bars)
            finally:
                bars.close()
            failed += _print_stored(s, cfg)
    except (ValueError, ExtractorUnavailable, FileNotFoundError, FileExistsError, CorpusError,
            WorkdirBusy, StoreError, FoldError) as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_CLIPS_FAILED if failed else EXIT_OK


def _print_stored(s, cfg) -> int:
    say(f"{s.key}: {s.total} clips, {s.reused} reused, {s.computed} computed, {len(s.failed)} "
        f"failed, {s.audio_seconds:.1f} audio-s in {s.seconds:.1f} s ({s.audio_s_per_s:.1f} audio-s/s)")
    say(f"use it: train --workdir {cfg.workdir} --features {s.key} --task {cfg.task} ...")
    if s.failed:
        say(f"{len(s.failed)} clip(s) failed (recorded in the store; see `verify`):")
        for cid, reason in sorted(s.failed.items()):
            say(f"  {cid}: {reason}")
    return len(s.failed)


def _print_published(recipe, record) -> None:
    if recipe is None:
        return
    say(f"recipe {recipe.name}: {recipe.citation()}, {recipe.table}")
    for pub in recipe.reuse(record["run_task"]).published:
        say(f"  published {pub.text()}")
    if not record["same_task"]:
        say(f"  published numbers not shown: they are for {recipe.task}")


def _print_cv(summary: dict, folder) -> None:
    from cli.cmd_train import print_cv

    print_cv(summary, folder)  # the auxiliary heads over folds too


def _print_metrics(result) -> None:
    m = result.metrics
    if result.resumed:
        say(f"{result.run_dir}: finished before with these settings; reused")
    before = (m.get("stage1") or {}).get("val", {})
    for task, entry in m["tasks"].items():
        for split in ("val", "test"):
            v = entry.get(split)
            if v is None:
                continue
            ci = v.get("ci") or [float("nan")] * 2
            was = f" (stage 1, frozen backbone: {before[task]:.4f})" if split == "val" and task in before else ""
            say(f"{task}: {split.capitalize()} {v['metric']} = {v['score']:.4f} (95% CI {ci[0]:.4f} "
                f"to {ci[1]:.4f}, n={v.get('n')}){was}")
            for tg, t in v.get("targets", {}).items():
                if "wa" in t:
                    say(f"  {tg}: WA {t['wa']:.4f}, UA {t['uar']:.4f}, macro-F1 {t['macro_f1']:.4f}")
    from cli.cmd_train import auxiliary_lines

    for line in auxiliary_lines(m):  # the same lines as train's
        say(line)
    if m.get("stage2_clips_per_s"):
        say(f"stage 2: {m['stage2_clips_per_s']:.1f} clips/s, {m['stage2_audio_s_per_s']:.1f} audio-s/s")
    if not result.resumed:
        say(f"fine-tuned model written to {result.run_dir}")
