"""Every head's name, family and input without importing a head: what the recipes and the
command line's help read, so that they need no torch.

:data:`HEAD_KINDS` holds the same names, families and inputs as the registry
(:data:`heads.base.HEADS` after :func:`heads.registry.load_heads`, which builds the torch nets);
``tests/heads/test_catalog.py`` fails when the two part. A new head goes into both.

Example:
    >>> head_kind("lstm").input_kind, head_names("classical")[:2]
    ('sequence', ['logreg', 'ridge'])
"""
from __future__ import annotations

from dataclasses import dataclass

from heads.base import FAMILIES


@dataclass(frozen=True)
class HeadKind:
    """What a head is, without the head.

    Attributes:
        family: one of :data:`FAMILIES`.
        input_kind: ``vector`` (a feature matrix) or ``sequence`` (frame sequences).
        spectrogram: a CNN on log-mel spectrograms (``--features logmel:N``).
    """

    family: str
    input_kind: str
    spectrogram: bool = False


_CLASSICAL = HeadKind("classical", "vector")
_TORCH_VECTORS = HeadKind("torch", "vector")
_TORCH_FRAMES = HeadKind("torch", "sequence")
_TORCH_SPECTROGRAMS = HeadKind("torch", "sequence", spectrogram=True)

HEAD_KINDS: dict[str, HeadKind] = {
    **{n: _CLASSICAL for n in ("logreg", "ridge", "svc", "svr", "xgb")},
    **{n: _TORCH_VECTORS for n in ("mlp-avb", "mlp-mtl")},
    **{n: _TORCH_FRAMES for n in ("autopool", "fc128", "lstm", "lstm128", "mean3", "netvlad")},
    **{n: _TORCH_SPECTROGRAMS for n in ("cnn-exits", "resnet18", "resnet34", "resnet50")},
}
"""Head name -> its kind: the registry's heads (the test keeps them equal)."""


def head_names(family: str | None = None) -> list[str]:
    """Head names, classical first then torch, each family sorted (the CLI lists them so)."""
    return [n for fam in FAMILIES if family in (None, fam)
            for n in sorted(n for n, k in HEAD_KINDS.items() if k.family == fam)]


def head_kind(name: str) -> HeadKind:
    """The kind of the head called ``name``.

    Raises:
        ValueError: unknown head (lists the known ones).
    """
    if name not in HEAD_KINDS:
        raise unknown_head(name)
    return HEAD_KINDS[name]


def unknown_head(name: str) -> ValueError:
    """The error for a head name that is not registered (lists the known ones)."""
    return ValueError(f"unknown head {name!r}; known heads: {', '.join(head_names())}")


def head_help() -> str:
    """The ``--head`` help text: every head, grouped by family and input."""
    groups: dict[str, list[str]] = {}
    for name in head_names("torch"):
        kind = HEAD_KINDS[name]
        what = ("log-mel spectrograms: --features logmel:N" if kind.spectrogram
                else "vectors" if kind.input_kind == "vector" else "frame sequences")
        groups.setdefault(what, []).append(name)
    order = ["vectors", "frame sequences", "log-mel spectrograms: --features logmel:N"]
    torch_text = ", ".join(f"{', '.join(groups[w])} ({w})" for w in order if w in groups)
    return f"head: {', '.join(head_names('classical'))} (classical) or a torch head: {torch_text}"
