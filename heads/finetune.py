"""End-to-end fine-tuning of an SSL backbone with multitask heads (seed 000), audio in.

Unlike the other heads, this stage reads audio, not the store: it trains the backbone itself
and then writes the new model's embeddings back into the same store through the ordinary
extraction path, so that ``list``, ``train``, ``probe`` and ``export`` use them like any set.

What :func:`finetune` does, top to bottom (FIELD_NOTES section 4, seed 000):

1. resolve the base model with :class:`extract.ssl.SSLExtractor` (same lookup, same errors:
   a model that is not SSL, weights missing offline), the tasks and the Train / Val clips;
2. outputs, labels, losses and class weights from :mod:`heads.train` (CCC for regression,
   class-weighted cross-entropy with label smoothing 0.1 for classes), heads from
   :mod:`heads.nets` (per output ``Linear(H,256)-GELU-Linear(256,k)``, i.e. one ``mlp-mtl``
   net per output; clamp output by default), Kendall uncertainty weighting from
   :mod:`heads.weighting`;
3. stage 1, frozen backbone: the backbone's embeddings (masked mean over each clip's true
   frames of the last hidden state, or of ``layer``) are computed once in eval mode and the
   heads train on them with AdamW defaults. Frozen weights give the same vectors every epoch,
   so one forward pass replaces ``frozen_epochs`` of them;
4. stage 2, everything unfrozen but the CNN feature encoder (``freeze_feature_encoder``):
   AdamW at ``lr`` (4e-5), cosine schedule after ``warmup`` epochs of linear warm-up, the
   model in train mode (dropout, LayerDrop and SpecAugment as its config says), clips batched
   by length and randomly cropped to ``max_seconds``; bfloat16 autocast on CUDA;
5. early stopping on the mean Val headline (patience 2) in each stage, the best state restored;
6. everything is written to a temporary folder renamed to ``WORKDIR/finetuned/<run>/`` at the
   end, so a killed run leaves no half-written model under the final name::

       model/            save_pretrained backbone + preprocessor_config.json + finetuned.json
       heads.pt          head nets, weighting, outputs (label ranges, classes), layer
       config.json       base model, tasks, options, dates, library versions
       metrics.json      Val scores per task (heads.evaluate) after stage 1 and at the end
       curves.json       per epoch: stage, train losses, Val scores, task weights, lr, speed

:func:`store_embeddings` then runs :func:`extract.run.extract_corpus` with the spec
``ssl:<run>/model``; the set's name comes from ``finetuned.json`` (``ssl-<base>-ft-<run>``) and
its provenance carries the record (base model, run, tasks). Rerunning with the same
``run_name`` and settings reuses the finished model and only completes the extraction.

Example::

    cfg = FinetuneConfig(workdir="runs/avb", model="facebook/data2vec-audio-base",
                         task="avb-high,avb-culture,avb-type,country")
    result = finetune(cfg)
    store_embeddings(result.model_dir, "runs/avb", ExtractOptions(device="auto"))
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data.audio import audio_info, load_audio
from data.tasks import Task, parse_tasks, resolve_task, target_array
from data.workdir import open_corpus
from extract.base import SAMPLE_RATE, ExtractOptions
from extract.ssl import FINETUNED_FILE, NORM_EPS, SSLExtractor
from extract.untrained import MARKER as UNTRAINED_MARKER
from heads.evaluate import bootstrap_task, score_task
from heads.experiment import Dataset
from heads.nets import OUTPUT_MODES, build_net, length_mask, masked_mean
from heads.train import (Labels, Output, TrainOptions, lr_factor, make_outputs, output_losses,
                         pick_device, selection_score, to_label_space, train_class_weights,
                         val_scores)
from heads.weighting import WEIGHTINGS, build_weighting
from heads.weighting import parse_spec as parse_weighting

log = logging.getLogger(__name__)

FINETUNED_DIR = "finetuned"
"""WORKDIR/finetuned/<run>/ holds one fine-tuning run."""
MODEL_SUBDIR = "model"
DEVICES = ("auto", "cpu", "cuda")
EVAL_MAX_STRETCH = 1.25
"""An eval batch holds clips up to this many times its shortest: models trained without an
attention mask see the padding, so Val scores stay close to each clip run alone."""
MAX_EVAL_CLIPS = 64
BUCKET_BATCHES = 20
"""Training batches are cut from length-sorted runs of this many batches of a shuffled order."""
# settings that do not change the trained model: a rerun with other values reuses it
_RUNTIME_ONLY = ("workdir", "run_name", "device", "workers", "n_boot", "eval_batch_seconds",
                 "cache_gb")

PhaseFn = Callable[[str, int, float], None]
"""Called when a pass over clips starts: (description, clips, audio seconds)."""
ProgressFn = Callable[[int, float], None]
"""Called as clips finish: (clips, audio seconds)."""


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (saved in its config.json).

    Attributes:
        workdir: the workdir (corpus reference; the store the embeddings go to).
        model: base checkpoint: hub id or save_pretrained folder (the ARG of ``ssl:ARG``).
        task: task spec, e.g. ``avb-high,avb-culture,avb-type,country``.
        run_name: folder under WORKDIR/finetuned (default: ``<base>-<tasks>-<time>``).
        layer: hidden state pooled for the heads; None: the model's last hidden state.
        frozen_epochs: stage 1 epochs (frozen backbone); 0 skips the stage.
        epochs: stage 2 epochs (everything trained); 0 skips the stage.
        lr: stage 2 learning rate (whole model).
        head_lr: stage 1 learning rate of the heads (AdamW default 1e-3).
        weight_decay: AdamW weight decay of backbone and heads (AdamW default 0.01).
        batch_size: clips per step.
        patience: epochs without a better Val headline before a stage stops; 0 never.
        warmup: stage 2 epochs of linear warm-up before the cosine decay.
        weighting: multitask weighting spec (:func:`heads.weighting.build_weighting`).
        loss: regression loss spec (:func:`heads.train.parse_loss_spec`).
        output: regression output mode (:data:`heads.nets.OUTPUT_MODES`).
        label_smoothing: cross-entropy label smoothing.
        class_weights: normalised inverse Train frequency class weights.
        head_hidden: width of each head's hidden layer.
        shared_head: one shared hidden layer for all outputs instead of one per output.
        max_seconds: training crops of longer clips (bounds memory); Val sees whole clips.
        eval_batch_seconds: padded audio per evaluation batch.
        freeze_feature_encoder: keep the CNN feature encoder frozen in stage 2.
        gradient_checkpointing: recompute transformer activations in backward (less memory).
        device: ``auto`` | ``cpu`` | ``cuda``.
        seed: seeds the heads, batch order, crops and SpecAugment.
        workers: audio decoding threads.
        cache_gb: decoded audio up to this size stays in memory between epochs.
        n_boot: bootstrap resamples of the Val CI.
    """

    workdir: str
    model: str
    task: str
    run_name: str | None = None
    layer: int | None = None
    frozen_epochs: int = 10
    epochs: int = 10
    lr: float = 4e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    patience: int = 2
    warmup: float = 1.0
    weighting: str = "uw"
    loss: str = "ccc"
    output: str = "clamp"
    label_smoothing: float = 0.1
    class_weights: bool = True
    head_hidden: int = 256
    shared_head: bool = False
    max_seconds: float = 8.0
    eval_batch_seconds: float = 64.0
    freeze_feature_encoder: bool = True
    gradient_checkpointing: bool = False
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    cache_gb: float = 4.0
    n_boot: int = 200

    def check(self) -> None:
        """Raise ValueError naming the first invalid value, what is valid and what to do."""
        ints = {"frozen_epochs": 0, "epochs": 0, "batch_size": 1, "patience": 0, "head_hidden": 1,
                "workers": 1, "n_boot": 0}
        for key, low in ints.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"option {key} must be an integer >= {low}; got {value!r}")
        if self.frozen_epochs + self.epochs < 1:
            raise ValueError("frozen_epochs and epochs are both 0: nothing to train; give "
                             "--epochs N (stage 2) and/or --frozen-epochs N (stage 1)")
        for key in ("lr", "head_lr", "max_seconds", "eval_batch_seconds"):
            if not getattr(self, key) > 0:
                raise ValueError(f"option {key} must be > 0; got {getattr(self, key)!r}")
        for key in ("weight_decay", "warmup", "cache_gb"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"option {key} must be >= 0; got {getattr(self, key)!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"option label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"option output must be one of {OUTPUT_MODES}; got {self.output!r}")
        if self.device not in DEVICES:
            raise ValueError(f"option device must be one of {DEVICES}; got {self.device!r}")
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"option layer must be an integer hidden-state index; got {self.layer!r}")
        if self.run_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.run_name):
            raise ValueError(f"run name {self.run_name!r} must be a plain folder name (letters, "
                             f"digits, . _ + -)")
        TrainOptions.from_dict({"loss": self.loss})  # names the bad loss
        name, _ = parse_weighting(self.weighting)
        if name not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; valid: {', '.join(sorted(WEIGHTINGS))}")

    def settings(self) -> dict[str, Any]:
        """The fields that determine the trained model (a rerun with equal ones reuses it)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME_ONLY}


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns."""

    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    resumed: bool = False

    @property
    def spec(self) -> str:
        """The feature spec of the fine-tuned backbone: ``ssl:<run_dir>/model``."""
        return f"ssl:{self.model_dir}"


def model_basename(model: str) -> str:
    """A short name of a checkpoint (hub id or folder), e.g. ``data2vec-audio-base``."""
    base = Path(model.rstrip("/\\")).name
    if re.fullmatch(r"[0-9a-f]{40}", base) and Path(model).parent.name == "snapshots":
        base = Path(model).parent.parent.name.split("--")[-1]
    if base == MODEL_SUBDIR and (Path(model) / FINETUNED_FILE).is_file():  # a fine-tuned folder
        base = Path(model).resolve().parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.").lower() or "model"


def default_run_name(cfg: FinetuneConfig) -> str:
    tasks = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", t.name) for t in parse_tasks(cfg.task))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{model_basename(cfg.model)}-ft-{tasks}-{stamp}"


def readable_name(model: str, run_name: str) -> str:
    """The set's name part recorded in finetuned.json: ``<base>-ft-<run>`` (the run name alone
    when it already starts with the base name)."""
    base = model_basename(model)
    return run_name if run_name.lower().startswith(base) else f"{base}-ft-{run_name}"


# ---------------------------------------------------------------------------------- heads
class FinetuneHeads(nn.Module):
    """The heads on pooled embeddings: one ``mlp-mtl`` net per output (seed 000's
    ``Linear(H,256)-GELU-Linear(256,k)`` per task) or one shared net for all outputs.

    Args:
        input_dim: embedding width H.
        specs: ``(name, kind, k)`` per output.
        hidden: width of the hidden layer.
        output: regression output mode.
        shared: one shared hidden layer instead of one per output.
    """

    def __init__(self, input_dim: int, specs: Sequence[tuple[str, str, int]], *, hidden: int,
                 output: str, shared: bool) -> None:
        super().__init__()
        groups = [list(specs)] if shared else [[s] for s in specs]
        self.nets = nn.ModuleList(build_net("mlp-mtl", input_dim, g, hidden=hidden, output=output)
                                  for g in groups)
        self.tasks = tuple(tuple(s) for s in specs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # x (B, H)
        out: dict[str, torch.Tensor] = {}
        for net in self.nets:
            out.update(net(x))
        return out


# ---------------------------------------------------------------------------------- audio
class _Audio:
    """Decoded clips on demand (threads ahead of the model), kept in memory when they fit."""

    def __init__(self, paths: dict[str, str], *, workers: int, cache: bool) -> None:
        self.paths, self.workers, self.cache = paths, workers, cache
        self._cache: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}

    def _one(self, cid: str) -> np.ndarray | None:
        if cid in self._cache:
            return self._cache[cid]
        if cid in self.failed:
            return None
        try:
            x = load_audio(self.paths[cid], sample_rate=SAMPLE_RATE)
        except Exception as exc:  # noqa: BLE001 - one bad clip never sinks the run
            self.failed[cid] = str(exc)
            log.warning("clip %s left out: %s", cid, exc)
            return None
        if self.cache:
            self._cache[cid] = x
        return x

    def batches(self, batches: Sequence[Sequence[str]]) -> Iterator[list[np.ndarray | None]]:
        """Decoded clips of each batch in order, decoding up to two batches ahead."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            ahead = 2
            futures = [pool.submit(lambda b: [self._one(c) for c in b], b) for b in batches[:ahead]]
            for i in range(len(batches)):
                if i + ahead < len(batches):
                    futures.append(pool.submit(lambda b: [self._one(c) for c in b], batches[i + ahead]))
                yield futures[i].result()
                futures[i] = None  # type: ignore[call-overload]


def _normalise(x: np.ndarray, do_normalize: bool, min_samples: int) -> np.ndarray:
    """Per-clip zero mean / unit variance (as Wav2Vec2FeatureExtractor) when the checkpoint
    asks for it, then zero-padded to one receptive field (as the extractor does)."""
    x64 = x.astype(np.float64)
    if do_normalize:
        x64 = (x64 - x64.mean()) / np.sqrt(x64.var() + NORM_EPS)
    x32 = x64.astype(np.float32)
    if x32.size < min_samples:
        x32 = np.pad(x32, (0, min_samples - x32.size))
    return x32


def _eval_plan(lengths: Sequence[int], *, max_samples: float, max_clips: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of bounded padded audio and stretch."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        n = lengths[i]
        cur = batches[-1] if batches else None
        if (cur is not None and len(cur) < max_clips and (len(cur) + 1) * n <= max_samples
                and n <= EVAL_MAX_STRETCH * lengths[cur[0]]):
            cur.append(i)
        else:
            batches.append([i])
    return batches


def _train_plan(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled epoch cut into batches of similar lengths (little padding), in random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for c in range(0, len(order), chunk):
        part = order[c:c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------------- backbone
class _Backbone:
    """The model with what a forward pass needs: normalisation, mask, pooling, autocast."""

    def __init__(self, model: nn.Module, *, do_normalize: bool, use_mask: bool, min_samples: int,
                 layer: int | None, device: torch.device) -> None:
        self.model, self.do_normalize, self.use_mask = model, do_normalize, use_mask
        self.min_samples, self.layer, self.device = min_samples, layer, device
        cfg = model.config
        # SpecAugment in train mode needs at least mask_time_length frames in the padded batch
        mask_len = int(getattr(cfg, "mask_time_length", 1)) if getattr(cfg, "mask_time_prob", 0) > 0 else 1
        stride = int(np.prod(cfg.conv_stride))
        self.min_batch_samples = min_samples + (max(1, mask_len) - 1) * stride
        self._grabbed: torch.Tensor | None = None
        if layer is not None:
            self._hook_layer(layer)

    def _hook_layer(self, layer: int) -> None:
        """Catch hidden state ``layer`` with forward hooks instead of ``output_hidden_states``.

        In train mode LayerDrop skips layers and transformers then reports fewer hidden states,
        so an index into them would name a different layer. Hooks on the encoder's input
        dropout (hidden state 0: the input of the first layer) and on layers 1..``layer`` keep
        the latest output: a skipped layer passes its input on, as LayerDrop means.
        """
        encoder = self.model.encoder
        if not isinstance(getattr(encoder, "dropout", None), nn.Module):
            raise ValueError(f"option layer is not supported for {type(encoder).__name__}; leave "
                             f"it out to use the last hidden state")

        def grab(module: nn.Module, args: Any, out: Any) -> None:
            self._grabbed = out[0] if isinstance(out, tuple) else out

        encoder.dropout.register_forward_hook(grab)
        for block in list(encoder.layers)[:layer]:
            block.register_forward_hook(grab)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def pooled(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Masked mean over each clip's true frames: ``(B, H)`` float32 (grad as the mode allows).

        Args:
            waves: normalised ``(samples,)`` clips, each at least one receptive field long.
        """
        lengths = torch.tensor([len(w) for w in waves])
        total = max(int(lengths.max()), self.min_batch_samples)
        x = torch.zeros(len(waves), total)
        for b, w in enumerate(waves):
            x[b, :len(w)] = torch.from_numpy(w)
        kwargs: dict[str, Any] = {}
        if self.use_mask:
            kwargs["attention_mask"] = (torch.arange(total)[None, :] < lengths[:, None]).long().to(self.device)
        x = x.to(self.device, non_blocking=True)
        self._grabbed = None
        with self.autocast():
            out = self.model(x, **kwargs)
        h = out.last_hidden_state if self.layer is None else self._grabbed  # (B, T, H)
        assert h is not None, "the hidden-state hook did not fire"
        frames = self.model._get_feat_extract_output_lengths(lengths).clamp(1, h.shape[1])
        return masked_mean(h.float(), length_mask(frames.to(h.device), h.shape[1]))

    @torch.no_grad()
    def embed(self, waves: Sequence[np.ndarray], *, max_samples: float,
              done: Callable[[list[int]], None] | None = None) -> torch.Tensor:
        """Eval-mode embeddings of whole clips ``(n, H)`` on the device, in input order;
        ``done`` receives the input indices of each finished batch."""
        was = self.model.training
        self.model.eval()
        try:
            lengths = [len(w) for w in waves]
            out: list[torch.Tensor | None] = [None] * len(waves)
            for batch in _eval_plan(lengths, max_samples=max_samples, max_clips=MAX_EVAL_CLIPS):
                pooled = self.pooled([waves[i] for i in batch])
                for i, row in zip(batch, pooled):
                    out[i] = row
                if done:
                    done(batch)
            return torch.stack(out)  # type: ignore[arg-type]
        finally:
            self.model.train(was)


def _uses_attention_mask(ex: SSLExtractor) -> bool:
    """The checkpoint's feature extractor says whether the model takes an attention mask;
    without that file, layer-norm conv encoders do (group-norm ones were trained without)."""
    directory = ex.source_.directory
    if directory is not None and (directory / "preprocessor_config.json").is_file():
        pre = json.loads((directory / "preprocessor_config.json").read_text())
        if "return_attention_mask" in pre:
            return bool(pre["return_attention_mask"])
    return getattr(ex.config_, "feat_extract_norm", "layer") == "layer"


def _load_model(ex: SSLExtractor) -> nn.Module:
    """The base checkpoint as a bare float32 model, found the way extraction finds it."""
    from transformers import AutoModel

    from extract.base import ExtractorUnavailable

    src = ex.source_
    where = str(src.directory) if src.directory is not None else ex.arg
    try:
        return AutoModel.from_pretrained(
            where, attn_implementation=ex.attn_implementation_, dtype=torch.float32,
            local_files_only=src.kind != "online",
            revision=src.commit if src.kind == "online" else None)
    except Exception as exc:  # noqa: BLE001
        raise ExtractorUnavailable(f"cannot load the weights of {ex.arg!r}: {exc}") from exc


# ---------------------------------------------------------------------------------- the run
@dataclass
class _Run:
    """State shared by the two stages."""

    cfg: FinetuneConfig
    tasks: list[Task]
    ds: Dataset
    outputs: list[Output]
    labels: Labels
    class_weights: dict[str, torch.Tensor | None]
    train_rows: np.ndarray
    val_rows: np.ndarray
    audio: _Audio
    backbone: _Backbone
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
                out.append(None if x is None else _normalise(x, self.backbone.do_normalize,
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
        _write_json(self.tmp_dir / "curves.json", c)
        log.info("stage %d epoch %d: loss %s | Val %s | %.1f clips/s, %.1f audio-s/s", stage,
                 epoch + 1, " ".join(f"{n} {v:.4f}" for n, v in zip(names, losses)),
                 " ".join(f"{n} {s:.4f}" for n, (s, _) in scores.items()), clips_per_s,
                 audio_s_per_s)


def _state(*modules: nn.Module) -> list[dict[str, torch.Tensor]]:
    """A CPU copy of the modules' states (the best epoch's, kept off the GPU)."""
    return [{k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()} for m in modules]


def _stage1(run: _Run, t0: float) -> dict[str, Any]:
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
            losses = output_losses(run.outputs, pred, run.labels, rows_dev[idx], run.class_weights,
                                   cfg.label_smoothing)
            total = run.weighting.combine(losses, epoch)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            loss_sum += losses.detach().cpu()
            total_sum += float(total.detach())
            steps += 1
        epoch_losses = (loss_sum / max(steps, 1)).tolist()
        run.weighting.end_epoch(epoch_losses)
        scores = val_scores(run.outputs, run.tasks, run.ds, run.val_rows, run.val_predict(emb_va, rows_va))
        selection = selection_score(scores)
        el = time.perf_counter() - t_ep
        run.record(1, epoch, epoch_losses, total_sum / max(steps, 1), scores, selection, cfg.head_lr,
                   len(rows_tr) / el, float(run.durations[rows_tr].sum()) / el, t0)
        if selection > best:
            best, best_epoch, bad, state = selection, epoch, 0, _state(run.heads, run.weighting)
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


def _trainable(model: nn.Module, freeze_feature_encoder: bool) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_feature_encoder:
        if hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()  # also skips the encoder's own checkpointing
        else:
            for p in model.feature_extractor.parameters():
                p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def _stage2(run: _Run, t0: float) -> dict[str, Any]:
    """Everything trained (but the frozen feature encoder); best Val epoch restored."""
    cfg, model = run.cfg, run.backbone.model
    backbone_params = _trainable(model, cfg.freeze_feature_encoder)
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
        plan = _train_plan(np.minimum(samples, max_len), cfg.batch_size, rng)
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
                waves.append(_normalise(x, run.backbone.do_normalize, run.backbone.min_samples))
                rows.append(run.train_rows[i])
            if waves:
                pooled = run.backbone.pooled(waves)  # (B, H)
                with run.backbone.autocast():
                    pred = run.heads(pooled)
                pred = {k: v.float() for k, v in pred.items()}
                rows_dev = torch.as_tensor(rows, device=run.device)
                losses = output_losses(run.outputs, pred, run.labels, rows_dev, run.class_weights,
                                       cfg.label_smoothing)
                total = run.weighting.combine(losses, cfg.frozen_epochs + epoch)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                loss_sum += losses.detach().cpu()
                total_sum += float(total.detach())
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
            state = _state(model, run.heads, run.weighting)
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


def finetune(cfg: FinetuneConfig, *, on_phase: PhaseFn | None = None,
             progress: ProgressFn | None = None) -> FinetuneResult:
    """Fine-tune the backbone with multitask heads; write WORKDIR/finetuned/<run>/ atomically.

    Args:
        cfg: the settings.
        on_phase: called when a pass over clips starts (description, clips, audio seconds).
        progress: called as clips finish (clips, audio seconds).

    Returns:
        A :class:`FinetuneResult` (``resumed`` when a finished run of the same name and
        settings was found and reused).

    Raises:
        ValueError: a bad option, a model that is not a speech SSL model, a layer out of range,
            no Train or Val clip with labels, CUDA asked for but missing.
        TaskError: an unknown task or one the corpus has no columns for.
        ExtractorUnavailable: the base weights are not here (the message says how to get them).
        FileNotFoundError: the workdir has no corpus reference (run ``extract`` first).
        FileExistsError: the run name is taken by a run with other settings.
    """
    t0 = time.perf_counter()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    cfg.check()
    parse_tasks(cfg.task)  # an unknown task fails before anything is read
    device = pick_device(cfg.device)
    run_name = cfg.run_name or default_run_name(cfg)
    cfg = dataclasses.replace(cfg, run_name=run_name)
    root = Path(cfg.workdir) / FINETUNED_DIR
    run_dir = root / run_name
    if (run_dir / "config.json").is_file() and (run_dir / MODEL_SUBDIR / "config.json").is_file():
        return _reuse(cfg, run_dir)

    corpus = open_corpus(cfg.workdir)
    tasks = [resolve_task(t, corpus.labels) for t in parse_tasks(cfg.task)]
    ex = SSLExtractor(cfg.model, ExtractOptions(device="cpu"))
    ex.resolve()  # ValueError: not an SSL model; ExtractorUnavailable: weights missing
    n_states = ex.config_.num_hidden_layers + 1
    layer = cfg.layer
    if layer is not None:
        if not -n_states <= layer < n_states:
            raise ValueError(f"layer {layer} is not a hidden-state index of {cfg.model!r}; valid: "
                             f"0..{n_states - 1} (0 = input of the first transformer layer) or "
                             f"-{n_states}..-1; leave it out for the last hidden state")
        layer %= n_states

    # clips, labels, outputs
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val"])]
    ids, seconds, unreadable = [], [], {}
    for cid, path in clips["path"].items():
        try:
            frames, rate, _ = audio_info(path)
        except Exception as exc:  # noqa: BLE001
            unreadable[cid] = str(exc)
            log.warning("clip %s left out: %s", cid, exc)
            continue
        ids.append(cid)
        seconds.append(frames / rate if rate else 0.0)
    split = clips.loc[ids, "split"].to_numpy()
    truths = {t.name: {tg.name: target_array(tg, corpus.labels, ids) for tg in t.targets} for t in tasks}
    ds = Dataset(ids, split, np.zeros((len(ids), 0), np.float32), tasks, truths, [])
    opts = TrainOptions.from_dict({"loss": cfg.loss})
    outputs = make_outputs(tasks, ds, ds.rows("Train"), opts)
    labels = Labels(outputs, ds, device)
    has_label = np.zeros(len(ids), dtype=bool)
    for o in outputs:
        has_label |= labels.valid_rows(o.name)
    train_rows = ds.rows("Train")[has_label[ds.rows("Train")]]
    val_rows = ds.rows("Val")
    if len(train_rows) == 0 or not has_label[val_rows].any():
        raise ValueError(f"tasks {cfg.task!r}: {len(train_rows)} Train and "
                         f"{int(has_label[val_rows].sum())} Val clips have labels; fine-tuning "
                         f"needs both (the epoch is selected on Val)")
    durations = np.asarray(seconds, dtype=np.float64)
    cache = float(durations.sum()) * SAMPLE_RATE * 4 <= cfg.cache_gb * 2**30
    audio = _Audio({c: str(clips.loc[c, "path"]) for c in ids}, workers=cfg.workers, cache=cache)

    # model, heads, weighting
    torch.manual_seed(cfg.seed)
    model = _load_model(ex).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    backbone = _Backbone(model, do_normalize=ex.do_normalize_, use_mask=_uses_attention_mask(ex),
                         min_samples=ex.min_samples_, layer=layer, device=device)
    heads = FinetuneHeads(model.config.hidden_size, [o.spec() for o in outputs],
                          hidden=cfg.head_hidden, output=cfg.output, shared=cfg.shared_head).to(device)
    weighting = build_weighting(cfg.weighting, len(outputs)).to(device)
    names = [o.name for o in outputs]
    curves: dict[str, Any] = {"outputs": names, "stage": [], "epoch": [],
                              "train_loss": {n: [] for n in names}, "train_total": [],
                              "val_score": {}, "val_selection": [],
                              "task_weights": {n: [] for n in names}, "lr": [], "clips_per_s": [],
                              "audio_s_per_s": [], "seconds": []}
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root, run_name)
    tmp_dir = root / f".{run_name}.{os.getpid()}.tmp"
    tmp_dir.mkdir()
    log.info("fine-tune %s on %s: %d Train / %d Val clips, outputs %s, mask %s, normalise %s, "
             "device %s", cfg.model, cfg.task, len(train_rows), len(val_rows), names,
             backbone.use_mask, backbone.do_normalize, device)
    run = _Run(cfg, tasks, ds, outputs, labels,
               train_class_weights(outputs, ds, train_rows, device, cfg.class_weights),
               train_rows, val_rows, audio, backbone, heads, weighting, device, curves, tmp_dir,
               on_phase, progress, durations)
    try:
        stage1 = _stage1(run, t0) if cfg.frozen_epochs else None
        stage2 = _stage2(run, t0) if cfg.epochs else None
        if stage1 and stage2 and stage2["selection"] < stage1["selection"]:
            log.warning("stage 2's best Val headline %.4f is below stage 1's %.4f: the fine-tuned "
                        "backbone did not help here", stage2["selection"], stage1["selection"])
        # final Val scores of the restored state
        emb_va, rows_va = run.embed_rows(val_rows, "final Val")
        preds = run.val_predict(emb_va, rows_va)
        metrics = _metrics(run, preds, stage1, stage2, unreadable, t0)
        _save(run, ex, layer, metrics, started, tmp_dir)
        os.replace(tmp_dir, run_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    log.info("fine-tuned model written to %s (Val %s = %.4f)", run_dir, metrics["val"]["metric"],
             metrics["val"]["score"])
    return FinetuneResult(run_dir, run_dir / MODEL_SUBDIR, metrics)


def _metrics(run: _Run, preds: dict[str, np.ndarray], stage1: dict | None, stage2: dict | None,
             unreadable: dict[str, str], t0: float) -> dict[str, Any]:
    """Val scores per task (heads.evaluate), the stage summaries and the speed."""
    per_task: dict[str, Any] = {}
    for t in run.tasks:
        truth = {tg.name: run.ds.truths[t.name][tg.name][run.val_rows] for tg in t.targets}
        pred = {o.target.name: preds[o.name] for o in run.outputs if o.task == t.name}
        val = score_task(t, truth, pred)
        val["ci"] = list(bootstrap_task(t, truth, pred, n_boot=run.cfg.n_boot, seed=0))
        val["n"] = int(len(run.val_rows))
        per_task[t.name] = {"val": val}
    if len(run.tasks) == 1:
        top = {k: per_task[run.tasks[0].name]["val"][k] for k in ("score", "metric")}
    else:
        top = {"score": float(np.mean([per_task[t.name]["val"]["score"] for t in run.tasks])),
               "metric": "mean of task headlines (" + ", ".join(f"{t.name}: {t.headline}"
                                                                for t in run.tasks) + ")"}
    c = run.curves
    s2 = [i for i, s in enumerate(c["stage"]) if s == 2]
    return {"run": run.cfg.run_name, "base_model": run.cfg.model, "task": run.cfg.task,
            "val": top, "tasks": per_task, "stage1": stage1, "stage2": stage2,
            "n_clips": {"Train": int(len(run.train_rows)), "Val": int(len(run.val_rows))},
            "left_out": {**unreadable, **run.audio.failed},
            "stage2_clips_per_s": float(np.mean([c["clips_per_s"][i] for i in s2])) if s2 else None,
            "stage2_audio_s_per_s": float(np.mean([c["audio_s_per_s"][i] for i in s2])) if s2 else None,
            "seconds": round(time.perf_counter() - t0, 3),
            "date": _dt.datetime.now().isoformat(timespec="seconds")}


def _save(run: _Run, ex: SSLExtractor, layer: int | None, metrics: dict[str, Any], started: str,
          tmp_dir: Path) -> None:
    """Backbone (save_pretrained + preprocessor + finetuned.json), heads, config, metrics."""
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    cfg = run.cfg
    model_dir = tmp_dir / MODEL_SUBDIR
    run.backbone.model.save_pretrained(model_dir)
    src = ex.source_.directory
    if src is not None and (src / "preprocessor_config.json").is_file():
        shutil.copy2(src / "preprocessor_config.json", model_dir / "preprocessor_config.json")
    else:  # spell out what the base was used with, so extraction reads the same
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                 do_normalize=run.backbone.do_normalize,
                                 return_attention_mask=run.backbone.use_mask).save_pretrained(model_dir)
    untrained = src is not None and (src / UNTRAINED_MARKER).is_file()
    if untrained:  # a random start stays labelled: reports must not take it for a result
        shutil.copy2(src / UNTRAINED_MARKER, model_dir / UNTRAINED_MARKER)
    base_id = ex.identity()["weights"]
    record = {"name": readable_name(cfg.model, cfg.run_name), "base_model": cfg.model,
              "base_weights": base_id, "base_untrained": untrained, "run": cfg.run_name,
              "run_dir": str(Path(cfg.workdir).resolve() / FINETUNED_DIR / cfg.run_name),
              "tasks": [t.name for t in run.tasks], "layer": layer, "pooling": "mean",
              "val": metrics["val"], "date": metrics["date"]}
    _write_json(model_dir / FINETUNED_FILE, record)
    torch.save({"heads": run.heads.state_dict(), "weighting": run.weighting.state_dict(),
                "weighting_spec": cfg.weighting, "head_hidden": cfg.head_hidden,
                "shared_head": cfg.shared_head, "output": cfg.output,
                "input_dim": run.backbone.model.config.hidden_size, "layer": layer, "pooling": "mean",
                "net_tasks": [o.spec() for o in run.outputs],
                "outputs": [{"name": o.name, "task": o.task, "target": o.target.name, "loss": o.loss,
                             "lo": o.lo, "hi": o.hi, "classes": o.target.classes}
                            for o in run.outputs]},
               tmp_dir / "heads.pt")
    config = {"options": dataclasses.asdict(cfg), "run_name": cfg.run_name, "base_model": cfg.model,
              "base_weights": base_id, "model_type": ex.config_.model_type,
              "tasks": [t.name for t in run.tasks], "outputs": [o.name for o in run.outputs],
              "layer": layer, "normalize": run.backbone.do_normalize,
              "attention_mask": run.backbone.use_mask,
              "attn_implementation": ex.attn_implementation_, "device": str(run.device),
              "compute_dtype": "bfloat16-autocast" if run.device.type == "cuda" else "float32",
              "started": started, "finished": metrics["date"],
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "numpy": np.__version__}}
    _write_json(tmp_dir / "config.json", config)
    _write_json(tmp_dir / "metrics.json", metrics)


def _reuse(cfg: FinetuneConfig, run_dir: Path) -> FinetuneResult:
    """A finished run of this name: reuse it when its settings are these, else refuse."""
    stored = json.loads((run_dir / "config.json").read_text())["options"]
    mine = cfg.settings()
    diff = sorted(k for k in mine if stored.get(k) != mine[k])
    if diff:
        raise FileExistsError(
            f"{run_dir} holds a fine-tuning run with other settings ({', '.join(diff)} differ: "
            f"{ {k: stored.get(k) for k in diff} } stored, { {k: mine[k] for k in diff} } asked); "
            f"choose another --run-name or remove that folder")
    log.info("%s is finished with these settings: reusing it", run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return FinetuneResult(run_dir, run_dir / MODEL_SUBDIR, metrics, resumed=True)


def _remove_stale_tmp(root: Path, run_name: str) -> None:
    """Remove temporary folders of this run name left by processes that no longer run."""
    for tmp in root.glob(f".{run_name}.*.tmp"):
        pid = tmp.name[len(run_name) + 2:-4]
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if alive and int(pid) != os.getpid():
            raise FileExistsError(f"process {pid} is fine-tuning run {run_name!r} right now "
                                  f"({tmp}); wait for it or choose another --run-name")
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------- reuse
def load_finetuned(run_dir: str | os.PathLike, device: str = "cpu"
                   ) -> tuple[nn.Module, FinetuneHeads, dict[str, Any]]:
    """The backbone (eval mode) and heads of a finished run, with the heads checkpoint dict."""
    from transformers import AutoModel

    run_dir = Path(run_dir)
    model = AutoModel.from_pretrained(run_dir / MODEL_SUBDIR, local_files_only=True).eval().to(device)
    ckpt = torch.load(run_dir / "heads.pt", map_location=device, weights_only=False)
    heads = FinetuneHeads(ckpt["input_dim"], ckpt["net_tasks"], hidden=ckpt["head_hidden"],
                          output=ckpt["output"], shared=ckpt["shared_head"])
    heads.load_state_dict(ckpt["heads"])
    return model, heads.eval().to(device), ckpt


def store_embeddings(model_dir: str | os.PathLike, workdir: str | os.PathLike,
                     options: ExtractOptions | None = None, *,
                     on_start: Callable[[int, float], None] | None = None,
                     progress: ProgressFn | None = None) -> Any:
    """Extract the fine-tuned backbone's embeddings into the workdir's store, like `extract`.

    The set is ``ssl:<model_dir>`` (absolute), named from its ``finetuned.json``; the store's
    crash safety and resumption are those of :func:`extract.run.extract_corpus`.

    Returns:
        The :class:`extract.run.ExtractSummary`.

    Raises:
        WorkdirBusy: another extraction holds the workdir.
        ValueError / ExtractorUnavailable: a bad option, or the folder cannot be loaded.
    """
    from extract.lock import WorkdirLock
    from extract.run import extract_corpus, prepare_extractor
    from extract.store import FeatureStore

    options = options or ExtractOptions()
    spec = f"ssl:{Path(model_dir).resolve()}"
    prepared = prepare_extractor(spec, options)  # fails before the store is touched
    corpus = open_corpus(workdir)
    store = FeatureStore(workdir)
    with WorkdirLock(workdir, purpose="finetune"):
        store.check_schema()
        return extract_corpus(store, corpus, spec, options=options, prepared=prepared,
                              on_start=on_start, progress=progress)


__all__ = ["FinetuneConfig", "FinetuneResult", "FinetuneHeads", "finetune", "store_embeddings",
           "load_finetuned", "default_run_name", "model_basename", "FINETUNED_DIR", "MODEL_SUBDIR"]
