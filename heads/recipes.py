"""Recipes: one TOML file per reproduced system, with the paper's settings and its numbers.

A recipe file ``recipes/<name>.toml`` has two tables::

    [recipe]
    name = "slabcnu-lstm"                  # = the file name
    paper = "Nguyen et al. 2022, Fine-tuning Wav2vec for Vocal-burst Emotion Recognition"
    table = "test results, A-VB 2022"
    layout = "avb"                         # the corpus layout of the paper's data (extract --layout)
    description = "what is reproduced and what differs"
    [[recipe.reproduces]]                  # published numbers (FIELD_NOTES section 3)
    split = "test"
    scores = { "avb-two" = 0.6202, "avb-high" = 0.6677 }
    note = "..."

    [train]                                # what `train` runs
    task = "avb-high,avb-two"
    features = ["ssl:facebook/wav2vec2-base"]
    layer = 12
    head = "lstm"
    seeds = 3
    epochs = 20                            # any heads.config.TrainOptions field
    [train.net]                            # options of the net's config dataclass
    pooling = "last"

    [fidelity]                             # the paper, detail by detail
    authors = "Nguyen, Ho, Pant, Lee, Kim, Yang"
    title = "Fine-tuning Wav2vec for Vocal-burst Emotion Recognition"
    venue = "ACII 2022 A-VB workshop and competition"
    id = "arXiv:2210.00263"                # arXiv id or DOI (where from, when not the paper text)
    file = "002_e3da139e7ea44eaa.txt"      # in ../shared/papers/
    table = "Table V"
    [[fidelity.rows]]
    aspect = "optimiser"                   # one of FIDELITY_ASPECTS
    detail = "optimiser"                   # unique within the recipe
    quote = "We used Adam optimizer"       # the paper's own words, or "not stated"
    ours = "adam"
    status = "match"                       # match | option: ... | differs: why | not stated

A recipe of the fine-tune stage (paper 004's end-to-end systems, ``ser-mtl*``) has a
``[finetune]`` table instead of ``[train]``; ``finetune --recipe NAME`` runs it (``train
--recipe NAME`` refuses it, naming that command)::

    [finetune]                             # what `finetune` runs
    task = "iemocap4"
    features = "ssl:facebook/wav2vec2-base"   # the backbone trained end to end
    test_group = "01F"                     # or cv = "leave-one-out:speaker" (one run per fold)
    cv_val = "none"                        # the folds' Val rule (data.folds.ValRule)
    epochs = 100                           # any heads.finetune.FinetuneConfig setting
    ctc = 0.1
    adversary = "speaker:1"

Unknown keys fail, naming the key and the valid ones. Command-line flags override a recipe's
``[train]`` values; a recipe run on other tasks than its own (``train --recipe R --task T``)
drops what no longer applies (:meth:`Recipe.reuse`: loss items and chain entries naming targets
T lacks, a per-target fixed weighting, the published comparison, the recipe's run name).
:meth:`Recipe.extract_commands` and :func:`check_features` give the ``extract`` command that
makes the features a recipe needs.

Example:
    >>> r = load_recipe("avb-baseline-egemaps")
    >>> r.head, r.features
    ('mlp-avb', ('opensmile:eGeMAPSv02',))

One concept, at length: a recipe (its file format, validation, fidelity table, reuse on
other tasks and the configs it yields), read the same way by train, finetune and report.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from heads.config import ExperimentConfig, TrainOptions, parse_loss_spec
from heads.features import AmbiguousFeatures, FeatureError, find_set, request_checks, resolve_field
from heads.catalog import head_kind, head_names

if TYPE_CHECKING:
    from heads.finetune.config import FinetuneConfig

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
"""The recipe files shipped with the project."""

RECIPE_KEYS = ("name", "paper", "table", "layout", "description", "reproduces")
FIDELITY_KEYS = ("authors", "title", "venue", "id", "file", "table", "rows")
FIDELITY_ROW_KEYS = ("aspect", "detail", "quote", "source", "ours", "status")
FIDELITY_ASPECTS = ("data", "features", "spectrogram", "crops", "architecture", "sizes",
                    "activations", "pooling", "output activation", "losses", "targets",
                    "class weights", "smoothing", "weighting", "weighting init", "optimiser",
                    "lr", "schedule", "batch", "epochs", "stopping", "metric")
"""What a fidelity row is about. Every recipe's table covers each of these except ``data``,
``targets`` and, for recipes that read no spectrogram, ``spectrogram``."""
FIDELITY_REQUIRED = tuple(a for a in FIDELITY_ASPECTS if a not in ("data", "targets", "spectrogram"))
NOT_STATED = "not stated"
STATUSES = ("match", "option", "differs", NOT_STATED)
"""``match``; ``option`` (the paper's reading is one of named options, the default said);
``differs: why``; ``not stated`` (the paper is silent; ``ours`` names our choice)."""
PUBLISHED_KEYS = ("split", "scores", "note")
EXPERIMENT_KEYS = ("task", "features", "head", "layer", "pooling", "seeds")
TRAIN_KEYS = EXPERIMENT_KEYS + tuple(f.name for f in dataclasses.fields(TrainOptions))
SPLITS = ("val", "test")
STAGES = ("train", "finetune")
"""``train``: a head on stored features (``[train]``); ``finetune``: the backbone trained end to
end (``[finetune]``, run by ``finetune --recipe``)."""
FINETUNE_FOLD_KEYS = ("cv", "test_group", "cv_val")
_FINETUNE_NOT_IN_RECIPES = ("workdir", "model", "run_name", "device", "workers", "cache_gb",
                            "eval_batch_seconds", "n_boot")


def finetune_keys() -> tuple[str, ...]:
    """Keys of a ``[finetune]`` table (also :data:`FINETUNE_KEYS`): the task, the backbone, the
    fold protocol, and every :class:`heads.finetune.FinetuneConfig` setting that defines the
    trained model. (The fine-tune stage imports torch: only a recipe of that stage reads it.)"""
    from heads.finetune.config import FinetuneConfig

    return ("task", "features", *FINETUNE_FOLD_KEYS) + tuple(
        f.name for f in dataclasses.fields(FinetuneConfig)
        if f.name not in _FINETUNE_NOT_IN_RECIPES and f.name != "task")


def __getattr__(name: str) -> Any:
    """``FINETUNE_KEYS``, computed when first asked for (:func:`finetune_keys`)."""
    if name == "FINETUNE_KEYS":
        return finetune_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RecipeError(ValueError):
    """A recipe file is missing, malformed, or has unknown keys."""


@dataclass(frozen=True)
class Published:
    """Numbers a paper published (never ours): split, score per task / metric, a note."""

    split: str
    scores: dict[str, float | tuple[float, ...]]
    note: str = ""

    def text(self) -> str:
        """``test: avb-high .6677, avb-two .6202 (note)``."""
        def fmt(v: float | tuple[float, ...]) -> str:
            vals = v if isinstance(v, tuple) else (v,)
            return "/".join(f"{x:g}" for x in vals)

        body = ", ".join(f"{k} {fmt(v)}" for k, v in self.scores.items()) or "no published number"
        return f"{self.split}: {body}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class FidelityRow:
    """One detail of a paper beside our value.

    Attributes:
        aspect: one of :data:`FIDELITY_ASPECTS`.
        detail: what exactly (unique within a recipe).
        quote: the paper's own words (short), or ``"not stated"``.
        source: the paper file (and section/table) the quote is from.
        ours: our value.
        status: ``match``, ``option: ...``, ``differs: why`` or ``not stated``.
    """

    aspect: str
    detail: str
    quote: str
    source: str
    ours: str
    status: str

    @property
    def kind(self) -> str:
        """The status word: ``match``, ``option``, ``differs`` or ``not stated``."""
        return NOT_STATED if self.status == NOT_STATED else self.status.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Fidelity:
    """A recipe's paper (authors, title, venue, arXiv id / DOI, file, table) and its rows."""

    authors: str
    title: str
    venue: str
    id: str
    file: str
    table: str
    rows: tuple[FidelityRow, ...]

    def counts(self) -> dict[str, int]:
        """Rows per status word, every word of :data:`STATUSES` present."""
        out = {k: 0 for k in STATUSES}
        for r in self.rows:
            out[r.kind] += 1
        return out

    def citation(self) -> str:
        """``authors, "title", venue (id)``."""
        return f'{self.authors}, "{self.title}", {self.venue} ({self.id})'


@dataclass(frozen=True)
class RecipeReuse:
    """What of a recipe applies to a run on other tasks than the recipe's own.

    Attributes:
        task: the run's task(s).
        options: the recipe's training options without those that no longer apply.
        dropped: one line per recipe field that no longer applies, saying why.
        published: the published numbers to show beside the run (none when the task changed).
        same_task: True when the run's tasks are the recipe's (nothing is dropped).
    """

    task: str
    options: dict[str, Any]
    dropped: tuple[str, ...]
    published: tuple[Published, ...]
    same_task: bool


@dataclass(frozen=True)
class Recipe:
    """A validated recipe.

    Attributes:
        name, paper, table, description: what it reproduces and from where.
        layout: the corpus layout of the paper's data (``avb``, ``exvo``; ``""`` unknown).
        reproduces: the published numbers.
        task, features, head, layer, pooling, seeds: the experiment.
        options: training options (fields of :class:`heads.config.TrainOptions`).
        fidelity: the paper beside our values, detail by detail (None: the file has none).
        path: the file it was read from.
        stage: ``train`` or ``finetune`` (:data:`STAGES`).
        finetune: the ``[finetune]`` table of a fine-tune recipe (settings, ``cv`` /
            ``test_group`` / ``cv_val``), ``{}`` otherwise.
    """

    name: str
    paper: str
    table: str
    description: str
    reproduces: tuple[Published, ...]
    task: str
    features: tuple[str, ...]
    head: str
    layer: int | None = None
    pooling: str = "mean"
    seeds: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    fidelity: Fidelity | None = None
    path: Path | None = None
    layout: str = ""
    stage: str = "train"
    finetune: dict[str, Any] = field(default_factory=dict)

    def citation(self) -> str:
        """The paper as authors, title, venue and arXiv id / DOI (its ``paper`` line without a
        [fidelity] table)."""
        return self.fidelity.citation() if self.fidelity is not None else self.paper

    def extract_commands(self, workdir: str | os.PathLike | None = None) -> list[str]:
        """The ``extract`` command of each feature set the recipe reads (layers, poolings and
        frame sequences as it needs them). Without ``workdir`` (or a workdir without a recorded
        corpus) the corpus root is ``ROOT`` and the workdir ``WORKDIR``."""
        if self.stage == "finetune":  # records the corpus; stores the base model's embeddings
            return [extract_command(workdir if workdir is not None else "WORKDIR", spec,
                                    layer=None, pooling="mean", layout=self.layout or None)
                    for spec in self.features]
        sequence = head_kind(self.head).input_kind == "sequence"
        frames = self.options.get("frames_field")
        if sequence and frames is None and self.layer is not None:
            frames = f"frames_l{self.layer}"
        return [extract_command(workdir if workdir is not None else "WORKDIR", spec,
                                layer=self.layer, pooling=self.pooling,
                                frames_field=frames if sequence else None,
                                layout=self.layout or None)
                for spec in self.features]

    def reuse(self, task: str | None, *, given: Iterable[str] = ()) -> RecipeReuse:
        """What applies when the recipe runs on ``task`` instead of its own tasks.

        Args:
            task: the run's task(s) (``train --task``), or None for the recipe's own.
            given: training options set explicitly (flags): never dropped.

        Returns:
            The options to train with, the fields dropped (one line each) and the published
            numbers that still apply (all of them for the recipe's own tasks, none otherwise:
            they were measured on the paper's tasks and corpus).

        Raises:
            TaskError: ``task`` names an unknown task.
        """
        from data.tasks import parse_tasks

        own = [t.name for t in parse_tasks(self.task)]
        if task is None or sorted(t.name for t in parse_tasks(task)) == sorted(own):
            return RecipeReuse(self.task if task is None else task, dict(self.options), (),
                               self.reproduces, True)
        tasks = parse_tasks(task)
        targets = [tg.name for t in tasks for tg in t.targets]
        names = set(targets) | {t.name for t in tasks}
        given = set(given)
        options = dict(self.options)
        dropped: list[str] = []
        if "loss" in options and "loss" not in given:
            default, named = parse_loss_spec(options["loss"])
            gone = sorted(n for n in named if n not in names)
            if gone:
                kept = ",".join([default, *(f"{n}={v}" for n, v in named.items() if n in names)])
                dropped.append(f"loss {options['loss']!r}: {', '.join(gone)} not a target of "
                               f"{task} (targets: {', '.join(targets)}); using {kept!r}")
                options["loss"] = kept
        weighting = str(options.get("weighting", ""))
        if weighting.startswith("fixed:") and "weighting" not in given:
            if len(weighting[len("fixed:"):].split(",")) != len(targets):
                dropped.append(f"weighting {weighting!r}: one weight per target of {self.task}, "
                               f"not of {task} ({len(targets)} target(s)); using equal")
                del options["weighting"]
        if options.get("unscaled") and "unscaled" not in given:
            entries = options["unscaled"]
            entries = [e.strip() for e in (entries.split(",") if isinstance(entries, str) else entries)]
            kept = [e for e in entries if e in names]
            if len(kept) < len(entries):
                dropped.append(f"unscaled {', '.join(entries)}: {', '.join(e for e in entries if e not in names)} "
                               f"not a target of {task}; " + (f"using {', '.join(kept)}" if kept else "none"))
                options["unscaled"] = kept
        linear = dict(options.get("net") or {}).get("linear_outputs")
        if linear and "net" not in given:  # mlp-avb's per-output linear mode (age in years)
            entries = [e.strip() for e in (linear.split(",") if isinstance(linear, str) else linear)]
            kept = [e for e in entries if e in names]
            if len(kept) < len(entries):
                dropped.append(f"net linear_outputs {', '.join(entries)}: "
                               f"{', '.join(e for e in entries if e not in names)} not a target "
                               f"of {task}; " + (f"using {', '.join(kept)}" if kept else "none"))
                options["net"] = {**options["net"], "linear_outputs": kept}
        if options.get("chain") and "chain" not in given:
            entries = [e.strip() for e in str(options["chain"]).split(",") if e.strip()]
            gone = [e for e in entries if e not in names]
            if gone:
                dropped.append(f"chain {options['chain']!r}: {', '.join(gone)} not predicted "
                               f"by {task}; no chain")
                del options["chain"]
        if self.reproduces:
            dropped.append(f"published numbers ({self.table}): measured for {self.task} on the "
                           f"paper's corpus, not comparable with {task}; not shown or recorded")
        dropped.append(f"run name: not the recipe's (<time>-{self.name}), this run is not the "
                       "recipe's system; named after its settings unless --run-name is given")
        return RecipeReuse(task, options, tuple(dropped), (), False)

    def experiment_config(self, workdir: str | os.PathLike, *, run_name: str | None = None,
                          n_boot: int = 500, n_jobs: int = 1, **overrides: Any) -> ExperimentConfig:
        """The experiment config of this recipe; ``overrides`` replace experiment fields
        (task, features, head, layer, pooling, seeds) or training options.

        Raises:
            RecipeError: an override key is neither (lists the valid ones), or the recipe is
                one of the fine-tune stage (the message names the ``finetune`` command).
        """
        if self.stage == "finetune":
            raise RecipeError(f"recipe {self.name} trains the backbone end to end: run it with "
                              f"`python run_pipeline.py finetune --workdir {workdir} --recipe "
                              f"{self.name}` (train runs heads on stored features)")
        unknown = sorted(set(overrides) - set(TRAIN_KEYS))
        if unknown:
            raise RecipeError(f"unknown override(s) {unknown}; valid: {', '.join(TRAIN_KEYS)}")
        exp = {k: overrides.get(k, getattr(self, k)) for k in EXPERIMENT_KEYS}
        flags = {k: v for k, v in overrides.items() if k not in EXPERIMENT_KEYS}
        use = self.reuse(overrides.get("task"), given=flags)
        options = {**use.options, **flags}
        TrainOptions.from_dict(options)  # fail early on a bad value
        if run_name is None and use.same_task:
            run_name = f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{self.name}"
        return ExperimentConfig(workdir=str(workdir), task=exp["task"],
                                features=tuple(exp["features"]), head=exp["head"],
                                layer=exp["layer"], pooling=exp["pooling"], seeds=int(exp["seeds"]),
                                n_boot=n_boot, run_name=run_name, n_jobs=n_jobs, options=options)

    def finetune_config(self, workdir: str | os.PathLike, *, run_name: str | None = None,
                        **overrides: Any) -> FinetuneConfig:
        """The :class:`heads.finetune.FinetuneConfig` of a fine-tune recipe; ``overrides``
        replace its settings (``features`` as ``ssl:MODEL``) or set runtime ones (device,
        workers, n_boot). Without ``run_name`` the run is ``<time>-<name>``.

        Raises:
            RecipeError: not a fine-tune recipe, or an unknown / invalid override.
        """
        if self.stage != "finetune":
            raise RecipeError(f"recipe {self.name} trains a head on stored features: run it with "
                              f"`python run_pipeline.py train --workdir {workdir} --recipe {self.name}`")
        runtime = ("device", "workers", "cache_gb", "eval_batch_seconds", "n_boot")
        from heads.finetune.config import FinetuneConfig

        keys = finetune_keys()
        unknown = sorted(set(overrides) - set(keys) - set(runtime) - set(FINETUNE_FOLD_KEYS))
        if unknown:
            raise RecipeError(f"unknown override(s) {unknown}; valid: {', '.join(keys + runtime)}")
        table = {**self.finetune, **overrides}
        settings = {k: v for k, v in table.items() if k not in FINETUNE_FOLD_KEYS + ("features",)}
        spec = str(table["features"])
        if run_name is None and self.reuse(table.get("task")).same_task:
            run_name = f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{self.name}"
        try:
            cfg = FinetuneConfig(workdir=str(workdir), model=spec[len("ssl:"):], run_name=run_name,
                                 **settings)
            cfg.check()
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"recipe {self.name}: {exc}") from None
        return cfg

    def fold_protocol(self, **overrides: Any) -> tuple[str | None, str]:
        """(protocol, Val rule) of a fine-tune recipe: ``cv`` or ``test-group:<test_group>``
        (None: the workdir's own split) and ``cv_val`` (default ``partner``); ``overrides``
        (cv, test_group, cv_val) replace the recipe's."""
        table = {**self.finetune, **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("cv") is not None:
            table.pop("test_group", None)
        if overrides.get("test_group") is not None:
            table.pop("cv", None)
        cv, group = table.get("cv"), table.get("test_group")
        return (cv or (f"test-group:{group}" if group else None)), str(table.get("cv_val", "partner"))

    def run_record(self, use: RecipeReuse) -> dict[str, Any]:
        """What a run's metrics.json and config.json record of the recipe it came from."""
        return {"name": self.name, "paper": self.citation(), "table": self.table,
                "task": self.task, "run_task": use.task, "same_task": use.same_task,
                "not_applied": list(use.dropped),
                "published": [{"split": p.split, "scores": dict(p.scores), "note": p.note}
                              for p in use.published]}


def _check_keys(table: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")


def _published(entry: Any, where: str) -> Published:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where}: each [[recipe.reproduces]] entry must be a table")
    _check_keys(entry, PUBLISHED_KEYS, where)
    split = entry.get("split")
    if split not in SPLITS:
        raise RecipeError(f"{where}: split must be one of {SPLITS}; got {split!r}")
    scores: dict[str, float | tuple[float, ...]] = {}
    for k, v in dict(entry.get("scores", {})).items():
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            scores[k] = tuple(float(x) for x in v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            scores[k] = float(v)
        else:
            raise RecipeError(f"{where}: score {k!r} must be a number or a list of numbers; got {v!r}")
    return Published(split, scores, str(entry.get("note", "")))


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{where}: {key} (non-empty text) is required; got {value!r}")
    return value.strip()


def _fidelity(table: Any, features: tuple[str, ...], where: str) -> Fidelity:
    """Validate a ``[fidelity]`` table (see the module docstring)."""
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: [fidelity] must be a table")
    _check_keys(table, FIDELITY_KEYS, where)
    meta = {k: _text(table, k, where) for k in FIDELITY_KEYS if k != "rows"}
    entries = table.get("rows")
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{where}: needs [[fidelity.rows]] entries (one per detail of the paper)")
    rows, seen = [], set()
    for i, entry in enumerate(entries):
        at = f"{where} row {i + 1}"
        if not isinstance(entry, dict):
            raise RecipeError(f"{at}: each [[fidelity.rows]] entry must be a table")
        _check_keys(entry, FIDELITY_ROW_KEYS, at)
        values = {k: _text(entry, k, at) for k in FIDELITY_ROW_KEYS if k != "source"}
        values["source"] = str(entry.get("source") or meta["file"]).strip()
        at = f"{where} row {values['detail']!r}"
        if values["aspect"] not in FIDELITY_ASPECTS:
            raise RecipeError(f"{at}: aspect must be one of {', '.join(FIDELITY_ASPECTS)}; "
                              f"got {values['aspect']!r}")
        if values["detail"] in seen:
            raise RecipeError(f"{at}: detail {values['detail']!r} appears twice")
        seen.add(values["detail"])
        row = FidelityRow(**values)
        status = row.status
        if status not in ("match", NOT_STATED) and not (
                status.split(":", 1)[0] in ("option", "differs") and ":" in status
                and status.split(":", 1)[1].strip()):
            raise RecipeError(f"{at}: status must be 'match', 'not stated', 'option: <which is the "
                              f"default and why>' or 'differs: <why>'; got {status!r}")
        if (row.quote == NOT_STATED) != (status == NOT_STATED):
            raise RecipeError(f"{at}: quote {row.quote!r} and status {status!r} disagree: a detail the "
                              "paper does not state has quote and status 'not stated' (name our "
                              "choice in ours); a stated one quotes the paper")
        rows.append(row)
    required = list(FIDELITY_REQUIRED)
    if any(f.startswith("logmel:") for f in features):
        required.append("spectrogram")
    missing = [a for a in required if a not in {r.aspect for r in rows}]
    if missing:
        raise RecipeError(f"{where}: no row for {', '.join(missing)}; every detail needs a row "
                          "(quote 'not stated' where the paper is silent)")
    return Fidelity(rows=tuple(rows), **meta)


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate the parsed TOML of a recipe.

    Raises:
        RecipeError: unknown or missing keys, bad values (names the key and the valid ones).
    """
    _check_keys(data, ("recipe", "train", "finetune", "fidelity"), source)
    meta = data.get("recipe")
    if "train" in data and "finetune" in data:
        raise RecipeError(f"{source}: a recipe has a [train] or a [finetune] table, not both")
    if isinstance(meta, dict) and isinstance(data.get("finetune"), dict):
        return _parse_finetune_recipe(data, meta, data["finetune"], source)
    train = data.get("train")
    if not isinstance(meta, dict) or not isinstance(train, dict):
        raise RecipeError(f"{source}: needs a [recipe] and a [train] (or [finetune]) table")
    _check_keys(meta, RECIPE_KEYS, f"{source} [recipe]")
    _check_keys(train, TRAIN_KEYS, f"{source} [train]")
    for key in ("name", "paper", "table"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise RecipeError(f"{source} [recipe]: {key} (text) is required")
    for key in ("task", "features", "head"):
        if key not in train:
            raise RecipeError(f"{source} [train]: {key} is required")
    features = train["features"]
    features = (features,) if isinstance(features, str) else tuple(features)
    if train["head"] not in head_names():
        raise RecipeError(f"{source} [train]: unknown head {train['head']!r}; valid: "
                          f"{', '.join(sorted(head_names('torch')) + sorted(head_names('classical')))}")
    options = {k: v for k, v in train.items() if k not in EXPERIMENT_KEYS}
    try:
        TrainOptions.from_dict(options)
    except ValueError as exc:
        raise RecipeError(f"{source} [train]: {exc}") from None
    pubs, fidelity, layout = _common(data, meta, features, source)
    return Recipe(name=meta["name"], paper=meta["paper"], table=meta["table"], layout=layout,
                  description=str(meta.get("description", "")), reproduces=pubs,
                  task=str(train["task"]), features=features, head=str(train["head"]),
                  layer=train.get("layer"), pooling=str(train.get("pooling", "mean")),
                  seeds=int(train.get("seeds", 1)), options=options, fidelity=fidelity)


def _common(data: dict[str, Any], meta: dict[str, Any], features: tuple[str, ...], source: str
            ) -> tuple[tuple[Published, ...], Fidelity | None, str]:
    """The published numbers, the fidelity table and the layout of either kind of recipe."""
    reproduces = meta.get("reproduces", [])
    if isinstance(reproduces, dict):
        reproduces = [reproduces]
    pubs = tuple(_published(e, f"{source} [[recipe.reproduces]]") for e in reproduces)
    fidelity = (_fidelity(data["fidelity"], features, f"{source} [fidelity]")
                if "fidelity" in data else None)
    layout = str(meta.get("layout", ""))
    if layout:
        from data.corpora.registry import LAYOUTS
        import data.corpora  # noqa: F401  (fills LAYOUTS)

        if layout not in LAYOUTS:
            raise RecipeError(f"{source} [recipe]: layout must be one of {sorted(LAYOUTS)}; "
                              f"got {layout!r}")
    return pubs, fidelity, layout


def _parse_finetune_recipe(data: dict[str, Any], meta: dict[str, Any], table: dict[str, Any],
                           source: str) -> Recipe:
    """Validate a recipe with a ``[finetune]`` table (see the module docstring)."""
    from data.folds import FoldError, ValRule

    from heads.finetune.config import FinetuneConfig

    where = f"{source} [finetune]"
    _check_keys(meta, RECIPE_KEYS, f"{source} [recipe]")
    _check_keys(table, finetune_keys(), where)
    for key in ("name", "paper", "table"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise RecipeError(f"{source} [recipe]: {key} (text) is required")
    for key in ("task", "features"):
        if key not in table:
            raise RecipeError(f"{where}: {key} is required")
    spec = table["features"]
    if not isinstance(spec, str) or not spec.startswith("ssl:") or not spec[4:].strip():
        raise RecipeError(f"{where}: features must be one backbone, ssl:<hub id or folder>; got {spec!r}")
    if table.get("cv") and table.get("test_group"):
        raise RecipeError(f"{where}: give cv or test_group, not both")
    try:
        ValRule.parse(table.get("cv_val", "partner"))
        settings = {k: v for k, v in table.items() if k not in FINETUNE_FOLD_KEYS + ("features",)}
        FinetuneConfig(workdir=".", model=spec[4:], **settings).check()
    except (FoldError, TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: {exc}") from None
    pubs, fidelity, layout = _common(data, meta, (spec,), source)
    return Recipe(name=meta["name"], paper=meta["paper"], table=meta["table"], layout=layout,
                  description=str(meta.get("description", "")), reproduces=pubs,
                  task=str(table["task"]), features=(spec,), head="", layer=table.get("layer"),
                  fidelity=fidelity, stage="finetune", finetune=dict(table))


def recipe_path(name: str, directory: Path = RECIPES_DIR) -> Path:
    """``name`` (a recipe name or a path to a .toml file) -> the file.

    Raises:
        RecipeError: no such recipe (lists the available ones).
    """
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    candidate = directory / f"{name}.toml"
    if candidate.exists():
        return candidate
    names = sorted(q.stem for q in directory.glob("*.toml"))
    raise RecipeError(f"no recipe {name!r} in {directory}; available: {', '.join(names) or 'none'}")


def load_recipe(name: str, directory: Path = RECIPES_DIR) -> Recipe:
    """Read and validate ``recipes/<name>.toml`` (or a path to a TOML file).

    Raises:
        RecipeError: missing file, bad TOML, invalid content, or a name that is not the file's.
    """
    path = recipe_path(name, directory)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    recipe = parse_recipe(data, str(path))
    if recipe.name != path.stem:
        raise RecipeError(f"{path}: [recipe] name {recipe.name!r} must equal the file name {path.stem!r}")
    return dataclasses.replace(recipe, path=path)


def list_recipes(directory: Path = RECIPES_DIR) -> list[Recipe]:
    """Every recipe in ``directory``, sorted by name (raises RecipeError on a bad file)."""
    return [load_recipe(p.stem, directory) for p in sorted(directory.glob("*.toml"), key=lambda p: p.stem)]


# ---------------------------------------------------------------------------------- features
def extract_command(workdir: str | os.PathLike, spec: str, *, layer: int | None = None,
                    pooling: str = "mean", frames_field: str | None = None,
                    layout: str | None = None) -> str:
    """The ``extract`` command that stores ``spec`` as a recipe needs it.

    The corpus (root, layout, label table, reader options) comes from the workdir's
    ``corpus.json`` when it has one; else the root is ``ROOT`` and the layout ``layout``
    (``LAYOUT`` when None).

    Example:
        >>> extract_command("/nowhere", "ssl:facebook/wav2vec2-base", layer=12, frames_field="frames_l12")
        'python run_pipeline.py extract --corpus ROOT --layout LAYOUT --workdir /nowhere --features ssl:facebook/wav2vec2-base --layers 12 --poolings mean --frames-layers 12'
    """
    from data.hints import extract_command as hint

    frames = (int(frames_field[len("frames_l"):]) if frames_field and frames_field.startswith("frames_l")
              and frames_field[len("frames_l"):].isdigit() else None)
    return hint(workdir, spec, layers=layer, poolings=pooling, frames_layers=frames,
                level="lld" if frames_field == "lld" else None, layout=layout)


def check_features(cfg: ExperimentConfig) -> None:
    """Check that the store holds what ``cfg`` reads; else say which ``extract`` to run.

    Raises:
        FeatureError: a set, field, layer or frame sequence is missing; the message names the
            exact ``extract`` command.
    """
    from extract.store import FeatureStore

    from heads.sequences import choose_frames_field

    store = FeatureStore(cfg.workdir)
    sequence = head_kind(cfg.head).input_kind == "sequence"
    frames_field = cfg.options.get("frames_field")
    if sequence and frames_field is None and cfg.layer is not None:
        frames_field = f"frames_l{cfg.layer}"
    headers = []
    for spec in cfg.features:
        try:
            header = find_set(store, spec, (lambda h: choose_frames_field([h], frames_field, cfg.layer))
                              if sequence else request_checks(None, cfg.layer, cfg.pooling))
        except AmbiguousFeatures:
            raise
        except FeatureError as exc:
            why = re.sub(r"\s*Run `[^`]*` first\.", "", str(exc)).strip()
            raise FeatureError(f"features {spec!r} are not in the store of {cfg.workdir} as this run "
                               f"needs them: {why}\n{_extract_hint(cfg, spec, frames_field if sequence else None)}"
                               ) from None
        if not sequence:
            try:
                resolve_field(header, None, cfg.layer, cfg.pooling)
            except FeatureError as exc:
                raise FeatureError(f"features {spec!r} are not in the store of {cfg.workdir} as this "
                                   f"run needs them: {exc}\n{_extract_hint(cfg, header.spec, None)}"
                                   ) from None
        headers.append(header)
    if sequence:
        try:
            choose_frames_field(headers, cfg.options.get("frames_field"), cfg.layer)
        except FeatureError as exc:
            header = headers[0]
            layer = cfg.layer if cfg.layer is not None else _last_layer(header)
            field = frames_field or (f"frames_l{layer}" if layer is not None else None)
            cmd = extract_command(cfg.workdir, header.spec, layer=layer, pooling=cfg.pooling,
                                  frames_field=field)
            then = (f"\nthen train again with --layer {layer} (and, if {header.spec} then names two "
                    f"sets, --features set to the new set's key, which extract prints)"
                    if layer is not None and cfg.layer is None else "")
            raise FeatureError(f"head {cfg.head!r} needs frame sequences: {exc}\nRun:\n  {cmd}{then}"
                               ) from None


def _extract_hint(cfg: ExperimentConfig, spec: str, frames_field: str | None) -> str:
    """``Run: <extract command>`` for a spec; for a set name (which extract cannot take) the
    command with an ``ssl:MODEL``-style placeholder and what to put there."""
    from data.hints import is_spec

    if is_spec(spec):
        cmd = extract_command(cfg.workdir, spec, layer=cfg.layer, pooling=cfg.pooling,
                              frames_field=frames_field)
        return f"Run:\n  {cmd}"
    cmd = extract_command(cfg.workdir, "SPEC", layer=cfg.layer, pooling=cfg.pooling,
                          frames_field=frames_field)
    return (f"{spec!r} is not a spec that extract can compute; run, with SPEC an extractor "
            f"spec such as opensmile:eGeMAPSv02 or ssl:facebook/wav2vec2-base:\n  {cmd}")


def _last_layer(header: Any) -> int | None:
    """The last stored SSL layer of a set (from its pooled fields), or None."""
    for spec in header.fields.values():
        layers = spec.attrs.get("layers")
        if layers:
            return int(layers[-1])
    return None


__all__ = ["Recipe", "RecipeReuse", "Published", "Fidelity", "FidelityRow", "FIDELITY_ASPECTS", "STATUSES", "RecipeError", "RECIPES_DIR", "TRAIN_KEYS", "FINETUNE_KEYS", "finetune_keys", "STAGES", "load_recipe",
           "list_recipes", "parse_recipe", "recipe_path", "extract_command", "check_features"]
