"""The extractor interface and its registry.

An extractor turns one 16 kHz mono clip (or a batch of them) into named arrays, the *fields* of
a feature set. Two execution modes exist:

* ``per_clip``: CPU-bound, one clip at a time (openSMILE, log-mel). The extraction loop runs
  ``load_audio`` + :meth:`Extractor.compute` together in worker processes.
* ``batched``: one model in the main process (SSL). Worker processes decode audio ahead of the
  model; :meth:`Extractor.compute_batch` runs on batches planned by
  :meth:`Extractor.plan_batches`.

Everything that determines the values goes into :meth:`Extractor.identity`; the store hashes it
into the feature set's key, so a change of any of those makes a new feature set.
"""
from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

SAMPLE_RATE = 16_000
"""Every extractor sees 16 kHz mono float32 audio."""


class ExtractorUnavailable(RuntimeError):
    """An extractor cannot run here (missing weights, missing package); the message says the fix."""


@dataclass(frozen=True)
class FieldSpec:
    """How one output array of an extractor is shaped and stored.

    Attributes:
        shape: per-clip shape; for a ragged field, the shape of one frame (the time axis is
            variable and comes first).
        dtype: storage dtype, e.g. ``"float32"`` or ``"float16"``.
        ragged: True when each clip has its own number of frames.
        attrs: JSON-able description stored with the field (column names, layer indices, ...).
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    ragged: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


FINETUNED_FILE = "finetuned.json"
"""Written by ``heads/finetune`` beside a fine-tuned backbone: its readable ``name``, base
model, run and tasks. Read by :mod:`extract.ssl.checkpoint` for the set's name and provenance
only (not its identity: the weights' hash already tells fine-tuned weights apart). Here, not in
:mod:`extract.ssl`, so that the fine-tune stage's settings are checked without torch."""
WHISPER_INPUTS = ("padded", "trimmed")
"""``ExtractOptions.whisper_input``: padded = the model's own 30 s window (default)."""


@dataclass(frozen=True)
class ExtractOptions:
    """Command-line options an extractor may use; each extractor reads the ones it needs.

    Attributes:
        layers: SSL hidden-state indices (``None`` = all).
        poolings: SSL poolings over the true frames of a clip.
        frames_layers: SSL layers whose frame sequences are stored too.
        dtype: storage dtype of SSL arrays.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_seconds: upper bound of audio seconds in one SSL batch.
        level: openSMILE ``functionals`` or ``lld``.
        workers: processes for per-clip extractors and audio decoding.
        whisper_input: Whisper checkpoints: ``padded`` (the model's own 30 s window) or
            ``trimmed`` (the input cut to the clip's frames: another representation, faster).
    """

    layers: tuple[int, ...] | None = None
    poolings: tuple[str, ...] = ("mean", "last")
    frames_layers: tuple[int, ...] = ()
    dtype: str = "float16"
    device: str = "auto"
    batch_seconds: float = 64.0
    level: str = "functionals"
    workers: int = 1
    whisper_input: str = "padded"


class Extractor(abc.ABC):
    """One kind of feature. Construct cheaply; :meth:`resolve` validates."""

    name: ClassVar[str]
    mode: ClassVar[str] = "per_clip"

    def __init__(self, arg: str, options: ExtractOptions) -> None:
        self.arg = arg
        self.options = options

    @property
    def spec(self) -> str:
        """The user-facing spec string, e.g. ``opensmile:eGeMAPSv02``."""
        return f"{self.name}:{self.arg}"

    def resolve(self) -> None:
        """Validate the configuration and locate resources; raise before any work starts.

        Raises:
            ValueError: an option is invalid (the message names it and the valid values).
            ExtractorUnavailable: the extractor cannot run here (the message says the fix).
        """

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that determines the values (JSON-able). Hashed into the set's key."""

    @abc.abstractmethod
    def readable_name(self) -> str:
        """Short human-readable part of the key, e.g. ``opensmile-eGeMAPSv02-functionals``."""

    @abc.abstractmethod
    def fields(self) -> dict[str, FieldSpec]:
        """Names and layouts of the arrays produced for each clip."""

    def provenance(self) -> dict[str, Any]:
        """Library versions, device, dtype: stored as attributes, not part of the key."""
        return {}

    # -- per_clip mode -------------------------------------------------------------------
    def compute(self, signal: np.ndarray) -> dict[str, np.ndarray]:  # (samples,) float32
        """Features of one clip (per_clip mode)."""
        raise NotImplementedError(f"{type(self).__name__} is a {self.mode} extractor")

    # -- batched mode --------------------------------------------------------------------
    def load(self) -> None:
        """Load heavy resources (a model) once, in the process that computes."""

    def plan_batches(self, num_samples: Sequence[int]) -> list[list[int]]:
        """Group clip indices into batches (batched mode). Default: one clip per batch."""
        return [[i] for i in range(len(num_samples))]

    def compute_batch(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray] | Exception]:
        """Features of a batch of clips; a clip that fails gives its exception (batched mode)."""
        raise NotImplementedError(f"{type(self).__name__} is a {self.mode} extractor")

    def compute_stream(
        self, batches: Iterable[list[np.ndarray]]
    ) -> Iterator[list[dict[str, np.ndarray] | Exception]]:
        """:meth:`compute_batch` of each batch, in order (batched mode). An extractor may queue
        the next batch before yielding the previous one's results (the SSL extractor does on
        CUDA); the default computes them one after the other."""
        for signals in batches:
            yield self.compute_batch(signals) if signals else []

    def warnings_for(self, num_samples: int) -> list[str]:
        """Warnings to record for a clip of this length (e.g. shorter than a receptive field)."""
        return []


EXTRACTORS: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: put an extractor into :data:`EXTRACTORS` under its ``name``."""
    if cls.name in EXTRACTORS:
        raise ValueError(f"extractor name {cls.name!r} is registered twice")
    EXTRACTORS[cls.name] = cls
    return cls


BUILTIN_MODULES = {"opensmile": "extract.opensmile", "ssl": "extract.ssl", "logmel": "extract.melspec"}
"""Where the built-in extractors live; imported on first use so that a worker process that
computes openSMILE never imports torch."""


def _import_builtin_extractors(kind: str | None = None) -> None:
    import importlib

    for name, module in BUILTIN_MODULES.items():
        if (kind is None or kind == name) and name not in EXTRACTORS:
            importlib.import_module(module)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``kind:arg`` (``opensmile:eGeMAPSv02``, ``ssl:facebook/wav2vec2-base``).

    Raises:
        ValueError: the spec has no ``:`` or names no known extractor.
    """
    kind, sep, arg = spec.partition(":")
    _import_builtin_extractors(kind if kind in BUILTIN_MODULES else None)
    if not sep or not arg:
        raise ValueError(
            f"feature spec {spec!r} must look like KIND:ARG, e.g. opensmile:eGeMAPSv02 or "
            f"ssl:facebook/wav2vec2-base; kinds: {', '.join(sorted(EXTRACTORS))}"
        )
    if kind not in EXTRACTORS:
        raise ValueError(
            f"unknown feature kind {kind!r} in {spec!r}; known kinds: {', '.join(sorted(EXTRACTORS))}"
        )
    return kind, arg


def build_extractor(spec: str, options: ExtractOptions | None = None) -> Extractor:
    """Construct the extractor for a spec string (cheap; call :meth:`Extractor.resolve` next)."""
    kind, arg = parse_spec(spec)
    return EXTRACTORS[kind](arg, options or ExtractOptions())


def config_hash(identity: dict[str, Any], schema_version: int) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of an identity and the schema version."""
    payload = json.dumps({"identity": identity, "schema_version": schema_version},
                         sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


ProgressCallback = Callable[[int, float], None]
"""Called with (clips done in this step, audio seconds done in this step)."""
