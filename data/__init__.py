"""Data: audio loading, corpus readers, task definitions and the demo corpus.

The first stage of ``data -> extract -> store -> heads -> reports``; imports nothing from the
later stages. Names are re-exported lazily, so ``import data.audio`` in an extraction worker
does not pay for pandas or scipy.

Example:
    >>> from data import get_task
    >>> get_task("avb-type").targets[0].classes[:3]
    ('Gasp', 'Laugh', 'Cry')
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SAMPLE_RATE": "data.audio",
    "AudioError": "data.audio",
    "audio_info": "data.audio",
    "duration_seconds": "data.audio",
    "file_hash": "data.audio",
    "load_audio": "data.audio",
    "SPLITS": "data.corpus",
    "Corpus": "data.corpus",
    "CorpusError": "data.corpus",
    "LAYOUTS": "data.corpora",
    "read_corpus": "data.corpora",
    "register_layout": "data.corpora",
    "make_demo_corpus": "data.demo",
    "COUNTRIES": "data.tasks",
    "CULTURE_COLUMNS": "data.tasks",
    "EMOTIONS": "data.tasks",
    "TASKS": "data.tasks",
    "VOC_TYPES": "data.tasks",
    "Target": "data.tasks",
    "Task": "data.tasks",
    "TaskError": "data.tasks",
    "get_task": "data.tasks",
    "parse_tasks": "data.tasks",
    "resolve_task": "data.tasks",
    "target_array": "data.tasks",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from data.audio import SAMPLE_RATE, AudioError, audio_info, duration_seconds, file_hash, load_audio
    from data.corpora import LAYOUTS, read_corpus, register_layout
    from data.corpus import SPLITS, Corpus, CorpusError
    from data.demo import make_demo_corpus
    from data.tasks import (
        COUNTRIES,
        CULTURE_COLUMNS,
        EMOTIONS,
        TASKS,
        VOC_TYPES,
        Target,
        Task,
        TaskError,
        get_task,
        parse_tasks,
        resolve_task,
        target_array,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
