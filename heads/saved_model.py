"""The saved model of a run: the one format, written by ``train``, read by ``predict``.

Every run folder keeps the fitted model of every seed and one small JSON manifest beside the
weights::

    WORKDIR/runs/<run>/model.json                          the manifest (format, version 1)
    WORKDIR/runs/<run>/model_<task>_<target>_seed<k>.joblib classical heads: one per target
    WORKDIR/runs/<run>/model_seed<k>[_<output>].pt          torch heads (heads.training.checkpoint)

A classical ``.joblib`` file holds a plain scikit-learn ``Pipeline`` (the ``StandardScaler``
fitted on Train, then the chosen estimator; XGBoost's estimator for ``xgb``) with the class
codes it predicts; nothing of this project is pickled, so the file survives a move of the
head's code. A torch ``.pt`` file holds the net's state dict, its config, the Train
standardisation and each output's label range.

The manifest says everything else predict needs: the head and its family, the input kind, the
feature sets (key, spec, field, layer, width, the extractor's configuration and options, so
that exactly these features can be computed again), the tasks with their targets (label
columns, class names in code order, value range), for each task the seed whose predictions the
run reports (the median-scoring one) and that seed's model files, and the preprocessing.

Model files are pickles (joblib, ``torch.load``): read only runs you trust, as with any
scikit-learn or torch model file.

Example (a manifest, abridged)::

    {"format": "vocal-probe-model", "version": 1, "head": "ridge", "family": "classical",
     "input_kind": "vector",
     "features": [{"key": "opensmile-eGeMAPSv02-functionals-3f2a...", "field": "functionals",
                   "layer": null, "dim": 88, "spec": "opensmile:eGeMAPSv02",
                   "config": {...}, "extract_options": {...}}],
     "tasks": [{"name": "classify:type", "seed": 0, "targets": [{"name": "type",
                "kind": "classification", "columns": ["type"], "classes": ["Cry", "Gasp"],
                "model": "model_classify_type_type_seed0.joblib"}]}], ...}
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.tasks import Target, Task
from extract.store import FeatureStore
from heads.rundir import jsonable, safe_name, write_json

log = logging.getLogger(__name__)

MANIFEST = "model.json"
FORMAT = "vocal-probe-model"
VERSION = 1
"""Manifest version; a reader refuses a version it does not know."""

PREPROCESSING = {
    "classical": "features standardised with the Train mean and population std (the "
                 "StandardScaler, first step of each saved Pipeline); regression predictions "
                 "clipped to the target's value range",
    "torch": "features standardised with the Train mean and floored population std stored in "
             "the checkpoint (heads.dataset.standardise); regression outputs mapped back to "
             "label units and clipped to the target's value range",
}


class SavedModelError(ValueError):
    """A run's saved model is missing, damaged or of an unknown version; the message says
    what to do."""


# ------------------------------------------------------------------------------------ writing
def classical_file(task: str, target: str, seed: int) -> str:
    """File name of a classical head's model of one target and seed.

    Example:
        >>> classical_file("classify:type", "type", 0)
        'model_classify_type_type_seed0.joblib'
    """
    return f"model_{safe_name(task)}_{safe_name(target)}_seed{seed}.joblib"


def save_classical(out_dir: str | os.PathLike | None, task: str, target: str, seed: int,
                   selection: Any) -> None:
    """Write the fitted pipeline of a classical head (a ``FitSelection``) atomically.

    Nothing is written when ``out_dir`` is None (a fit outside a run).
    """
    if out_dir is None:
        return
    import joblib

    path = Path(out_dir) / classical_file(task, target, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMAT, "version": VERSION, "pipeline": selection.model,
           "kind": selection.kind, "classes": selection.classes,
           "n_outputs": selection.n_outputs, "params": jsonable(selection.params)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    joblib.dump(obj, tmp)
    os.replace(tmp, path)


def model_files(family: str, tasks: Sequence[Task], seed: int,
                models: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """task -> target -> model file of one seed (classical: by name; torch: what the fit said)."""
    if family == "classical":
        return {t.name: {tg.name: classical_file(t.name, tg.name, seed) for tg in t.targets}
                for t in tasks}
    return {t.name: {tg.name: models.get(t.name, {}).get(tg.name) for tg in t.targets}
            for t in tasks}  # None: the head saved no model of that target


def feature_entries(store: FeatureStore, feature_desc: Sequence[Mapping[str, Any]]
                    ) -> list[dict[str, Any]]:
    """The manifest's ``features``: each set read by the run with what recomputes it."""
    out = []
    for d in feature_desc:
        header = store.header(d["key"])
        out.append({"key": d["key"], "spec": header.spec, "field": d["field"],
                    "layer": d.get("layer"), "dim": int(d["dim"]), "config": header.config,
                    "extract_options": header.provenance.get("options", {})})
    return out


def task_entry(task: Task, seed: int, files: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's entry of one task: its targets, the reported seed and its model files."""
    return {"name": task.name, "headline": task.headline, "description": task.description,
            "seed": int(seed),
            "targets": [{"name": tg.name, "kind": tg.kind, "columns": list(tg.columns),
                         "metric": tg.metric,
                         "classes": None if tg.classes is None else list(tg.classes),
                         "value_range": None if tg.value_range is None else list(tg.value_range),
                         "model": files[tg.name]} for tg in task.targets]}


def write_manifest(run_dir: Path, *, head: str, family: str, input_kind: str,
                   features: list[dict[str, Any]], tasks: list[dict[str, Any]],
                   options: Mapping[str, Any], pooling: str | None) -> Path:
    """Write ``run_dir/model.json`` (atomically) and return its path."""
    manifest = {"format": FORMAT, "version": VERSION, "head": head, "family": family,
                "input_kind": input_kind, "features": features, "tasks": tasks,
                "head_options": dict(options), "pooling": pooling,
                "preprocessing": PREPROCESSING[family]}
    path = Path(run_dir) / MANIFEST
    write_json(path, jsonable(manifest))
    return path


# ------------------------------------------------------------------------------------ reading
@dataclass
class Prediction:
    """Predictions of one target for n clips.

    Attributes:
        values: regression ``(n, k)`` float32 in label units; classification ``(n,)`` codes
            into ``target.classes``.
        probabilities: classification ``(n, C)`` over ``target.classes`` (0 for a class the
            model never saw in Train), or None when the estimator gives no probabilities
            (``ridge``, ``svc``: their decision values are not probabilities).
    """

    values: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass
class SavedModel:
    """A run's model as read from its manifest (:func:`load_saved_model`)."""

    run_dir: Path
    manifest: dict[str, Any]
    tasks: list[Task]

    @property
    def head(self) -> str:
        return self.manifest["head"]

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def input_kind(self) -> str:
        return self.manifest["input_kind"]

    @property
    def features(self) -> list[dict[str, Any]]:
        return self.manifest["features"]

    def predict(self, X: np.ndarray | Sequence[np.ndarray], *, device: str = "cpu"  # noqa: N803
                ) -> dict[str, dict[str, Prediction]]:
        """task -> target -> :class:`Prediction` for the clips of ``X``: the run's feature
        columns ``(n, D)`` in manifest order (vector heads), or one ``(T_i, D)`` frame array
        per clip (sequence heads), as stored: not standardised.

        Raises:
            SavedModelError: ``X`` has the wrong width.
        """
        width = sum(int(f["dim"]) for f in self.features)
        if self.input_kind == "vector":
            X = np.asarray(X, dtype=np.float32)  # noqa: N806
            bad = X.ndim != 2 or X.shape[1] != width
            got = f"an array of shape {X.shape}"
        else:
            widths = sorted({int(np.prod(a.shape[1:])) for a in X if len(a)})
            bad, got = bool(set(widths) - {width}), f"frames of {widths} values"
        if bad:
            raise SavedModelError(f"the model of {self.run_dir} reads {width} feature columns; "
                                  f"got {got}")
        out: dict[str, dict[str, Prediction]] = {}
        torch_cache: dict[str, dict[tuple[str, str], Prediction]] = {}
        for entry, task in zip(self.manifest["tasks"], self.tasks):
            out[task.name] = {}
            for t_entry, tg in zip(entry["targets"], task.targets):
                path = self.run_dir / t_entry["model"]
                if self.family == "classical":
                    out[task.name][tg.name] = _predict_classical(path, tg, X)
                else:
                    if t_entry["model"] not in torch_cache:
                        from heads.training.checkpoint import predict_checkpoint

                        scored = predict_checkpoint(  # torch only imported for torch runs
                            path, X, targets={(t.name, g.name): g for t in self.tasks
                                              for g in t.targets}, device=device)
                        torch_cache[t_entry["model"]] = {k: Prediction(*v)
                                                         for k, v in scored.items()}
                    out[task.name][tg.name] = torch_cache[t_entry["model"]][(task.name, tg.name)]
        return out


def _predict_classical(path: Path, tg: Target, X: np.ndarray) -> Prediction:  # noqa: N803
    """The prediction of a saved classical pipeline, as the head made it on its run."""
    import joblib

    obj = joblib.load(path)
    pipe = obj["pipeline"]
    out = np.asarray(pipe.predict(X))
    if obj["kind"] == "classification":
        classes = np.asarray(obj["classes"])
        codes = classes[out.astype(np.int64)]
        probs = None
        if hasattr(pipe, "predict_proba"):
            seen = np.asarray(pipe.predict_proba(X), dtype=np.float64)
            probs = np.zeros((len(X), len(tg.classes or ())), dtype=np.float64)
            probs[:, classes.astype(np.int64)] = seen
        return Prediction(codes.astype(np.int64), probs)
    p = out.astype(np.float64).reshape(len(X), -1).astype(np.float32)
    if tg.value_range is not None:
        p = np.clip(p, *tg.value_range)
    return Prediction(p)


def _task_of(entry: Mapping[str, Any]) -> Task:
    targets = tuple(Target(name=t["name"], kind=t["kind"], columns=tuple(t["columns"]),
                           metric=t["metric"],
                           classes=None if t["classes"] is None else tuple(t["classes"]),
                           value_range=None if t["value_range"] is None else tuple(t["value_range"]))
                    for t in entry["targets"])
    return Task(name=entry["name"], targets=targets, headline=entry["headline"],
                description=entry.get("description", ""))


def load_saved_model(run_dir: str | os.PathLike) -> SavedModel:
    """Read ``run_dir/model.json`` and check that every model file it names is there.

    Raises:
        SavedModelError: no such run folder, no manifest (a run trained before models were
            saved: the message gives the ``train`` command that trains it again), another
            format or version, or a missing model file.
    """
    import json

    run = Path(run_dir)
    if not run.is_dir():
        raise SavedModelError(f"--run {run} is not a folder; pass a run folder "
                              f"(WORKDIR/runs/<run>, see `report --workdir WORKDIR`)")
    path = run / MANIFEST
    if not path.is_file():
        raise SavedModelError(f"{run} has no {MANIFEST}: no model was saved with this run "
                              f"(it was trained before runs kept their models). Train it again: "
                              f"{retrain_command(run)}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        if manifest.get("version") != VERSION:
            raise SavedModelError(f"{path} is version {manifest.get('version')!r} of the saved-"
                                  f"model format; this vocal-probe reads version {VERSION}. Use "
                                  f"the vocal-probe that trained it, or train the run again: "
                                  f"{retrain_command(run)}")
        tasks = [_task_of(t) for t in manifest["tasks"]]
    except SavedModelError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SavedModelError(f"{path} is damaged ({exc}); train the run again: "
                              f"{retrain_command(run)}") from None
    unsaved = [f"{e['name']}/{t['name']}" for e in manifest["tasks"] for t in e["targets"]
               if not t.get("model")]
    if unsaved:
        raise SavedModelError(f"head {manifest.get('head')!r} of {run} saved no model of "
                              f"{', '.join(unsaved)}; predict needs a head that saves its models "
                              f"(every classical and torch head does)")
    missing = sorted({t["model"] for e in manifest["tasks"] for t in e["targets"]
                      if not (run / t["model"]).is_file()})
    if missing:
        raise SavedModelError(f"{run} lacks the model file(s) {', '.join(missing)} named in "
                              f"{MANIFEST}; restore them or train the run again: "
                              f"{retrain_command(run)}")
    return SavedModel(run, manifest, tasks)


def retrain_command(run: Path) -> str:
    """The ``train`` command that makes the run again, from its ``config.json``."""
    import json
    import shlex

    try:
        cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
        argv = ["python", "run_pipeline.py", "train", "--workdir", str(cfg["workdir"]),
                "--task", cfg["task"], "--features", *cfg["features"], "--head", cfg["head"]]
    except (OSError, ValueError, KeyError, TypeError):
        return (f"python run_pipeline.py train --workdir {run.parent.parent} --task TASK "
                f"--features SPEC --head HEAD --run-name {run.name}")
    if cfg.get("layer") is not None:
        argv += ["--layer", str(cfg["layer"])]
    if cfg.get("pooling") and cfg["pooling"] != "mean":
        argv += ["--pooling", cfg["pooling"]]
    if int(cfg.get("seeds") or 1) != 1:
        argv += ["--seeds", str(cfg["seeds"])]
    for name, value in sorted((cfg.get("options") or {}).items()):
        if name == "net":
            for k, v in sorted(value.items()):
                argv += ["--net", f"{k}={v}"]
        elif not isinstance(value, (dict, list, bool)):
            argv += [f"--{name.replace('_', '-')}", str(value)]
    argv += ["--run-name", run.name]
    return shlex.join(argv)


__all__ = ["MANIFEST", "FORMAT", "VERSION", "SavedModelError", "SavedModel", "Prediction",
           "classical_file", "save_classical", "model_files", "feature_entries", "task_entry",
           "write_manifest", "load_saved_model", "retrain_command"]
