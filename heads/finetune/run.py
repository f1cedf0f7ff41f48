"""finetune(): one run end to end, its atomic folder, reuse, the embeddings back in the store."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import pandas as pd

from data.audio import audio_info, span_frames
from data.corpus import Corpus
from data.tasks import parse_tasks, resolve_task, target_array
from data.workdir import open_corpus
from extract.base import SAMPLE_RATE, ExtractOptions
from extract.ssl import FINETUNED_FILE, SSLExtractor
from extract.untrained import MARKER as UNTRAINED_MARKER
from heads.aux_metrics import AUX_KEY
from heads.finetune.auxiliary import VOCAB_FILE, AuxHeads, AuxTargets, aux_metrics
from heads.finetune.backbone import (FinetuneHeads, WhisperBackbone, build_backbone, build_heads,
                                     head_settings, load_model)
from heads.finetune.batches import ClipAudio
from heads.finetune.config import (FINETUNED_DIR, MODEL_SUBDIR, FinetuneConfig, FinetuneResult,
                                   PhaseFn, ProgressFn, default_run_name, option_defaults,
                                   readable_name, write_json)
from heads.config import parse_adversary
from heads.finetune.stages import Run, run_stage1, run_stage2
from heads.scoring import score_task, task_ci
from heads.config import TrainOptions
from heads.dataset import Dataset
from heads.training.inputs import pick_device
from heads.training.outputs import Labels, make_outputs, train_class_weights
from heads.training.weighting import build_weighting

log = logging.getLogger(__name__)


def finetune(cfg: FinetuneConfig, *, on_phase: PhaseFn | None = None,
             progress: ProgressFn | None = None, corpus: Corpus | None = None,
             record: dict[str, Any] | None = None) -> FinetuneResult:
    """Fine-tune the backbone with multitask heads; write WORKDIR/finetuned/<run>/ atomically.

    Args:
        cfg: the settings.
        on_phase: called when a pass over clips starts (description, clips, audio seconds).
        progress: called as clips finish (clips, audio seconds).
        corpus: the corpus to train on instead of the workdir's (a cross-validation fold:
            :meth:`data.folds.Fold.apply`); its ``split`` column says Train / Val / Test.
        record: recorded in config.json and metrics.json (the fold, the recipe).

    Returns:
        A :class:`FinetuneResult` (``resumed`` when a finished run of the same name and
        settings was found and reused).

    Raises:
        ValueError: a bad option, a model that is not a speech SSL model, a layer out of range,
            no Train clip with labels, Val clips none of which has a label, CUDA asked for but
            missing, CTC without transcripts, an adversary column the corpus lacks.
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
    run_dir = Path(cfg.workdir) / FINETUNED_DIR / run_name
    root = run_dir.parent
    if (run_dir / "config.json").is_file() and (run_dir / MODEL_SUBDIR / "config.json").is_file():
        return _reuse(cfg, run_dir)

    if corpus is None:
        corpus = open_corpus(cfg.workdir, need_split=True)
    tasks = [resolve_task(t, corpus.labels) for t in parse_tasks(cfg.task)]
    ex = SSLExtractor(cfg.model, ExtractOptions(device="cpu", whisper_input=cfg.whisper_input))
    # ValueError: not an SSL model, whisper_input trimmed for another family;
    # ExtractorUnavailable: weights missing
    ex.resolve()
    n_states = ex.family_.num_states(ex.config_)
    layer = cfg.layer
    if layer is not None:
        if not -n_states <= layer < n_states:
            raise ValueError(f"layer {layer} is not a hidden-state index of {cfg.model!r}; valid: "
                             f"0..{n_states - 1} (0 = input of the first transformer layer) or "
                             f"-{n_states}..-1; leave it out for the last hidden state")
        layer %= n_states

    # clips (a segment: its span only), labels, outputs
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    spans = corpus.spans()
    ids, seconds, unreadable = [], [], dict(corpus.clip_errors())
    for cid, path in clips["path"].items():
        if cid in unreadable:
            log.warning("clip %s left out: %s", cid, unreadable[cid])
            continue
        try:
            seconds.append(_clip_seconds(path, spans.get(cid)))
        except Exception as exc:  # noqa: BLE001
            unreadable[cid] = str(exc)
            log.warning("clip %s left out: %s", cid, exc)
            continue
        ids.append(cid)
    unreadable = {c: r for c, r in unreadable.items() if c in clips.index}
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
    test_rows = ds.rows("Test")
    test_rows = test_rows if has_label[test_rows].any() else test_rows[:0]
    if len(train_rows) == 0 or (len(val_rows) and not has_label[val_rows].any()):
        raise ValueError(f"tasks {cfg.task!r}: {len(train_rows)} Train and "
                         f"{int(has_label[val_rows].sum())} of {len(val_rows)} Val clips have "
                         f"labels; fine-tuning needs Train labels, and Val labels when there are "
                         f"Val clips (the epoch is selected on Val)")
    if not len(val_rows):
        log.info("no Val clips: no epoch is selected, each stage keeps its last epoch")
    aux_targets = None
    adversary = parse_adversary(cfg.adversary) if cfg.adversary else None
    if cfg.ctc > 0 or adversary is not None:
        aux_targets = AuxTargets.build(corpus, ids, train_rows, ctc=cfg.ctc or None,
                                       adversary=cfg.adversary)
    durations = np.asarray(seconds, dtype=np.float64)
    cache = float(durations.sum()) * SAMPLE_RATE * 4 <= cfg.cache_gb * 2**30
    audio = ClipAudio({c: str(clips.loc[c, "path"]) for c in ids}, workers=cfg.workers, cache=cache,
                      spans={c: spans[c] for c in ids if c in spans})

    # model, heads, weighting
    torch.manual_seed(cfg.seed)
    model = load_model(ex).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    backbone = build_backbone(model, ex, layer=layer, device=device)
    heads = build_heads(backbone.hidden_size, [o.spec() for o in outputs],
                        head_settings(cfg, outputs)).to(device)
    weighting = build_weighting(cfg.weighting, len(outputs)).to(device)
    aux = None
    if aux_targets is not None:
        aux = AuxHeads(backbone.hidden_size,
                       vocab_size=len(aux_targets.vocab) if aux_targets.vocab is not None else None,
                       n_classes=len(aux_targets.classes) or None,
                       beta=adversary[1] if adversary else 0.0, mode=cfg.adversary_mode,
                       beta_at=cfg.adversary_at).to(device)
    names = [o.name for o in outputs]
    curves: dict[str, Any] = {"outputs": names, "stage": [], "epoch": [],
                              "train_loss": {n: [] for n in names}, "train_total": [],
                              "val_score": {}, "val_selection": [],
                              "task_weights": {n: [] for n in names}, "lr": [], "clips_per_s": [],
                              "audio_s_per_s": [], "seconds": []}
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root, run_dir.name)
    tmp_dir = root / f".{run_dir.name}.{os.getpid()}.tmp"
    tmp_dir.mkdir()
    log.info("fine-tune %s (%s) on %s: %d Train / %d Val / %d Test clips, outputs %s%s, mask %s, "
             "normalise %s, device %s", cfg.model, backbone.family, cfg.task, len(train_rows),
             len(val_rows), len(test_rows), names, _aux_text(cfg, aux_targets), backbone.use_mask,
             backbone.do_normalize, device)
    run = Run(cfg, tasks, ds, outputs, labels,
               train_class_weights(outputs, ds, train_rows, device, cfg.class_weights),
               train_rows, val_rows, audio, backbone, heads, weighting, device, curves, tmp_dir,
               on_phase, progress, durations, aux=aux, aux_targets=aux_targets, test_rows=test_rows)
    try:
        stage1 = run_stage1(run, t0) if cfg.frozen_epochs else None
        stage2 = run_stage2(run, t0) if cfg.epochs else None
        if (stage1 and stage2 and stage1["selection"] is not None
                and stage2["selection"] < stage1["selection"]):
            log.warning("stage 2's best Val headline %.4f is below stage 1's %.4f: the fine-tuned "
                        "backbone did not help here", stage2["selection"], stage1["selection"])
        # final scores of the restored state, every split that has clips
        splits = {"val": val_rows, "test": test_rows}
        if aux is not None and aux.adversary is not None:
            splits["train"] = train_rows  # the classes' own clips: accuracy and speaker probe
        evaluated = {name: run.encode_rows(rows, f"final {name.capitalize()}")
                     for name, rows in splits.items() if len(rows)}
        metrics = _metrics(run, evaluated, stage1, stage2, unreadable, t0)
        if record:
            metrics.update(record)
        _write_predictions(run, evaluated, tmp_dir)
        save_run(run, ex, layer, metrics, started, tmp_dir, record)
        os.replace(tmp_dir, run_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    top = metrics["val"] or metrics.get("test") or {"metric": "score", "score": float("nan")}
    log.info("fine-tuned model written to %s (%s %s = %.4f)", run_dir,
             "Val" if metrics["val"] else "Test", top["metric"], top["score"])
    return FinetuneResult(run_dir, run_dir / MODEL_SUBDIR, metrics)


def _clip_seconds(path: str, span: tuple[float | None, float | None] | None) -> float:
    """Duration of a clip from its file header (a segment: its span's frames)."""
    frames, rate, _ = audio_info(path)
    if span is None:
        return frames / rate if rate else 0.0
    first, stop = span_frames(path, span[0], span[1], rate=rate, frames=frames)
    return (stop - first) / rate


def _aux_text(cfg: FinetuneConfig, targets: AuxTargets | None) -> str:
    if targets is None:
        return ""
    parts = []
    if targets.vocab is not None:
        parts.append(f"CTC alpha {cfg.ctc:g} over {len(targets.vocab)} symbols")
    if targets.classes:
        parts.append(f"{targets.column} adversary ({cfg.adversary}, {cfg.adversary_mode}) over "
                     f"{len(targets.classes)} classes")
    return " + " + ", ".join(parts)


def _metrics(run: Run, evaluated: dict[str, tuple[torch.Tensor, np.ndarray, list]],
             stage1: dict | None, stage2: dict | None, unreadable: dict[str, str], t0: float
             ) -> dict[str, Any]:
    """Scores per task and split (heads.scoring), the auxiliary heads' scores, the stage
    summaries and the speed."""
    per_task: dict[str, Any] = {t.name: {} for t in run.tasks}
    tops: dict[str, Any] = {"val": None, "test": None}
    for split, (emb, rows, extra) in evaluated.items():
        split_rows = {"val": run.val_rows, "test": run.test_rows, "train": run.train_rows}[split]
        if split != "train":
            preds = run.predict(emb, rows, split_rows, extra)
            for t in run.tasks:
                truth = {tg.name: run.ds.truths[t.name][tg.name][split_rows] for tg in t.targets}
                pred = {o.target.name: preds[o.name] for o in run.outputs if o.task == t.name}
                entry = score_task(t, truth, pred)
                entry["ci"] = list(task_ci(t, truth, pred, n_boot=run.cfg.n_boot, seed=0))
                entry["n"] = int(len(split_rows))
                per_task[t.name][split] = entry
            if len(run.tasks) == 1:
                tops[split] = {k: per_task[run.tasks[0].name][split][k] for k in ("score", "metric")}
            else:
                tops[split] = {
                    "score": float(np.mean([per_task[t.name][split]["score"] for t in run.tasks])),
                    "metric": "mean of task headlines (" + ", ".join(
                        f"{t.name}: {t.headline}" for t in run.tasks) + ")"}
    c = run.curves
    s2 = [i for i, s in enumerate(c["stage"]) if s == 2]
    out = {"run": run.cfg.run_name, "base_model": run.cfg.model, "task": run.cfg.task,
           "val": tops["val"], "tasks": per_task, "stage1": stage1, "stage2": stage2,
           "n_clips": {"Train": int(len(run.train_rows)), "Val": int(len(run.val_rows)),
                       "Test": int(len(run.test_rows))},
           "left_out": {**unreadable, **run.audio.failed},
           "stage2_clips_per_s": float(np.mean([c["clips_per_s"][i] for i in s2])) if s2 else None,
           "stage2_audio_s_per_s": float(np.mean([c["audio_s_per_s"][i] for i in s2])) if s2 else None,
           "seconds": round(time.perf_counter() - t0, 3),
           "date": _dt.datetime.now().isoformat(timespec="seconds")}
    if tops["test"] is not None:
        out["test"] = tops["test"]
    if run.aux is not None and run.aux_targets is not None:
        out[AUX_KEY] = aux_metrics(run.aux_targets, run.aux, evaluated, alpha=run.cfg.ctc,
                                   adversary=run.cfg.adversary, mode=run.cfg.adversary_mode,
                                   beta_at=run.cfg.adversary_at)
    return out


def _write_predictions(run: Run, evaluated: dict[str, tuple[torch.Tensor, np.ndarray, list]],
                       tmp_dir: Path) -> None:
    """predictions_<split>.csv for Val and Test: truth and prediction per output, and the
    auxiliary heads' transcript and speaker where they exist."""
    for split, (emb, rows, extra) in evaluated.items():
        if split == "train":
            continue
        split_rows = {"val": run.val_rows, "test": run.test_rows}[split]
        preds = run.predict(emb, rows, split_rows, extra)
        table: dict[str, Any] = {"clip_id": [run.ds.ids[r] for r in split_rows]}
        for o in run.outputs:
            truth = run.ds.truths[o.task][o.target.name][split_rows]
            for name, values in (("true", truth), ("pred", preds[o.name])):
                values = np.asarray(values)
                if values.ndim == 1:
                    table[f"{o.name}_{name}"] = _class_names(o, values)
                else:
                    for j in range(values.shape[1]):
                        table[f"{o.name}{j}_{name}"] = values[:, j]
        if run.aux_targets is not None:
            by_row = dict(zip(rows, extra))
            t = run.aux_targets
            if t.vocab is not None:
                table["text_true"] = [t.texts[r] or "" for r in split_rows]
                table["text_pred"] = [(by_row.get(r) or {}).get("text", "") for r in split_rows]
            if t.classes:
                table[f"{t.column}_pred"] = [
                    t.classes[by_row[r]["code"]] if r in by_row and "code" in by_row[r] else ""
                    for r in split_rows]
        pd.DataFrame(table).to_csv(tmp_dir / f"predictions_{split}.csv", index=False)


def _class_names(o: Any, codes: np.ndarray) -> list[Any]:
    classes = list(o.target.classes or [])
    if o.kind != "classification" or not classes:
        return list(codes)
    return [classes[int(c)] if 0 <= int(c) < len(classes) else "" for c in codes]


def save_run(run: Run, ex: SSLExtractor, layer: int | None, metrics: dict[str, Any], started: str,
             tmp_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """Backbone (save_pretrained + preprocessor + finetuned.json), heads (+ vocab.json),
    config, metrics; ``extra`` (fold, recipe) goes into config.json too."""
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    cfg = run.cfg
    model_dir = tmp_dir / MODEL_SUBDIR
    run.backbone.model.save_pretrained(model_dir)
    src = ex.source_.directory
    if src is not None and (src / "preprocessor_config.json").is_file():
        shutil.copy2(src / "preprocessor_config.json", model_dir / "preprocessor_config.json")
    elif hasattr(run.backbone, "enc"):  # the log-mel / fbank feature extractor it was trained with
        run.backbone.enc.fe.save_pretrained(model_dir)
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
              "val": metrics["val"], "date": metrics["date"], "family": run.backbone.family}
    if run.backbone.family == WhisperBackbone.family:
        record["whisper_input"] = cfg.whisper_input
    write_json(model_dir / FINETUNED_FILE, record)
    torch.save({"heads": run.heads.state_dict(), "weighting": run.weighting.state_dict(),
                "weighting_spec": cfg.weighting, **head_settings(cfg, run.outputs),
                "input_dim": run.backbone.hidden_size, "layer": layer, "pooling": cfg.frame_pooling,
                "net_tasks": [o.spec() for o in run.outputs],
                "outputs": [{"name": o.name, "task": o.task, "target": o.target.name, "loss": o.loss,
                             "lo": o.lo, "hi": o.hi, "classes": o.target.classes}
                            for o in run.outputs],
                "aux": None if run.aux is None else {
                    **run.aux.record(), "state": run.aux.state_dict(), "alpha": cfg.ctc,
                    "column": run.aux_targets.column, "classes": list(run.aux_targets.classes),
                    "vocab_file": VOCAB_FILE if run.aux.ctc is not None else None}},
               tmp_dir / "heads.pt")
    if run.aux_targets is not None and run.aux_targets.vocab is not None:
        run.aux_targets.vocab.save(tmp_dir / VOCAB_FILE)
    config = {"options": dataclasses.asdict(cfg), "run_name": cfg.run_name, "base_model": cfg.model,
              "base_weights": base_id, "model_type": ex.config_.model_type,
              "family": run.backbone.family,
              "tasks": [t.name for t in run.tasks], "outputs": [o.name for o in run.outputs],
              "layer": layer, "normalize": run.backbone.do_normalize,
              "attention_mask": run.backbone.use_mask,
              "attn_implementation": ex.attn_implementation_, "device": str(run.device),
              "compute_dtype": "bfloat16-autocast" if run.device.type == "cuda" else "float32",
              "started": started, "finished": metrics["date"],
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "numpy": np.__version__},
              **(extra or {})}
    write_json(tmp_dir / "config.json", config)
    write_json(tmp_dir / "metrics.json", metrics)


def _reuse(cfg: FinetuneConfig, run_dir: Path) -> FinetuneResult:
    """A finished run of this name: reuse it when its settings are these, else refuse."""
    stored = {**option_defaults(), **json.loads((run_dir / "config.json").read_text())["options"]}
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


def load_finetuned(run_dir: str | os.PathLike, device: str = "cpu"
                   ) -> tuple[nn.Module, FinetuneHeads, dict[str, Any]]:
    """The backbone (eval mode) and heads of a finished run, with the heads checkpoint dict
    (heads with ``sequence`` True, a ``head_rnn`` run's, read ``(frames, lengths)``)."""
    from transformers import AutoModel

    run_dir = Path(run_dir)
    model = AutoModel.from_pretrained(run_dir / MODEL_SUBDIR, local_files_only=True).eval().to(device)
    ckpt = torch.load(run_dir / "heads.pt", map_location=device, weights_only=False)
    heads = build_heads(ckpt["input_dim"], ckpt["net_tasks"], ckpt)
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
        ValueError / ExtractorUnavailable: a bad option (a Whisper model's ``whisper_input``
            other than the one it was fine-tuned on), or the folder cannot be loaded.
    """
    from extract.lock import WorkdirLock
    from extract.run import extract_corpus, prepare_extractor
    from extract.store import FeatureStore

    options = options or ExtractOptions()
    spec = f"ssl:{Path(model_dir).resolve()}"
    info_file = Path(model_dir) / FINETUNED_FILE
    trained_on = json.loads(info_file.read_text()).get("whisper_input") if info_file.is_file() else None
    if trained_on is not None and options.whisper_input != trained_on:
        raise ValueError(
            f"{model_dir} was fine-tuned on whisper-input {trained_on}; its set is stored with the "
            f"input it was trained on (give --whisper-input {trained_on}). For the other "
            f"representation: python run_pipeline.py extract --workdir {workdir} --features "
            f"{spec} --whisper-input {options.whisper_input}")
    prepared = prepare_extractor(spec, options)  # fails before the store is touched
    corpus = open_corpus(workdir)
    store = FeatureStore(workdir)
    with WorkdirLock(workdir, purpose="finetune"):
        store.check_schema()
        return extract_corpus(store, corpus, spec, options=options, prepared=prepared,
                              on_start=on_start, progress=progress)

