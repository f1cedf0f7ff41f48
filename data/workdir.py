"""Which corpus a workdir was built from, so later commands need only ``--workdir``."""
from __future__ import annotations

import json
import os
from pathlib import Path

CORPUS_FILE = "corpus.json"


def save_corpus_ref(workdir: str | os.PathLike, root: str | os.PathLike, layout: str,
                    labels: str | os.PathLike | None = None, *, table: str | None = None,
                    column: str | None = None, text_column: str | None = None,
                    meta: dict | None = None) -> None:
    """Remember the corpus of a workdir (absolute paths), the reader's options (transcript
    column, audformat table/column) and what the corpus is (``Corpus.meta``: e.g. an audformat
    database's name and version)."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ref: dict = {"root": str(Path(root).resolve()), "layout": layout,
           "labels": str(Path(labels).resolve()) if labels else None}
    if text_column:
        ref["text_column"] = text_column
    if table is not None:
        ref["table"] = table
    if column is not None:
        ref["column"] = column
    if meta:
        ref["meta"] = meta
    text = json.dumps(ref, indent=2)
    target = wd / CORPUS_FILE
    if target.exists() and target.read_text() == text:
        return  # unchanged: a rerun touches nothing
    tmp = wd / f".{CORPUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, wd / CORPUS_FILE)


def load_corpus_ref(workdir: str | os.PathLike) -> dict | None:
    """The corpus reference of a workdir, or None when it has none.

    Raises:
        ValueError: the file exists but is not a corpus reference (names the file).
    """
    p = Path(workdir) / CORPUS_FILE
    if not p.exists():
        return None
    try:
        ref = json.loads(p.read_text())
        if not isinstance(ref, dict) or "root" not in ref or "layout" not in ref:
            raise ValueError("needs 'root' and 'layout'")
    except ValueError as exc:
        from data.hints import command  # not extract_command: it reads this file

        again = command("extract", "--corpus", "ROOT", "--layout", "LAYOUT", "--workdir",
                        str(workdir), "--features", "SPEC")
        raise ValueError(f"{p} is damaged ({exc}); rerun `{again}` "
                         f"with the corpus ROOT, its LAYOUT and a stored SPEC (`list` shows them), "
                         f"which rewrites it") from None
    return ref


def open_corpus(workdir: str | os.PathLike):
    """Read the corpus a workdir was built from.

    Raises:
        FileNotFoundError: the workdir has no corpus reference (run ``extract`` first).
    """
    from data.corpora import read_corpus
    from data.hints import extract_command

    ref = load_corpus_ref(workdir)
    if ref is None:
        raise FileNotFoundError(
            f"{workdir} has no {CORPUS_FILE}: run "
            f"`{extract_command(workdir, 'opensmile:eGeMAPSv02')}` first (ROOT: the corpus "
            f"folder, LAYOUT: avb, exvo, iemocap, csv, audformat or hf), which records the corpus")
    return read_corpus(ref["root"], ref["layout"], labels=ref.get("labels"), table=ref.get("table"),
                       column=ref.get("column"), text_column=ref.get("text_column"),
                       workdir=workdir)
