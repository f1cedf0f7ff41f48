"""heads.catalog's torch-free table of head names and kinds is the registry's, name for name."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heads.catalog import HEAD_KINDS, head_help, head_kind, head_names
from heads.registry import HEADS, get_head

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_the_registry():
    assert sorted(HEAD_KINDS) == sorted(HEADS)
    for name, head in HEADS.items():
        kind = HEAD_KINDS[name]
        assert (kind.family, kind.input_kind, kind.spectrogram) == (
            head.family, head.input_kind, bool(getattr(head, "spectrogram", False))), name


def test_names_in_the_order_the_cli_lists_them():
    assert head_names() == head_names("classical") + head_names("torch")
    assert head_names("classical") == sorted(n for n, h in HEADS.items() if h.family == "classical")
    assert head_names("torch") == sorted(n for n, h in HEADS.items() if h.family == "torch")
    spectrograms = [n for n in head_names("torch") if getattr(HEADS[n], "spectrogram", False)]
    vectors = [n for n in head_names("torch") if HEADS[n].input_kind == "vector"]
    frames = [n for n in head_names("torch") if n not in spectrograms + vectors]
    assert head_help() == (f"head: {', '.join(head_names('classical'))} (classical) or a torch "
                           f"head: {', '.join(vectors)} (vectors), {', '.join(frames)} (frame "
                           f"sequences), {', '.join(spectrograms)} (log-mel spectrograms: "
                           f"--features logmel:N)")


def test_an_unknown_head_is_refused_alike():
    with pytest.raises(ValueError) as from_table:
        head_kind("nohead")
    with pytest.raises(ValueError) as from_registry:
        get_head("nohead")
    assert str(from_table.value) == str(from_registry.value)
    assert "known heads: logreg, ridge" in str(from_table.value)


def test_the_catalog_imports_no_torch():
    code = "import sys, heads.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
