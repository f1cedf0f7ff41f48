"""The commands the tool suggests in its messages (fix-it hints), spelled in one place.

Every hint is a whole command a user can paste and run: ``python run_pipeline.py`` first, the
real workdir, and the corpus root, layout and reader options of ``WORKDIR/corpus.json`` when
the workdir has one. Only what nobody knows yet is an upper-case placeholder (``ROOT`` and
``LAYOUT`` before a workdir's first extraction).
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence

from data.workdir import READER_REF_KEYS, load_corpus_ref

PROGRAM = ("python", "run_pipeline.py")
ROOT_PLACEHOLDER = "ROOT"
LAYOUT_PLACEHOLDER = "LAYOUT"

# corpus.json key -> the extract flag that recorded it
_READER_FLAGS = (("labels", "--labels"),
                 *((key, "--" + key.replace("_", "-")) for key in READER_REF_KEYS))


def command(sub: str, *args: object) -> str:
    """``python run_pipeline.py SUB ARGS`` with each argument quoted for a POSIX shell;
    ``None`` arguments are left out.

    Example:
        >>> command("verify", "--workdir", "runs/my corpus", "--repair")
        "python run_pipeline.py verify --workdir 'runs/my corpus' --repair"
    """
    parts = [*PROGRAM, sub, *(str(a) for a in args if a is not None)]
    return " ".join(shlex.quote(p) for p in parts)


def corpus_args(workdir: str | os.PathLike, ref: dict | None = None, *,
                layout: str | None = None) -> list[str]:
    """``--corpus ROOT --layout L`` (and the reader options) that built ``workdir``, from its
    corpus.json (or ``ref``, a corpus reference already read); placeholders when it has none (or
    an unreadable one), ``layout`` standing in for the LAYOUT placeholder when given."""
    if ref is None:
        try:
            ref = load_corpus_ref(workdir) or {}
        except ValueError:
            ref = {}
    args = ["--corpus", ref.get("root") or ROOT_PLACEHOLDER,
            "--layout", ref.get("layout") or layout or LAYOUT_PLACEHOLDER]
    for key, flag in _READER_FLAGS:
        if ref.get(key):
            args += [flag, str(ref[key])]
    return args


def _ints(values: Iterable[int] | int | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, int):
        return str(values)
    return ",".join(str(v) for v in values) or None


def extract_command(workdir: str | os.PathLike, spec: str | Sequence[str], *,
                    layers: Iterable[int] | int | None = None,
                    poolings: Sequence[str] | str | None = None,
                    frames_layers: Iterable[int] | int | None = None,
                    level: str | None = None, dtype: str | None = None,
                    root: str | None = None, layout: str | None = None) -> str:
    """The ``extract`` command that stores ``spec`` (one spec or several) in ``workdir``.

    ``layers``, ``poolings``, ``frames_layers`` and ``dtype`` apply to ``ssl:`` specs,
    ``level`` to ``opensmile:`` ones; ``root`` replaces the recorded corpus root (a corpus
    that moved); ``layout`` fills the layout when the workdir records none (a recipe's).

    Example:
        >>> extract_command("/nowhere", "ssl:facebook/wav2vec2-base", layers=12, poolings="mean",
        ...                 frames_layers=[12])
        'python run_pipeline.py extract --corpus ROOT --layout LAYOUT --workdir /nowhere --features ssl:facebook/wav2vec2-base --layers 12 --poolings mean --frames-layers 12'
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    corpus = corpus_args(workdir, layout=layout)
    if root is not None:
        corpus[1] = root
    args: list[object] = [*corpus, "--workdir", str(workdir), "--features", *specs]
    if any(s.startswith("ssl:") for s in specs):
        if layers is not None:
            args += ["--layers", _ints(layers)]
        if poolings:
            args += ["--poolings", poolings if isinstance(poolings, str) else ",".join(poolings)]
        if frames_layers is not None and _ints(frames_layers):
            args += ["--frames-layers", _ints(frames_layers)]
        if dtype is not None and dtype != "float16":
            args += ["--dtype", dtype]
    if level is not None and any(s.startswith("opensmile:") for s in specs):
        args += ["--level", level]
    return command("extract", *args)


def split_command(workdir: str | os.PathLike, ref: dict | None = None) -> str:
    """The command that writes an automatic split of this workdir (``extract ... --split auto``;
    without ``--features`` it reads no audio), with the seed, fractions and stratification
    column of the split the workdir records, if any."""
    ref = (load_corpus_ref(workdir) or {}) if ref is None else ref
    split = ref.get("split") or {}
    args: list[object] = [*corpus_args(workdir, ref), "--workdir", str(workdir), "--split", "auto"]
    if split.get("seed"):
        args += ["--split-seed", split["seed"]]
    if split.get("fractions"):
        args += ["--split-fractions", ",".join(f"{f:g}" for f in split["fractions"])]
    if split.get("stratify"):
        args += ["--split-stratify", split["stratify"]]
    return command("extract", *args)


def storage_flags(config: dict) -> dict:
    """The :func:`extract_command` keywords that store a set again as its config says (a set
    header's ``config``: layers, poolings, frame layers, dtype, openSMILE level)."""
    out: dict = {}
    if config.get("extractor") == "ssl":
        out = {"layers": config.get("layers"), "poolings": config.get("poolings") or None,
               "frames_layers": config.get("frames_layers") or None, "dtype": config.get("dtype")}
    elif config.get("level") and config.get("level") != "functionals":
        out = {"level": config["level"]}
    return out


def workdir_command(sub: str, workdir: str | os.PathLike, *args: object) -> str:
    """``python run_pipeline.py SUB --workdir WORKDIR ARGS`` (verify, list, report, ...).

    Example:
        >>> workdir_command("verify", "runs/x", "--repair")
        'python run_pipeline.py verify --workdir runs/x --repair'
    """
    return command(sub, "--workdir", str(workdir), *args)


def is_spec(text: str) -> bool:
    """Whether ``text`` reads as an extractor spec (``opensmile:...``, ``ssl:...``,
    ``logmel:...``) rather than a set's name or key, which ``extract`` cannot take."""
    return ":" in text and not text.startswith(":")


__all__ = ["PROGRAM", "ROOT_PLACEHOLDER", "LAYOUT_PLACEHOLDER", "command", "corpus_args",
           "extract_command", "storage_flags", "workdir_command", "is_spec"]
