"""Data: audio loading, corpus readers, task definitions and the demo corpus.

The first stage of ``data -> extract -> store -> heads -> reports``; imports nothing from the
later stages.

Example:
    >>> from data import get_task
    >>> get_task("avb-type").targets[0].classes[:3]
    ('Gasp', 'Laugh', 'Cry')
"""
from __future__ import annotations

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

__all__ = [
    "AudioError",
    "COUNTRIES",
    "CULTURE_COLUMNS",
    "Corpus",
    "CorpusError",
    "EMOTIONS",
    "LAYOUTS",
    "SAMPLE_RATE",
    "SPLITS",
    "TASKS",
    "Target",
    "Task",
    "TaskError",
    "VOC_TYPES",
    "audio_info",
    "duration_seconds",
    "file_hash",
    "get_task",
    "load_audio",
    "make_demo_corpus",
    "parse_tasks",
    "read_corpus",
    "register_layout",
    "resolve_task",
    "target_array",
]
