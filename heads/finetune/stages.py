"""The two training stages of seed 000: heads on the frozen backbone, then everything.

Stage 2 also trains paper 004's auxiliary heads (:mod:`heads.finetune.auxiliary`: CTC on the
frames, the speaker adversary on the pooled output) and steps the optimiser after
``grad_accum`` micro-batches under the schedule of :mod:`heads.finetune.schedule`. Stage 1
trains the task heads only (frozen embeddings hold no frames for CTC). Without Val clips
(``--cv-val none``) no epoch is selected: each stage keeps its last epoch.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from data.tasks import Task
from extract.base import SAMPLE_RATE
from heads.finetune.auxiliary import AuxHeads, AuxTargets, aux_losses, aux_predict
from heads.finetune.backbone import Backbone, FinetuneHeads
from heads.finetune.batches import ClipAudio, normalise_clip, train_plan
from heads.finetune.config import MAX_EVAL_CLIPS, FinetuneConfig, PhaseFn, ProgressFn, write_json
from heads.finetune.schedule import (accumulation_groups, lr_multiplier, micro_weights,
                                     steps_per_epoch, warmup_steps_of)
from heads.dataset import Dataset
from heads.nets import length_mask, masked_mean
from heads.training.outputs import (Labels, Output, output_losses, selection_score, to_label_space, val_scores)

log = logging.getLogger(__name__)


@dataclass
class Run:
    """State shared by the two stages."""

    cfg: FinetuneConfig
    tasks: list[Task]
    ds: Dataset
    outputs: list[Output]
    labels: Labels
    class_weights: dict[str, torch.Tensor | None]
    train_rows: np.ndarray
    val_rows: np.ndarray
    audio: ClipAudio
    backbone: Backbone
    heads: FinetuneHeads
    weighting: nn.Module
    device: torch.device
    curves: dict[str, Any]
    tmp_dir: Path
    on_phase: PhaseFn | None
    progress: ProgressFn | None
    durations: np.ndarray  # seconds per row of ds
    aux: AuxHeads | None = None
    aux_targets: AuxTargets | None = None
    test_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def phase(self, desc: str, rows: np.ndarray) -> None:
        if self.on_phase:
            self.on_phase(desc, len(rows), float(self.durations[rows].sum()))

    def tick(self, clips: int, audio_s: float) -> None:
        if self.progress:
            self.progress(clips, audio_s)

    def waves(self, rows: np.ndarray) -> list[np.ndarray | None]:
        """Normalised whole clips of ``rows`` (None: failed to decode)."""
        row_chunks = [rows[s:s + MAX_EVAL_CLIPS] for s in range(0, len(rows), MAX_EVAL_CLIPS)]
        out: list[np.ndarray | None] = []
        decoded = self.audio.batches([[self.ds.ids[i] for i in c] for c in row_chunks])
        for chunk, waves in zip(row_chunks, decoded):
            for x, r in zip(waves, chunk):
                out.append(None if x is None else normalise_clip(x, self.backbone.do_normalize,
                                                              self.backbone.min_samples))
        return out

    def encode_rows(self, rows: np.ndarray, desc: str) -> tuple[torch.Tensor, np.ndarray, list]:
        """Eval-mode embeddings of ``rows`` -> ``((m, H), the m rows that decoded, the auxiliary
        heads' predictions of those rows (:func:`aux_predict`; ``[]`` without the heads))``."""
        self.phase(desc, rows)
        if len(rows) == 0:
            width = self.backbone.model.config.hidden_size
            return torch.zeros(0, width, device=self.device), rows, []
        waves = self.waves(rows)
        keep = np.array([w is not None for w in waves], dtype=bool)
        if not keep.all():
            bad = rows[~keep]
            self.tick(len(bad), float(self.durations[bad].sum()))
        good_rows = rows[keep]
        per_batch = None
        if self.aux is not None and self.aux_targets is not None:
            aux, targets = self.aux, self.aux_targets
            per_batch = lambda h, frames, pooled: aux_predict(aux, targets, h, frames, pooled)
        if self.heads.sequence:  # the task heads read the frames: their outputs per clip too
            per_batch = sequence_predict(self.heads, per_batch)
        if not keep.any():
            return torch.zeros(0, self.backbone.model.config.hidden_size, device=self.device), good_rows, []
        was = self.aux.training if self.aux is not None else False
        heads_were = self.heads.training
        if self.aux is not None:
            self.aux.eval()
        self.heads.eval()
        try:
            emb, extra = self.backbone.encode(
                [w for w in waves if w is not None],
                max_samples=self.cfg.eval_batch_seconds * SAMPLE_RATE,
                done=lambda b: self.tick(len(b), float(self.durations[good_rows[b]].sum())),
                per_batch=per_batch)
        finally:
            if self.aux is not None:
                self.aux.train(was)
            self.heads.train(heads_were)
        return emb, good_rows, extra

    def embed_rows(self, rows: np.ndarray, desc: str) -> tuple[torch.Tensor, np.ndarray]:
        """Eval-mode embeddings of ``rows`` -> ``((m, H), the m rows that decoded)``."""
        emb, good_rows, _ = self.encode_rows(rows, desc)
        return emb, good_rows

    def predict(self, emb: torch.Tensor, rows: np.ndarray, split_rows: np.ndarray,
                extra: list | None = None) -> dict[str, np.ndarray]:
        """Label-space predictions for every row of ``split_rows`` from the embeddings of
        ``rows`` (rows that failed to decode: NaN / -1); a sequence head's outputs are read
        from ``extra``, :meth:`encode_rows`' per-clip entries (:data:`HEAD_OUTPUTS`)."""
        raw: dict[str, np.ndarray] = {}
        if len(rows) and self.heads.sequence:
            if extra is None or len(extra) != len(rows):
                raise ValueError("a sequence head's predictions come from encode_rows: pass its "
                                 "per-clip entries as extra")
            raw = {name: np.stack([e[HEAD_OUTPUTS][name] for e in extra]) for name, _, _ in self.heads.tasks}
        elif len(rows):
            self.heads.eval()
            with torch.no_grad(), self.backbone.autocast():
                raw = {k: v.float().cpu().numpy() for k, v in self.heads(emb).items()}
            self.heads.train()
        pos = {r: i for i, r in enumerate(rows)}
        preds = {}
        for o in self.outputs:
            k = o.spec()[2]
            p = to_label_space(o, raw[o.name]) if raw else None
            full = (np.full(len(split_rows), -1, np.int64) if o.kind == "classification"
                    else np.full((len(split_rows), k), np.nan, np.float32))
            for j, r in enumerate(split_rows):
                if r in pos:
                    full[j] = p[pos[r]]
            preds[o.name] = full
        return preds

    def val_predict(self, emb: torch.Tensor, rows: np.ndarray, extra: list | None = None
                    ) -> dict[str, np.ndarray]:
        """Label-space predictions for every Val row (rows that failed to decode: NaN / -1)."""
        return self.predict(emb, rows, self.val_rows, extra)

    def record(self, stage: int, epoch: int, losses: list[float], total: float,
               scores: dict[str, tuple[float, bool]], selection: float, lr: float,
               clips_per_s: float, audio_s_per_s: float, t0: float,
               aux: dict[str, float | None] | None = None) -> None:
        c, names = self.curves, [o.name for o in self.outputs]
        c["stage"].append(stage)
        c["epoch"].append(epoch)
        for n, v in zip(names, losses):
            c["train_loss"][n].append(v)
        c["train_total"].append(total)
        for n, (s, _) in scores.items():
            c["val_score"].setdefault(n, []).append(s)
        c["val_selection"].append(selection)
        for n, w in zip(names, self.weighting.weights()):
            c["task_weights"][n].append(float(w))
        c["lr"].append(lr)
        c["clips_per_s"].append(round(clips_per_s, 2))
        c["audio_s_per_s"].append(round(audio_s_per_s, 2))
        c["seconds"].append(round(time.perf_counter() - t0, 3))
        if self.aux is not None:
            for key, value in (aux or {}).items():
                c.setdefault(key, []).append(value)
        write_json(self.tmp_dir / "curves.json", c)
        extra = "".join(f" | {k} {v:.4f}" for k, v in (aux or {}).items() if v is not None)
        log.info("stage %d epoch %d: loss %s | Val %s%s | %.1f clips/s, %.1f audio-s/s", stage,
                 epoch + 1, " ".join(f"{n} {v:.4f}" for n, v in zip(names, losses)),
                 " ".join(f"{n} {s:.4f}" for n, (s, _) in scores.items()) or "none", extra,
                 clips_per_s, audio_s_per_s)


NO_CROP = int(np.iinfo(np.int64).max)
"""Stage 2's crop length with ``max_seconds`` 0: longer than any clip (whole clips)."""
HEAD_OUTPUTS = "heads"
"""Key of a sequence head's raw outputs ``{output name: (k,) array}`` in each clip's entry of
:meth:`Run.encode_rows`' per-clip list (beside the auxiliary heads' ``text`` / ``code``)."""


def sequence_predict(heads: FinetuneHeads, then: Callable[..., list[dict[str, Any]]] | None
                     ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[dict[str, Any]]]:
    """A :meth:`Backbone.encode` ``per_batch`` that runs the sequence head on an eval batch's
    frames (float32, no autocast) and adds each clip's raw outputs under :data:`HEAD_OUTPUTS`
    to what ``then`` (the auxiliary heads' ``per_batch``, or None) returns."""
    def per_batch(h: torch.Tensor, frames: torch.Tensor, pooled: torch.Tensor) -> list[dict[str, Any]]:
        out = then(h, frames, pooled) if then is not None else [{} for _ in range(h.shape[0])]
        with torch.no_grad():
            raw = {k: v.float().cpu().numpy() for k, v in heads(h.float(), frames).items()}
        for i, entry in enumerate(out):
            entry[HEAD_OUTPUTS] = {k: v[i] for k, v in raw.items()}
        return out
    return per_batch


def _step(run: Run, optimizer: torch.optim.Optimizer, pred: dict[str, torch.Tensor],
          rows: torch.Tensor, epoch: int) -> tuple[torch.Tensor, float]:
    """One optimiser step on the weighted multitask loss: (per-output losses on CPU, total)."""
    losses = output_losses(run.outputs, pred, run.labels, rows, run.class_weights,
                           run.cfg.label_smoothing)
    total = run.weighting.combine(losses, epoch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return losses.detach().cpu(), float(total.detach())


def state_copy(*modules: nn.Module | None) -> list[dict[str, torch.Tensor]]:
    """A CPU copy of the modules' states (the best epoch's, kept off the GPU); None: {}."""
    return [{} if m is None else {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
            for m in modules]


def _val_scores(run: Run, emb: torch.Tensor, rows: np.ndarray, extra: list | None = None
                ) -> dict[str, tuple[float, bool]]:
    """The Val headline per task; {} without Val clips (nothing is selected then)."""
    if len(run.val_rows) == 0:
        return {}
    return val_scores(run.outputs, run.tasks, run.ds, run.val_rows, run.val_predict(emb, rows, extra))


def run_stage1(run: Run, t0: float) -> dict[str, Any]:
    """Heads (and weighting) on frozen embeddings computed once; best Val epoch restored."""
    cfg = run.cfg
    t_emb = time.perf_counter()
    emb_tr, rows_tr = run.embed_rows(run.train_rows, "stage 1: Train embeddings")
    emb_va, rows_va = run.embed_rows(run.val_rows, "stage 1: Val embeddings")
    secs = time.perf_counter() - t_emb
    n_all = len(rows_tr) + len(rows_va)
    log.info("stage 1: frozen embeddings of %d clips in %.1f s (%.1f clips/s)", n_all, secs,
             n_all / max(secs, 1e-9))
    params = [{"params": list(run.heads.parameters())},
              {"params": list(run.weighting.parameters()), "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in params if g["params"]], lr=cfg.head_lr)
    gen = np.random.default_rng(cfg.seed)
    best, best_epoch, bad, state = -math.inf, -1, 0, None
    rows_dev = torch.as_tensor(rows_tr, device=run.device)
    selecting = len(run.val_rows) > 0
    for epoch in range(cfg.frozen_epochs):
        t_ep = time.perf_counter()
        order = gen.permutation(len(rows_tr))
        loss_sum, total_sum, steps = torch.zeros(len(run.outputs)), 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = torch.as_tensor(order[start:start + cfg.batch_size], device=run.device)
            pred = run.heads(emb_tr[idx])
            losses, total = _step(run, optimizer, pred, rows_dev[idx], epoch)
            loss_sum += losses
            total_sum += total
            steps += 1
        epoch_losses = (loss_sum / max(steps, 1)).tolist()
        run.weighting.end_epoch(epoch_losses)
        scores = _val_scores(run, emb_va, rows_va)
        selection = selection_score(scores)
        el = time.perf_counter() - t_ep
        run.record(1, epoch, epoch_losses, total_sum / max(steps, 1), scores, selection, cfg.head_lr,
                   len(rows_tr) / el, float(run.durations[rows_tr].sum()) / el, t0)
        if not selecting:
            best_epoch = epoch  # no Val: the last epoch is kept
        elif selection > best:
            best, best_epoch, bad, state = selection, epoch, 0, state_copy(run.heads, run.weighting)
        else:
            bad += 1
            if cfg.patience and bad >= cfg.patience:
                log.info("stage 1: no better Val score for %d epochs; stopping", cfg.patience)
                break
    if state is not None:
        run.heads.load_state_dict(state[0])
        run.weighting.load_state_dict(state[1])
    scores = _val_scores(run, emb_va, rows_va)
    return {"best_epoch": best_epoch, "selection": best if selecting else None,
            "selected_on": "val" if selecting else "last epoch (no Val clips)",
            "val": {k: s for k, (s, _) in scores.items()}, "embedding_seconds": round(secs, 3)}


@dataclass
class Micro:
    """One micro-batch ready for the model: normalised clips, their dataset rows, and whether
    each clip is whole (not cropped)."""

    waves: list[np.ndarray]
    rows: list[int]
    whole: list[bool]


@dataclass
class StepLog:
    """What one optimiser step's micro-batches contributed (clip-weighted means)."""

    losses: torch.Tensor  # (K,) task losses
    total: float
    ctc: float | None
    adversary: float | None
    hits: int
    scored: int


def accumulate(run: Run, micro: list[Micro], epoch: int) -> StepLog:
    """Forward and backward of one optimiser step's micro-batches; gradients add up.

    Each micro-batch's joint loss ``L_tasks + alpha L_CTC + L_adv`` is scaled by its share of
    the step's clips (:func:`heads.finetune.schedule.micro_weights`), so the summed gradient is
    that of one batch of all the step's clips. The caller zeroes the gradients before and steps
    the optimiser after.
    """
    weights = micro_weights([len(m.rows) for m in micro])
    losses_sum = torch.zeros(len(run.outputs))
    total_sum, ctc_sum, adv_sum, hits, scored = 0.0, 0.0, 0.0, 0, 0
    for m, w in zip(micro, weights):
        h, frames = run.backbone.frames(m.waves)  # (B, T, H), (B,)
        pooled = masked_mean(h, length_mask(frames, h.shape[1]))  # (B, H)
        if run.heads.sequence:  # float32 LSTM on the clips' true frames
            pred = run.heads(h, frames)
        else:
            with run.backbone.autocast():
                pred = run.heads(pooled)
        pred = {k: v.float() for k, v in pred.items()}
        rows_dev = torch.as_tensor(m.rows, device=run.device)
        losses = output_losses(run.outputs, pred, run.labels, rows_dev, run.class_weights,
                               run.cfg.label_smoothing)
        total = run.weighting.combine(losses, epoch)
        if run.aux is not None and run.aux_targets is not None:
            extra = aux_losses(run.aux, run.aux_targets, h, frames, pooled, m.rows, m.whole)
            if extra.ctc is not None:
                total = total + run.cfg.ctc * extra.ctc
                ctc_sum += w * float(extra.ctc.detach())
            if extra.adversary is not None:
                total = total + extra.adversary
                adv_sum += w * float(extra.adversary.detach())
            hits, scored = hits + extra.hits, scored + extra.scored
        (total * w).backward()
        losses_sum += w * losses.detach().cpu()
        total_sum += w * float(total.detach())
    aux = run.aux
    return StepLog(losses_sum, total_sum,
                   ctc_sum if aux is not None and aux.ctc is not None else None,
                   adv_sum if aux is not None and aux.adversary is not None else None, hits, scored)


def _prepare(run: Run, b: np.ndarray, decoded: list, rng: np.random.Generator, max_len: int) -> Micro:
    waves, rows, whole = [], [], []
    for i, x in zip(b, decoded):
        if x is None:
            continue
        cut = len(x) > max_len
        if cut:  # a random window: memory stays bounded
            start = int(rng.integers(0, len(x) - max_len + 1))
            x = x[start:start + max_len]
        waves.append(normalise_clip(x, run.backbone.do_normalize, run.backbone.min_samples))
        rows.append(int(run.train_rows[i]))
        whole.append(not cut)
    return Micro(waves, rows, whole)


def make_optimizer(cfg: FinetuneConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Stage 2's optimiser of ``cfg.optimizer`` at ``cfg.lr`` with ``cfg.weight_decay`` (a group
    may set its own): ``adamw`` torch.optim.AdamW (decoupled decay), ``adam`` torch.optim.Adam
    (the decay an L2 term in the gradient, as paper 002's PyTorch "Adam optimizer with the
    weight decay coefficient")."""
    kind = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer]
    return kind(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def stage2_schedule(cfg: FinetuneConfig, n_train: int) -> tuple[int, int, int]:
    """(optimiser steps per epoch, total steps, warm-up steps) of stage 2 on ``n_train`` clips."""
    per_epoch = steps_per_epoch(math.ceil(n_train / cfg.batch_size), cfg.grad_accum)
    total = per_epoch * cfg.epochs
    return per_epoch, total, warmup_steps_of(total, ratio=cfg.warmup_ratio, epochs=cfg.warmup,
                                             steps_per_epoch=per_epoch)


def run_stage2(run: Run, t0: float) -> dict[str, Any]:
    """Everything trained (but the frozen feature encoder: :meth:`Backbone.trainable_params`
    per family); best Val epoch restored."""
    cfg, model = run.cfg, run.backbone.model
    backbone_params = run.backbone.trainable_params(cfg.freeze_feature_encoder)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    head_params = list(run.heads.parameters()) + (list(run.aux.parameters()) if run.aux is not None else [])
    groups = [{"params": backbone_params + head_params},
              {"params": list(run.weighting.parameters()), "weight_decay": 0.0}]
    optimizer = make_optimizer(cfg, [g for g in groups if g["params"]])
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    np.random.seed(cfg.seed + 1)  # transformers' SpecAugment draws its masks from numpy's global RNG
    max_len = int(cfg.max_seconds * SAMPLE_RATE) if cfg.max_seconds > 0 else NO_CROP
    samples = np.array([int(round(d * SAMPLE_RATE)) for d in run.durations[run.train_rows]])
    steps_per_ep, total_steps, warmup_steps = stage2_schedule(cfg, len(run.train_rows))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, total_steps=total_steps, warmup_steps=warmup_steps, decay=cfg.schedule))
    n_params = sum(p.numel() for p in backbone_params)
    log.info("stage 2: %d trainable backbone parameters (feature encoder %s), %d optimiser steps "
             "per epoch (%d clips each), %d warm-up steps of %d, %s decay, device %s", n_params,
             "frozen" if cfg.freeze_feature_encoder else "trained", steps_per_ep,
             cfg.accumulated_batch, warmup_steps, total_steps, cfg.schedule, run.device)
    selecting = len(run.val_rows) > 0
    best, best_epoch, bad, state, val = -math.inf, -1, 0, None, {}
    for epoch in range(cfg.epochs):
        t_ep = time.perf_counter()
        model.train()
        run.heads.train()
        if run.aux is not None:
            run.aux.train()
        plan = train_plan(np.minimum(samples, max_len), cfg.batch_size, rng)
        batches = [[run.ds.ids[run.train_rows[i]] for i in b] for b in plan]
        run.phase(f"stage 2 epoch {epoch + 1}/{cfg.epochs}", run.train_rows)
        loss_sum, total_sum, steps, clips, audio_s = torch.zeros(len(run.outputs)), 0.0, 0, 0, 0.0
        ctc_sum, adv_sum, hits, scored = 0.0, 0.0, 0, 0
        decoded = run.audio.batches(batches)
        for group in accumulation_groups(len(plan), cfg.grad_accum):
            micro = [_prepare(run, plan[i], next(decoded), rng, max_len) for i in group]
            micro = [m for m in micro if m.rows]
            if micro:
                optimizer.zero_grad(set_to_none=True)
                out = accumulate(run, micro, cfg.frozen_epochs + epoch)
                optimizer.step()
                loss_sum += out.losses
                total_sum += out.total
                ctc_sum += out.ctc or 0.0
                adv_sum += out.adversary or 0.0
                hits, scored = hits + out.hits, scored + out.scored
                steps += 1
            scheduler.step()
            done_s = float(sum(run.durations[run.train_rows[plan[i]]].sum() for i in group))
            n_done = sum(len(plan[i]) for i in group)
            clips, audio_s = clips + n_done, audio_s + done_s
            run.tick(n_done, done_s)
        epoch_losses = (loss_sum / max(steps, 1)).tolist()
        run.weighting.end_epoch(epoch_losses)
        el = time.perf_counter() - t_ep
        emb_va, rows_va, extra_va = run.encode_rows(run.val_rows, f"stage 2 epoch {epoch + 1}: Val")
        scores = _val_scores(run, emb_va, rows_va, extra_va)
        selection = selection_score(scores)
        aux_curve = _aux_curve(run, steps, ctc_sum, adv_sum, hits, scored, rows_va, extra_va)
        run.record(2, epoch, epoch_losses, total_sum / max(steps, 1), scores, selection,
                   optimizer.param_groups[0]["lr"], clips / el, audio_s / el, t0, aux_curve)
        if not selecting:
            best_epoch, state = epoch, None  # no Val: the last epoch is kept
        elif selection > best:
            best, best_epoch, bad = selection, epoch, 0
            state = state_copy(model, run.heads, run.weighting, run.aux)
            val = {k: s for k, (s, _) in scores.items()}
        else:
            bad += 1
            if cfg.patience and bad >= cfg.patience:
                log.info("stage 2: no better Val score for %d epochs; stopping after epoch %d "
                         "(best %d)", cfg.patience, epoch + 1, best_epoch + 1)
                break
    if state is not None:
        model.load_state_dict(state[0])
        run.heads.load_state_dict(state[1])
        run.weighting.load_state_dict(state[2])
        if run.aux is not None:
            run.aux.load_state_dict(state[3])
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_disable()
    model.eval()
    return {"best_epoch": best_epoch, "selection": best if selecting else None,
            "selected_on": "val" if selecting else "last epoch (no Val clips)", "val": val,
            "epochs_run": len([s for s in run.curves["stage"] if s == 2]),
            "optimiser_steps_per_epoch": steps_per_ep, "total_steps": total_steps,
            "warmup_steps": warmup_steps, "accumulated_batch": cfg.accumulated_batch}


def _aux_curve(run: Run, steps: int, ctc_sum: float, adv_sum: float, hits: int, scored: int,
               rows_va: np.ndarray, extra_va: list) -> dict[str, float | None]:
    """The epoch's auxiliary numbers: mean train CTC / adversary terms, the training batches'
    speaker accuracy, and Val WER / CER / speaker accuracy where Val can be scored."""
    if run.aux is None or run.aux_targets is None:
        return {}
    from heads.finetune.auxiliary import aux_scores

    out: dict[str, float | None] = {}
    va = aux_scores(run.aux_targets, list(rows_va), extra_va) if len(rows_va) else {}
    if run.aux.ctc is not None:
        out["train_ctc"] = ctc_sum / max(steps, 1)
        out["val_wer"] = (va.get("ctc") or {}).get("wer_error")
        out["val_cer"] = (va.get("ctc") or {}).get("cer_error")
    if run.aux.adversary is not None:
        out["train_adversary"] = adv_sum / max(steps, 1)
        out["train_speaker_accuracy"] = hits / scored if scored else None
        out["val_speaker_accuracy"] = (va.get("adversary") or {}).get("speaker_accuracy")
    return out
