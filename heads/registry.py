"""The complete head registry: imports both families so that :data:`heads.base.HEADS` holds
every head (classical from :mod:`heads.classical`, torch from :mod:`heads.training.head`).

Example:
    >>> heads = load_heads()
    >>> heads["ridge"].family, heads["mlp-mtl"].family
    ('classical', 'torch')
"""
from __future__ import annotations

import heads.classical  # noqa: F401  (registers the classical heads)
import heads.training.head  # noqa: F401  (registers the torch heads)
from heads.base import FAMILIES, HEADS, Head


def load_heads() -> dict[str, Head]:
    """Every registered head, by name."""
    return HEADS


def get_head(name: str) -> Head:
    """The head called ``name``.

    Raises:
        ValueError: unknown head (lists the known ones).
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; known heads: {', '.join(head_names())}")
    return HEADS[name]


def head_names(family: str | None = None) -> list[str]:
    """Head names, classical first then torch, each family sorted (the CLI lists them so)."""
    return [n for fam in FAMILIES if family in (None, fam)
            for n in sorted(n for n, h in HEADS.items() if h.family == fam)]


def head_help() -> str:
    """The ``--head`` help text: every head, grouped by family and input."""
    classical = head_names("classical")
    torch_heads = [HEADS[n] for n in head_names("torch")]
    groups: dict[str, list[str]] = {}
    for h in torch_heads:
        what = ("log-mel spectrograms: --features logmel:N" if getattr(h, "spectrogram", False)
                else "vectors" if h.input_kind == "vector" else "frame sequences")
        groups.setdefault(what, []).append(h.name)
    order = ["vectors", "frame sequences", "log-mel spectrograms: --features logmel:N"]
    torch_text = ", ".join(f"{', '.join(groups[w])} ({w})" for w in order if w in groups)
    return f"head: {', '.join(classical)} (classical) or a torch head: {torch_text}"
