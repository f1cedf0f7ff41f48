"""The two training stages of seed 000: heads on the frozen backbone, then everything."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data.tasks import Task
from extract.base import SAMPLE_RATE
from heads.finetune.backbone import Backbone, FinetuneHeads
from heads.finetune.batches import ClipAudio, normalise_clip, train_plan
from heads.finetune.config import MAX_EVAL_CLIPS, FinetuneConfig, PhaseFn, ProgressFn, write_json
from heads.dataset import Dataset
from heads.training.loop import lr_factor
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

    def embed_rows(self, rows: np.ndarray, desc: str) -> tuple[torch.Tensor, np.ndarray]:
        """Eval-mode embeddings of ``rows`` -> ``((m, H), the m rows that decoded)``."""
        self.phase(desc, rows)
        waves = self.waves(rows)
        keep = np.array([w is not None for w in waves], dtype=bool)
        if not keep.all():
            bad = rows[~keep]
            self.tick(len(bad), float(self.durations[bad].sum()))
        good_rows = rows[keep]
        emb = self.backbone.embed(
            [w for w in waves if w is not None],
            max_samples=self.cfg.eval_batch_seconds * SAMPLE_RATE,
            done=lambda b: self.tick(len(b), float(self.durations[good_rows[b]].sum())))
        return emb, good_rows

    def val_predict(self, emb: torch.Tensor, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Label-space predictions for every Val row (rows that failed to decode: NaN / -1)."""
        self.heads.eval()
        with torch.no_grad(), self.backbone.autocast():
            raw = {k: v.float().cpu().numpy() for k, v in self.heads(emb).items()}
        self.heads.train()
        pos = {r: i for i, r in enumerate(rows)}
        preds = {}
        for o in self.outputs:
            p = to_label_space(o, raw[o.name])
            full = (np.full(len(self.val_rows), -1, np.int64) if o.kind == "classification"
                    else np.full((len(self.val_rows), p.shape[1]), np.nan, np.float32))
            for j, r in enumerate(self.val_rows):
                if r in pos:
                    full[j] = p[pos[r]]
            preds[o.name] = full
        return preds

    def record(self, stage: int, epoch: int, losses: list[float], total: float,
               scores: dict[str, tuple[float, bool]], selection: float, lr: float,
               clips_per_s: float, audio_s_per_s: float, t0: float) -> None:
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
        write_json(self.tmp_dir / "curves.json", c)
        log.info("stage %d epoch %d: loss %s | Val %s | %.1f clips/s, %.1f audio-s/s", stage,
                 epoch + 1, " ".join(f"{n} {v:.4f}" for n, v in zip(names, losses)),
                 " ".join(f"{n} {s:.4f}" for n, (s, _) in scores.items()), clips_per_s,
                 audio_s_per_s)


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


def state_copy(*modules: nn.Module) -> list[dict[str, torch.Tensor]]:
    """A CPU copy of the modules' states (the best epoch's, kept off the GPU)."""
    return [{k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()} for m in modules]


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
        scores = val_scores(run.outputs, run.tasks, run.ds, run.val_rows, run.val_predict(emb_va, rows_va))
        selection = selection_score(scores)
        el = time.perf_counter() - t_ep
        run.record(1, epoch, epoch_losses, total_sum / max(steps, 1), scores, selection, cfg.head_lr,
                   len(rows_tr) / el, float(run.durations[rows_tr].sum()) / el, t0)
        if selection > best:
            best, best_epoch, bad, state = selection, epoch, 0, state_copy(run.heads, run.weighting)
        else:
            bad += 1
            if cfg.patience and bad >= cfg.patience:
                log.info("stage 1: no better Val score for %d epochs; stopping", cfg.patience)
                break
    if state is not None:
        run.heads.load_state_dict(state[0])
        run.weighting.load_state_dict(state[1])
    scores = val_scores(run.outputs, run.tasks, run.ds, run.val_rows, run.val_predict(emb_va, rows_va))
    return {"best_epoch": best_epoch, "selection": best,
            "val": {k: s for k, (s, _) in scores.items()}, "embedding_seconds": round(secs, 3)}


def trainable_params(model: nn.Module, freeze_feature_encoder: bool) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_feature_encoder:
        if hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()  # also skips the encoder's own checkpointing
        else:
            for p in model.feature_extractor.parameters():
                p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def run_stage2(run: Run, t0: float) -> dict[str, Any]:
    """Everything trained (but the frozen feature encoder); best Val epoch restored."""
    cfg, model = run.cfg, run.backbone.model
    backbone_params = trainable_params(model, cfg.freeze_feature_encoder)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    groups = [{"params": backbone_params + list(run.heads.parameters())},
              {"params": list(run.weighting.parameters()), "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    np.random.seed(cfg.seed + 1)  # transformers' SpecAugment draws its masks from numpy's global RNG
    max_len = int(cfg.max_seconds * SAMPLE_RATE)
    samples = np.array([int(round(d * SAMPLE_RATE)) for d in run.durations[run.train_rows]])
    steps_per_epoch = math.ceil(len(run.train_rows) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, total_steps=total_steps, warmup_steps=warmup_steps, schedule="cosine"))
    n_params = sum(p.numel() for p in backbone_params)
    log.info("stage 2: %d trainable backbone parameters (feature encoder %s), %d steps per epoch, "
             "device %s", n_params, "frozen" if cfg.freeze_feature_encoder else "trained",
             steps_per_epoch, run.device)
    best, best_epoch, bad, state, val = -math.inf, -1, 0, None, {}
    for epoch in range(cfg.epochs):
        t_ep = time.perf_counter()
        model.train()
        run.heads.train()
        plan = train_plan(np.minimum(samples, max_len), cfg.batch_size, rng)
        batches = [[run.ds.ids[run.train_rows[i]] for i in b] for b in plan]
        run.phase(f"stage 2 epoch {epoch + 1}/{cfg.epochs}", run.train_rows)
        loss_sum, total_sum, steps, clips, audio_s = torch.zeros(len(run.outputs)), 0.0, 0, 0, 0.0
        for b, decoded in zip(plan, run.audio.batches(batches)):
            waves, rows = [], []
            for i, x in zip(b, decoded):
                if x is None:
                    continue
                if len(x) > max_len:  # a random window: memory stays bounded
                    start = int(rng.integers(0, len(x) - max_len + 1))
                    x = x[start:start + max_len]
                waves.append(normalise_clip(x, run.backbone.do_normalize, run.backbone.min_samples))
                rows.append(run.train_rows[i])
            if waves:
                pooled = run.backbone.pooled(waves)  # (B, H)
                with run.backbone.autocast():
                    pred = run.heads(pooled)
                pred = {k: v.float() for k, v in pred.items()}
                rows_dev = torch.as_tensor(rows, device=run.device)
                losses, total = _step(run, optimizer, pred, rows_dev, cfg.frozen_epochs + epoch)
                loss_sum += losses
                total_sum += total
                steps += 1
            scheduler.step()
            done_s = float(run.durations[run.train_rows[b]].sum())
            clips, audio_s = clips + len(b), audio_s + done_s
            run.tick(len(b), done_s)
        epoch_losses = (loss_sum / max(steps, 1)).tolist()
        run.weighting.end_epoch(epoch_losses)
        el = time.perf_counter() - t_ep
        emb_va, rows_va = run.embed_rows(run.val_rows, f"stage 2 epoch {epoch + 1}: Val")
        scores = val_scores(run.outputs, run.tasks, run.ds, run.val_rows, run.val_predict(emb_va, rows_va))
        selection = selection_score(scores)
        run.record(2, epoch, epoch_losses, total_sum / max(steps, 1), scores, selection,
                   optimizer.param_groups[0]["lr"], clips / el, audio_s / el, t0)
        if selection > best:
            best, best_epoch, bad = selection, epoch, 0
            state = state_copy(model, run.heads, run.weighting)
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
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_disable()
    model.eval()
    return {"best_epoch": best_epoch, "selection": best, "val": val,
            "epochs_run": len([s for s in run.curves["stage"] if s == 2])}

