"""Which corpus a workdir was built from, so later commands need only ``--workdir``."""
from __future__ import annotations

import json
import os
from pathlib import Path

CORPUS_FILE = "corpus.json"
READER_REF_KEYS = ("table", "column", "text_column", "group_column")
"""Reader options a corpus reference records (their flag is ``--`` + the key with dashes)."""


def save_corpus_ref(workdir: str | os.PathLike, root: str | os.PathLike, layout: str,
                    labels: str | os.PathLike | None = None, *, table: str | None = None,
                    column: str | None = None, text_column: str | None = None,
                    group_column: str | None = None, split: dict | None = None,
                    meta: dict | None = None) -> None:
    """Remember the corpus of a workdir (absolute paths), the reader's options (transcript
    column, group column, audformat table/column), the automatic split when there is one
    (``split``: method, seed, fractions, stratify; the clips are in ``WORKDIR/split.csv``) and
    what the corpus is (``Corpus.meta``: e.g. an audformat database's name and version)."""
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
    if group_column is not None:
        ref["group_column"] = group_column
    if split:
        ref["split"] = split
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


def open_corpus(workdir: str | os.PathLike, *, need_split: bool = False):
    """Read the corpus a workdir was built from, with the workdir's automatic split applied
    when ``extract --split auto`` made one (``WORKDIR/split.csv``, :mod:`data.splits`).

    Args:
        workdir: the workdir.
        need_split: refuse a corpus without Train or Val clips (commands that train).

    Raises:
        FileNotFoundError: the workdir has no corpus reference (run ``extract`` first).
        data.splits.SplitError: the recorded split file is missing or damaged, or (with
            ``need_split``) there is no Train or no Val clip; the message gives the command
            that makes a split.
    """
    from data.corpora import read_corpus
    from data.hints import extract_command, split_command
    from data.splits import apply_split, check_split, read_split

    ref = load_corpus_ref(workdir)
    if ref is None:
        raise FileNotFoundError(
            f"{workdir} has no {CORPUS_FILE}: run "
            f"`{extract_command(workdir, 'opensmile:eGeMAPSv02')}` first (ROOT: the corpus "
            f"folder, LAYOUT: avb, exvo, iemocap, csv, audformat or hf), which records the corpus")
    corpus = read_corpus(ref["root"], ref["layout"], labels=ref.get("labels"),
                         workdir=workdir, **{k: ref.get(k) for k in READER_REF_KEYS})
    split = ref.get("split") or {}
    fix = split_command(workdir, ref)
    if split.get("method") == "auto":
        corpus = apply_split(corpus, read_split(workdir, fix=fix))
    if need_split:
        check_split(corpus, fix=fix)
    return corpus
