"""A run's folder, ``WORKDIR/runs/<run-name>/``, and the one atomic JSON writer of heads/.

Every JSON file is written under a hidden temporary name in the same folder and renamed over
the target, so a reader never sees half a file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"

log = logging.getLogger(__name__)

_CREATED: dict[Path, str] = {}
"""Result folders this process created -> the file that marks them finished (make_run_dir)."""


def safe_name(name: str) -> str:
    """``name`` with every run of characters outside ``[A-Za-z0-9_.-]`` replaced by ``_``.

    Example:
        >>> safe_name("classify:type/x")
        'classify_type_x'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def default_run_name(task: str, head: str, features: Sequence[str], layer: int | None) -> str:
    """``<time>-<task>-<head>-<features>[-l<layer>]``, e.g. ``20240101-120000-avb-high-ridge-x``."""
    feats = "+".join(safe_name(f.split(":")[-1].split("/")[-1]) for f in features)
    layer_part = f"-l{layer}" if layer is not None else ""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{task.replace(',', '+').replace(':', '_')}-{head}-{feats}{layer_part}"


def run_dir(workdir: str | os.PathLike, run_name: str) -> Path:
    """``WORKDIR/runs/<run_name>``."""
    return Path(workdir) / RUNS_DIR / run_name


def make_run_dir(path: str | os.PathLike, *, result: str = "metrics.json") -> Path:
    """Create a run's folder (a run, a probe, a study) and remember it until ``result`` is
    written in it, so that a failed command leaves no empty or half-written folder behind
    (:func:`discard_unfinished`). A folder that already exists is used as it is and never
    removed: it may hold earlier results."""
    path = Path(path)
    if path.exists():
        path.mkdir(parents=True, exist_ok=True)  # a file in the way raises here
        return path
    path.mkdir(parents=True)
    _CREATED[path] = result
    return path


def discard_unfinished(*, keep_files: bool = False) -> list[Path]:
    """Remove the folders :func:`make_run_dir` created in this process whose result file was
    never written (the command failed). Called by the command line when a command fails.

    Args:
        keep_files: remove only the empty ones (an interrupted run keeps its curves and
            checkpoints for a look).

    Returns:
        The folders removed.
    """
    removed = []
    for path, result in list(_CREATED.items()):
        del _CREATED[path]
        if (path / result).exists() or not path.is_dir():
            continue
        if any(path.iterdir()):
            if keep_files:
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.rmdir()
        log.info("removed the unfinished folder %s (its command failed; nothing in it was a "
                 "result)", path)
        removed.append(path)
    return removed


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON values: NumPy scalars become numbers, anything else unknown a string."""
    return json.loads(json.dumps(x, default=_plain))


def _plain(o: Any) -> Any:
    return o.item() if hasattr(o, "item") else str(o)


def write_json(path: Path, obj: Any, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (hidden temporary name, then rename).

    NumPy scalars are written as numbers and other unknown objects as strings; NaN stays NaN.
    """
    write_text(Path(path), json.dumps(obj, indent=indent, allow_nan=True, default=_plain))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` under a hidden temporary name (with the process id), then rename:
    readers never see half a file, and two writers never share a temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_results(base: str | os.PathLike, filename: str) -> list[tuple[Path, dict[str, Any]]]:
    """``(folder, content)`` of every ``base/<folder>/<filename>`` that reads as JSON, in folder
    order; an unreadable one is logged and left out (one broken study never hides the others)."""
    out = []
    for path in sorted(Path(base).glob(f"*/{filename}")):
        try:
            out.append((path.parent, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
    return out
