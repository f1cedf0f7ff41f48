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

from data.audio import audio_info
from data.tasks import parse_tasks, resolve_task, target_array
from data.workdir import open_corpus
from extract.base import SAMPLE_RATE, ExtractOptions
from extract.ssl import FINETUNED_FILE, SSLExtractor
from extract.untrained import MARKER as UNTRAINED_MARKER
from heads.finetune.backbone import Backbone, FinetuneHeads, load_model, uses_attention_mask
from heads.finetune.batches import ClipAudio
from heads.finetune.config import (FINETUNED_DIR, MODEL_SUBDIR, FinetuneConfig, FinetuneResult,
                                   PhaseFn, ProgressFn, default_run_name, readable_name,
                                   write_json)
from heads.finetune.stages import Run, run_stage1, run_stage2
from heads.scoring import score_task, task_ci
from heads.config import TrainOptions
from heads.dataset import Dataset
from heads.training.inputs import pick_device
from heads.training.outputs import Labels, make_outputs, train_class_weights
from heads.training.weighting import build_weighting

log = logging.getLogger(__name__)


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

    corpus = open_corpus(cfg.workdir, need_split=True)
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
    audio = ClipAudio({c: str(clips.loc[c, "path"]) for c in ids}, workers=cfg.workers, cache=cache)

    # model, heads, weighting
    torch.manual_seed(cfg.seed)
    model = load_model(ex).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    backbone = Backbone(model, do_normalize=ex.do_normalize_, use_mask=uses_attention_mask(ex),
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
    run = Run(cfg, tasks, ds, outputs, labels,
               train_class_weights(outputs, ds, train_rows, device, cfg.class_weights),
               train_rows, val_rows, audio, backbone, heads, weighting, device, curves, tmp_dir,
               on_phase, progress, durations)
    try:
        stage1 = run_stage1(run, t0) if cfg.frozen_epochs else None
        stage2 = run_stage2(run, t0) if cfg.epochs else None
        if stage1 and stage2 and stage2["selection"] < stage1["selection"]:
            log.warning("stage 2's best Val headline %.4f is below stage 1's %.4f: the fine-tuned "
                        "backbone did not help here", stage2["selection"], stage1["selection"])
        # final Val scores of the restored state
        emb_va, rows_va = run.embed_rows(val_rows, "final Val")
        preds = run.val_predict(emb_va, rows_va)
        metrics = _metrics(run, preds, stage1, stage2, unreadable, t0)
        save_run(run, ex, layer, metrics, started, tmp_dir)
        os.replace(tmp_dir, run_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    log.info("fine-tuned model written to %s (Val %s = %.4f)", run_dir, metrics["val"]["metric"],
             metrics["val"]["score"])
    return FinetuneResult(run_dir, run_dir / MODEL_SUBDIR, metrics)


def _metrics(run: Run, preds: dict[str, np.ndarray], stage1: dict | None, stage2: dict | None,
             unreadable: dict[str, str], t0: float) -> dict[str, Any]:
    """Val scores per task (heads.scoring), the stage summaries and the speed."""
    per_task: dict[str, Any] = {}
    for t in run.tasks:
        truth = {tg.name: run.ds.truths[t.name][tg.name][run.val_rows] for tg in t.targets}
        pred = {o.target.name: preds[o.name] for o in run.outputs if o.task == t.name}
        val = score_task(t, truth, pred)
        val["ci"] = list(task_ci(t, truth, pred, n_boot=run.cfg.n_boot, seed=0))
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


def save_run(run: Run, ex: SSLExtractor, layer: int | None, metrics: dict[str, Any], started: str,
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
    write_json(model_dir / FINETUNED_FILE, record)
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
    write_json(tmp_dir / "config.json", config)
    write_json(tmp_dir / "metrics.json", metrics)


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

