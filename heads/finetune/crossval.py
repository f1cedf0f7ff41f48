"""``finetune --cv`` / ``--test-group``: one fine-tuning run per fold, then the scores over folds.

The folds are :func:`data.folds.make_folds`'s (the protocols and Val rules of ``train --cv``);
each fold is an ordinary :func:`heads.finetune.finetune` run on :meth:`data.folds.Fold.apply`'s
corpus, written to ``WORKDIR/finetuned/<name>/<fold>/`` (a finished fold with the same settings
is reused, so a killed study resumes). The summary, ``WORKDIR/finetuned/<name>/cv.json`` and
``cv.csv``, is :func:`heads.crossval.summarise`'s (mean ± std over folds and pooled confusions
per task and split) plus the auxiliary heads' numbers over folds
(:func:`heads.crossval.aux_over_folds`, the same as ``train --cv``'s: WER, CER, speaker
accuracy, the speaker probe, mean ± std over folds).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.folds import Fold, make_folds
from data.workdir import open_corpus
from heads import rundir
from heads.crossval import CV_FILE, aux_csv, aux_over_folds, summarise, summary_csv
from heads.finetune.config import (FINETUNED_DIR, FinetuneConfig, FinetuneResult, PhaseFn,
                                   ProgressFn, default_run_name)
from heads.finetune.run import finetune

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FinetuneCrossValidation:
    """The study's folder, each fold's run, and the summary written to ``cv.json``."""

    folder: Path
    folds: list[tuple[Fold, FinetuneResult]]
    summary: dict[str, Any]


def fold_record(fold: Fold) -> dict[str, Any]:
    """What a fold's run records of its fold (the clip list stays in cv.json's counts)."""
    return {"name": fold.name, "column": fold.column, "test_groups": list(fold.test_groups),
            "val_groups": list(fold.val_groups), "val_rule": fold.val_rule, "source": fold.source,
            "counts": fold.counts()}


def finetune_cross_validation(cfg: FinetuneConfig, protocol: str, *, val: str = "partner",
                              recipe: dict[str, Any] | None = None,
                              on_fold: Callable[[int, int, Fold], None] | None = None,
                              on_phase: PhaseFn | None = None, progress: ProgressFn | None = None
                              ) -> FinetuneCrossValidation:
    """One fine-tuning run per fold of ``protocol`` (``leave-one-out:speaker``,
    ``test-group:01F``, ...; :func:`data.folds.make_folds`), then the summary.

    Args:
        cfg: the runs' settings; ``run_name`` names the study's folder (default: the settings,
            the time and ``-cv``).
        protocol: the fold protocol.
        val: the Val rule of :class:`data.folds.ValRule`; ``none`` trains on every clip not
            held out and keeps each fold's last epoch (paper 004: "we trained on 9 speakers").
        recipe: recorded in every fold's run.
        on_fold: called before each fold with (index, count, fold).

    Raises:
        data.folds.FoldError: the protocol does not apply to this corpus.
        Everything :func:`heads.finetune.finetune` raises, for the first fold that fails.
    """
    cfg.check()
    corpus = open_corpus(cfg.workdir)
    folds = make_folds(corpus, protocol, val=val)
    name = cfg.run_name or f"{default_run_name(cfg)}-cv"
    folder = Path(cfg.workdir) / FINETUNED_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for i, fold in enumerate(folds):
        if on_fold is not None:
            on_fold(i, len(folds), fold)
        log.info("fold %d/%d %s: %s", i + 1, len(folds), fold.name, fold.counts())
        fold_cfg = dataclasses.replace(cfg, run_name=f"{name}/{rundir.safe_name(fold.name)}")
        record: dict[str, Any] = {"fold": fold_record(fold), "protocol": protocol}
        if recipe is not None:
            record["recipe"] = recipe
        results.append(finetune(fold_cfg, corpus=fold.apply(corpus), record=record,
                                on_phase=on_phase, progress=progress))
    summary = {"protocol": protocol, "val_rule": val, "run": name, "task": cfg.task,
               "base_model": cfg.model, "stage": "finetune",
               "aggregates": {"mean": "mean over folds of each fold's score",
                              "std": "standard deviation over folds (ddof=1)",
                              "pooled": "every fold's predictions together (summed confusions)"},
               **summarise(folds, results)}
    summary["aux"] = aux_over_folds([r.metrics for r in results], [f.name for f in folds])
    if recipe is not None:
        summary["recipe"] = recipe
    rundir.write_text(folder / "cv.csv", summary_csv(summary) + aux_csv(summary["aux"]))
    rundir.write_json(folder / CV_FILE, rundir.jsonable(summary))
    return FinetuneCrossValidation(folder, list(zip(folds, results)), summary)


__all__ = ["FinetuneCrossValidation", "finetune_cross_validation", "fold_record"]
