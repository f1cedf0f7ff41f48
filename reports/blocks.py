"""The pieces every report section is made of: number formatting, figure blocks and the
figure drawer that keeps going when one figure fails, the untrained-model test of a spec.

A report is a list of blocks (plain dicts: ``h``, ``p``, ``table``, ``figure``) that
:mod:`reports.html` and :func:`reports.report.render_markdown` render.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fmt(x: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``-`` for None and non-finite floats."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else str(x)


def p_text(p: Any) -> str:
    """A p-value: scientific below 1e-3, ``-`` when missing."""
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def interval(ci: Any, digits: int = 4) -> str:
    """``[low, high]`` of a two-number interval."""
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def is_untrained_spec(spec: str) -> bool:
    """An ``ssl:`` spec whose model folder is a random checkpoint (extract.untrained)."""
    from extract.untrained import is_untrained

    return spec.startswith("ssl:") and Path(spec[4:]).is_dir() and is_untrained(spec[4:])


UNTRAINED_TEXT = ("**This set comes from an UNTRAINED, randomly initialised model: {what} "
                  "exercises the code path and is not a result about any real model.**")
"""The warning a section shows above numbers of an untrained model (``{what}``: the curve...)."""


def safe_name(name: str) -> str:
    """A file-name-safe version of ``name`` (at most 120 characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


class Figures:
    """Draws figures into the files folder, keeping going when one fails.

    Args:
        folder: where the PNG files go.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: list[Path] = []

    def draw(self, name: str, fn: Callable[..., Path], *args: Any, **kwargs: Any) -> Path | None:
        """``fn(*args, folder/name.png, **kwargs)``; None (logged) when it raises."""
        try:
            path = fn(*args, self.folder / f"{safe_name(name)}.png", **kwargs)
        except Exception as exc:  # one broken input must not cost the whole report
            log.warning("figure %s not drawn: %s", name, exc)
            return None
        self.made.append(path)
        return path


def figure(path: Path | None, caption: str) -> list[dict[str, Any]]:
    """A figure block, or nothing when the figure was not drawn."""
    return [{"kind": "figure", "path": path, "caption": caption}] if path else []
