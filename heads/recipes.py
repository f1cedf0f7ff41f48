"""Recipes: one TOML file per reproduced system, with the paper's settings and its numbers.

A recipe file ``recipes/<name>.toml`` has two tables::

    [recipe]
    name = "slabcnu-lstm"                  # = the file name
    paper = "seed 002: wav2vec2 layer 12 + 2-layer LSTM"
    table = "test results, A-VB 2022"
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

Unknown keys fail, naming the key and the valid ones. Command-line flags override a recipe's
``[train]`` values. :func:`check_features` tells, before training, which ``extract`` command
makes the features a recipe needs.

Example:
    >>> r = load_recipe("avb-baseline-egemaps")
    >>> r.head, r.features
    ('mlp-avb', ('opensmile:eGeMAPSv02',))
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heads.config import ExperimentConfig, TrainOptions
from heads.features import FeatureError, find_set, resolve_field
from heads.registry import get_head, head_names

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
"""The recipe files shipped with the project."""

RECIPE_KEYS = ("name", "paper", "table", "description", "reproduces")
PUBLISHED_KEYS = ("split", "scores", "note")
EXPERIMENT_KEYS = ("task", "features", "head", "layer", "pooling", "seeds")
TRAIN_KEYS = EXPERIMENT_KEYS + tuple(f.name for f in dataclasses.fields(TrainOptions))
SPLITS = ("val", "test")


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

        body = ", ".join(f"{k} {fmt(v)}" for k, v in self.scores.items()) or "no number in the notes"
        return f"{self.split}: {body}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Recipe:
    """A validated recipe.

    Attributes:
        name, paper, table, description: what it reproduces and from where.
        reproduces: the published numbers.
        task, features, head, layer, pooling, seeds: the experiment.
        options: training options (fields of :class:`heads.config.TrainOptions`).
        path: the file it was read from.
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
    path: Path | None = None

    def experiment_config(self, workdir: str | os.PathLike, *, run_name: str | None = None,
                          n_boot: int = 500, n_jobs: int = 1, **overrides: Any) -> ExperimentConfig:
        """The experiment config of this recipe; ``overrides`` replace experiment fields
        (task, features, head, layer, pooling, seeds) or training options.

        Raises:
            RecipeError: an override key is neither (lists the valid ones).
        """
        unknown = sorted(set(overrides) - set(TRAIN_KEYS))
        if unknown:
            raise RecipeError(f"unknown override(s) {unknown}; valid: {', '.join(TRAIN_KEYS)}")
        exp = {k: overrides.get(k, getattr(self, k)) for k in EXPERIMENT_KEYS}
        options = {**self.options, **{k: v for k, v in overrides.items() if k not in EXPERIMENT_KEYS}}
        TrainOptions.from_dict(options)  # fail early on a bad value
        return ExperimentConfig(workdir=str(workdir), task=exp["task"],
                                features=tuple(exp["features"]), head=exp["head"],
                                layer=exp["layer"], pooling=exp["pooling"], seeds=int(exp["seeds"]),
                                n_boot=n_boot,
                                run_name=run_name or f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{self.name}",
                                n_jobs=n_jobs, options=options)


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


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate the parsed TOML of a recipe.

    Raises:
        RecipeError: unknown or missing keys, bad values (names the key and the valid ones).
    """
    _check_keys(data, ("recipe", "train"), source)
    meta, train = data.get("recipe"), data.get("train")
    if not isinstance(meta, dict) or not isinstance(train, dict):
        raise RecipeError(f"{source}: needs a [recipe] and a [train] table")
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
    reproduces = meta.get("reproduces", [])
    if isinstance(reproduces, dict):
        reproduces = [reproduces]
    pubs = tuple(_published(e, f"{source} [[recipe.reproduces]]") for e in reproduces)
    return Recipe(name=meta["name"], paper=meta["paper"], table=meta["table"],
                  description=str(meta.get("description", "")), reproduces=pubs,
                  task=str(train["task"]), features=features, head=str(train["head"]),
                  layer=train.get("layer"), pooling=str(train.get("pooling", "mean")),
                  seeds=int(train.get("seeds", 1)), options=options)


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
                    pooling: str = "mean", frames_field: str | None = None) -> str:
    """The ``extract`` command that stores ``spec`` as a recipe needs it.

    The corpus root and layout come from the workdir's ``corpus.json`` when it has one.

    Example:
        >>> extract_command("/nowhere", "ssl:facebook/wav2vec2-base", layer=12, frames_field="frames_l12")
        'python run_pipeline.py extract --corpus ROOT --layout LAYOUT --workdir /nowhere --features ssl:facebook/wav2vec2-base --layers 12 --poolings mean --frames-layers 12'
    """
    from data.workdir import load_corpus_ref

    ref = load_corpus_ref(workdir) or {}
    parts = ["python", "run_pipeline.py", "extract", "--corpus", ref.get("root") or "ROOT",
             "--layout", ref.get("layout") or "LAYOUT"]
    if ref.get("labels"):
        parts += ["--labels", ref["labels"]]
    parts += ["--workdir", str(workdir), "--features", spec]
    if spec.startswith("ssl:"):
        if layer is not None:
            parts += ["--layers", str(layer)]
        parts += ["--poolings", pooling]
        if frames_field and frames_field.startswith("frames_l"):
            parts += ["--frames-layers", frames_field[len("frames_l"):]]
    elif spec.startswith("opensmile:") and frames_field == "lld":
        parts += ["--level", "lld"]
    return " ".join(shlex.quote(p) for p in parts)


def check_features(cfg: ExperimentConfig) -> None:
    """Check that the store holds what ``cfg`` reads; else say which ``extract`` to run.

    Raises:
        FeatureError: a set, field, layer or frame sequence is missing; the message names the
            exact ``extract`` command.
    """
    from extract.store import FeatureStore

    from heads.sequences import choose_frames_field

    store = FeatureStore(cfg.workdir)
    sequence = get_head(cfg.head).input_kind == "sequence"
    frames_field = cfg.options.get("frames_field")
    if sequence and frames_field is None and cfg.layer is not None:
        frames_field = f"frames_l{cfg.layer}"
    headers = []
    for spec in cfg.features:
        cmd = extract_command(cfg.workdir, spec, layer=cfg.layer, pooling=cfg.pooling,
                              frames_field=frames_field if sequence else None)
        try:
            header = find_set(store, spec)
            if not sequence:
                resolve_field(header, None, cfg.layer, cfg.pooling)
        except FeatureError as exc:
            why = re.sub(r"\s*Run `extract[^`]*` first\.", "", str(exc)).strip()
            raise FeatureError(f"features {spec!r} are not in the store of {cfg.workdir} as this run "
                               f"needs them: {why}\nRun:\n  {cmd}") from None
        headers.append(header)
    if sequence:
        try:
            choose_frames_field(headers, cfg.options.get("frames_field"), cfg.layer)
        except FeatureError as exc:
            cmd = extract_command(cfg.workdir, cfg.features[0], layer=cfg.layer,
                                  pooling=cfg.pooling, frames_field=frames_field)
            raise FeatureError(f"head {cfg.head!r} needs frame sequences: {exc}\nRun:\n  {cmd}") from None


__all__ = ["Recipe", "Published", "RecipeError", "RECIPES_DIR", "TRAIN_KEYS", "load_recipe",
           "list_recipes", "parse_recipe", "recipe_path", "extract_command", "check_features"]
