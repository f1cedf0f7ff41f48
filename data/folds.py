"""Cross-validation folds as data: which clip is Train, Val or Test in each fold.

A :class:`Fold` is a name and a mapping ``clip id -> 'Train' | 'Val' | 'Test'``; clips it does
not list take no part in it. Folds come from a protocol spec (:func:`make_folds`):

* ``leave-one-out:<column>``: one fold per value of a label column (or ``group``), that value's
  clips held out as Test. On IEMOCAP ``leave-one-out:session`` gives 5 folds and
  ``leave-one-out:speaker`` 10.
* ``test-group:<value>`` or ``test-group:<column>=<value>``: one fold holding out one group;
  the column defaults to ``speaker`` (``test-group:01F`` is seed 004's fold: train on nine
  speakers, test on the woman of session 1).
* ``emobox:<folder>``: the fold files EmoBox publishes (see :func:`read_emobox_folds`).

The validation set (early stopping, model selection) is taken from the clips not held out, by a
named rule (:class:`ValRule`), so that no speaker is in two of Train, Val and Test:

* ``partner`` (default): the other speaker(s) of the held-out session, i.e. the remaining clips
  whose ``session`` is one of the Test clips' sessions. When the whole session is held out
  (``leave-one-out:session``, EmoBox's IEMOCAP folds) there is no partner, and the rule takes
  the next session instead (as ``next-session``); the fold's ``val_rule`` then reads
  ``partner->next-session``.
* ``next-session``: every remaining clip of the session that follows the last held-out session
  (natural order, wrapping round: Test session 5 -> Val session 1).
* ``next-group``: the group that follows the held-out one among the values of the fold's column
  (for ``test-group:01F``: speaker 01M; for ``leave-one-out:session``: the next session).
* ``none``: no Val clips; everything not held out is Train.

Every fold records the speakers found in more than one of its roles (``shared_speakers``); it is
empty for the protocols above on IEMOCAP and is logged as a warning otherwise (e.g.
``leave-one-out:mode`` puts every speaker on both sides by construction).

Example:
    >>> import pandas as pd
    >>> from data.corpus import Corpus
    >>> idx = pd.Index(["a1", "a2", "b1", "b2"], name="clip_id")
    >>> clips = pd.DataFrame({"path": "", "split": "", "group": ["01F", "01M", "02F", "02M"]}, index=idx)
    >>> labels = pd.DataFrame({"speaker": ["01F", "01M", "02F", "02M"],
    ...                        "session": ["01", "01", "02", "02"]}, index=idx)
    >>> c = Corpus(root=".", layout="csv", clips=clips, labels=labels)
    >>> (fold,) = make_folds(c, "test-group:01F")
    >>> fold.name, dict(fold.split)
    ('speaker=01F', {'a1': 'Test', 'a2': 'Val', 'b1': 'Train', 'b2': 'Train'})

One concept, at length: cross-validation folds (building them from a protocol, the
validation rule inside each, EmoBox's fold files, and their checks) live together so that every
command splits a corpus the same way.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Literal, Mapping, Sequence

import pandas as pd

from data.corpus import Corpus, examples, natural_key

logger = logging.getLogger(__name__)

Role = Literal["Train", "Val", "Test"]
ROLES: tuple[Role, ...] = ("Train", "Val", "Test")

SPEAKER_COLUMN = "speaker"
SESSION_COLUMN = "session"
PROTOCOLS = ("leave-one-out:<column>", "test-group:[<column>=]<value>", "emobox:<folder>")


class FoldError(ValueError):
    """A fold protocol cannot be built; the message names the column, value or file and the fix."""


class ValRule(str, Enum):
    """How the validation set is chosen from the clips not held out (module docstring)."""

    PARTNER = "partner"
    NEXT_SESSION = "next-session"
    NEXT_GROUP = "next-group"
    NONE = "none"

    @classmethod
    def parse(cls, value: ValRule | str) -> ValRule:
        """The rule named ``value``.

        Raises:
            FoldError: not a rule name (lists the names).
        """
        if isinstance(value, ValRule):
            return value
        try:
            return cls(str(value).strip())
        except ValueError:
            raise FoldError(
                f"unknown validation rule {value!r}; choose one of {[r.value for r in cls]}"
            ) from None


@dataclass(frozen=True, eq=False)
class Fold:
    """One cross-validation fold.

    Attributes:
        name: e.g. ``session=01``, ``speaker=01F``, ``emobox-fold_1``.
        split: ``{clip id: 'Train' | 'Val' | 'Test'}`` (read-only); clips not listed are unused.
        column: the column whose values the groups are (``session``, ``speaker``, ...).
        test_groups: the held-out values of ``column``.
        val_groups: the values (of ``column``, or sessions/speakers as the rule says) that
            form Val.
        val_rule: the rule that chose Val, as applied (``partner``, ``partner->next-session``,
            ``next-group``, ``none``, ``emobox-valid``).
        source: the protocol spec the fold came from.
        shared_speakers: speakers with clips in more than one role (empty when speakers are
            disjoint).
    """

    name: str
    split: Mapping[str, Role]
    column: str = ""
    test_groups: tuple[str, ...] = ()
    val_groups: tuple[str, ...] = ()
    val_rule: str = ""
    source: str = ""
    shared_speakers: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        bad = sorted({r for r in self.split.values() if r not in ROLES})
        if bad:
            raise FoldError(f"fold {self.name!r}: roles must be {list(ROLES)}, got {bad}")
        object.__setattr__(self, "split", MappingProxyType(dict(self.split)))

    def ids(self, role: Role) -> list[str]:
        """Clip ids of one role, in the fold's order.

        Raises:
            FoldError: ``role`` is not Train, Val or Test.
        """
        if role not in ROLES:
            raise FoldError(f"role must be one of {list(ROLES)}, got {role!r}")
        return [c for c, r in self.split.items() if r == role]

    def counts(self) -> dict[str, int]:
        """Clips per role."""
        out = {r: 0 for r in ROLES}
        for r in self.split.values():
            out[r] += 1
        return out

    def apply(self, corpus: Corpus) -> Corpus:
        """The corpus restricted to this fold's clips, with their ``split`` set to their role.

        Everything downstream that reads ``Corpus.split_ids`` then trains, selects and scores on
        this fold unchanged.

        Raises:
            FoldError: the fold names clips the corpus lacks.
        """
        unknown = [c for c in self.split if c not in corpus.clips.index]
        if unknown:
            raise FoldError(
                f"fold {self.name!r} names {len(unknown)} clip(s) the corpus at {corpus.root} "
                f"lacks ({examples(unknown)}); were the folds made from another corpus?"
            )
        sub = corpus.subset(list(self.split))
        clips = sub.clips.assign(split=[self.split[c] for c in sub.clips.index])
        return replace(sub, clips=clips)

    def to_dict(self) -> dict:
        """JSON-ready form (see :func:`write_folds`)."""
        return {
            "name": self.name,
            "column": self.column,
            "test_groups": list(self.test_groups),
            "val_groups": list(self.val_groups),
            "val_rule": self.val_rule,
            "source": self.source,
            "shared_speakers": list(self.shared_speakers),
            "split": dict(self.split),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Fold:
        """Inverse of :meth:`to_dict`.

        Raises:
            FoldError: ``name`` or ``split`` is missing, or a role is not Train/Val/Test.
        """
        missing = [k for k in ("name", "split") if k not in data]
        if missing:
            raise FoldError(f"a fold record lacks {missing}; has {sorted(data)}")
        return cls(
            name=str(data["name"]),
            split={str(k): v for k, v in dict(data["split"]).items()},
            column=str(data.get("column", "")),
            test_groups=tuple(data.get("test_groups", ())),
            val_groups=tuple(data.get("val_groups", ())),
            val_rule=str(data.get("val_rule", "")),
            source=str(data.get("source", "")),
            shared_speakers=tuple(data.get("shared_speakers", ())),
        )


# --------------------------------------------------------------------------------------------
# columns
# --------------------------------------------------------------------------------------------


def _available(corpus: Corpus) -> list[str]:
    return ["group", *[c for c in corpus.labels.columns if c != "group"]]


def column_values(corpus: Corpus, column: str) -> pd.Series:
    """Text value of ``column`` for every clip (``''`` where missing).

    ``column`` is a label column, or ``group`` (the clip table's speaker/subject column);
    ``speaker`` names the group where the speakers are no label column (a csv corpus's
    ``speaker`` column becomes its group).

    Raises:
        FoldError: no such column (names the available ones).
    """
    if column in corpus.labels.columns:
        raw = corpus.labels[column].reindex(corpus.clips.index)
    elif column == "group" or (column == SPEAKER_COLUMN and "group" in corpus.clips.columns
                               and corpus.clips["group"].astype(str).str.strip().ne("").any()):
        raw = corpus.clips["group"]  # a csv speaker column is the clips' group, not a label
    else:
        raise FoldError(
            f"no column {column!r} to make folds from in the {corpus.layout} corpus at "
            f"{corpus.root}; available: {_available(corpus)}"
        )

    def text(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).strip()

    return raw.map(text).astype(object)


def speakers(corpus: Corpus) -> pd.Series | None:
    """Speaker of every clip as text (``''`` unknown): the ``speaker`` label column where the
    layout has one (IEMOCAP), else the clip table's ``group``; None when no clip has one."""
    if SPEAKER_COLUMN in corpus.labels.columns:
        return column_values(corpus, SPEAKER_COLUMN)
    group = column_values(corpus, "group")
    return group if (group != "").any() else None


def _sessions(corpus: Corpus) -> pd.Series | None:
    if SESSION_COLUMN in corpus.labels.columns:
        return column_values(corpus, SESSION_COLUMN)
    return None


def _next_value(values: Iterable[str], after: Sequence[str], allowed: set[str]) -> str | None:
    """The value following the last of ``after`` in natural order (wrapping), among ``allowed``."""
    ordered = sorted(set(values) | set(after), key=natural_key)
    if not ordered or not allowed:
        return None
    start = max(ordered.index(a) for a in after) if after else -1
    for k in range(1, len(ordered) + 1):
        candidate = ordered[(start + k) % len(ordered)]
        if candidate in allowed:
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# building folds
# --------------------------------------------------------------------------------------------


def _choose_val(
    corpus: Corpus,
    test: list[str],
    rest: list[str],
    rule: ValRule,
    *,
    column: str,
    values: pd.Series | None,
    test_groups: Sequence[str],
) -> tuple[list[str], tuple[str, ...], str]:
    """(Val clip ids, the groups they form, the rule as applied)."""
    if rule is ValRule.NONE or not rest:
        return [], (), ValRule.NONE.value
    if rule in (ValRule.PARTNER, ValRule.NEXT_SESSION):
        sessions = _sessions(corpus)
        if sessions is None:
            raise FoldError(
                f"validation rule {rule.value!r} needs a {SESSION_COLUMN!r} label column, which the "
                f"{corpus.layout} corpus at {corpus.root} lacks; choose --cv-val next-group or --cv-val none"
            )
        test_sessions = sorted({sessions[c] for c in test} - {""}, key=natural_key)
        rest_sessions = {sessions[c] for c in rest} - {""}
        applied = rule.value
        if rule is ValRule.PARTNER:
            partners = set(test_sessions) & rest_sessions
            if partners:
                chosen = tuple(sorted(partners, key=natural_key))
                return [c for c in rest if sessions[c] in partners], chosen, applied
            applied = "partner->next-session"
        nxt = _next_value(sessions.unique(), test_sessions, rest_sessions - set(test_sessions))
        if nxt is None:
            return [], (), applied
        return [c for c in rest if sessions[c] == nxt], (nxt,), applied
    # next-group: along the fold's own column
    assert values is not None, "next-group needs the fold column's values"
    rest_groups = {values[c] for c in rest} - {""}
    nxt = _next_value(values.unique(), list(test_groups), rest_groups)
    if nxt is None:
        return [], (), rule.value
    return [c for c in rest if values[c] == nxt], (nxt,), rule.value


def _shared(corpus: Corpus, split: Mapping[str, str]) -> tuple[str, ...]:
    who = speakers(corpus)
    if who is None:
        return ()
    roles: dict[str, set[str]] = {}
    for clip, role in split.items():
        spk = who[clip]
        if spk:
            roles.setdefault(spk, set()).add(role)
    return tuple(sorted((s for s, r in roles.items() if len(r) > 1), key=natural_key))


def _finish(fold: Fold) -> Fold:
    n = fold.counts()
    logger.info("fold %s: Train %d, Val %d, Test %d clips (val rule %s)", fold.name,
                n["Train"], n["Val"], n["Test"], fold.val_rule)
    if fold.shared_speakers:
        logger.warning("fold %s: speaker(s) %s have clips in more than one of Train/Val/Test",
                       fold.name, examples(fold.shared_speakers))
    return fold


def _hold_out(
    corpus: Corpus,
    column: str,
    values: pd.Series,
    groups: Sequence[str],
    rule: ValRule,
    *,
    source: str,
) -> Fold:
    held = set(groups)
    usable = [c for c in corpus.clips.index if values[c] != ""]
    test = [c for c in usable if values[c] in held]
    rest = [c for c in usable if values[c] not in held]
    val, val_groups, applied = _choose_val(
        corpus, test, rest, rule, column=column, values=values, test_groups=list(groups))
    test_set, val_set = set(test), set(val)
    split: dict[str, Role] = {
        c: "Test" if c in test_set else ("Val" if c in val_set else "Train") for c in usable
    }
    name = f"{column}={'+'.join(groups)}"
    if rest and not any(r == "Train" for r in split.values()):
        raise FoldError(
            f"fold {name}: validation rule {applied!r} leaves no Train clip (Val took every clip "
            f"not held out: {examples(val_groups)}); choose --cv-val next-group or --cv-val none"
        )
    fold = Fold(
        name=name,
        split=split,
        column=column,
        test_groups=tuple(groups),
        val_groups=val_groups,
        val_rule=applied,
        source=source,
        shared_speakers=_shared(corpus, split),
    )
    return _finish(fold)


def _note_missing(corpus: Corpus, column: str, values: pd.Series) -> None:
    missing = int((values == "").sum())
    if missing:
        logger.info("%d clip(s) have no %s value and take part in no fold (%s)", missing, column,
                    examples([c for c in corpus.clips.index if values[c] == ""]))


def leave_one_out(corpus: Corpus, column: str, *, val: ValRule | str = ValRule.PARTNER) -> list[Fold]:
    """One fold per value of ``column``, that value's clips as Test.

    Args:
        corpus: the corpus.
        column: a label column (``session``, ``speaker``, ...) or ``group``.
        val: the validation rule (:class:`ValRule` or its name).

    Returns:
        The folds, in natural order of the held-out value.

    Raises:
        FoldError: unknown column or rule, a column with fewer than two values, or a rule that
            needs a column the corpus lacks.
    """
    rule = ValRule.parse(val)
    values = column_values(corpus, column)
    groups = sorted(set(values) - {""}, key=natural_key)
    if len(groups) < 2:
        raise FoldError(
            f"leave-one-out:{column} needs at least two values of {column!r}, found "
            f"{groups or 'none'} in the corpus at {corpus.root}"
        )
    _note_missing(corpus, column, values)
    return [_hold_out(corpus, column, values, [g], rule, source=f"leave-one-out:{column}") for g in groups]


def test_group(
    corpus: Corpus, group: str, *, column: str = SPEAKER_COLUMN, val: ValRule | str = ValRule.PARTNER
) -> Fold:
    """One fold holding out the clips whose ``column`` equals ``group``.

    Args:
        corpus: the corpus.
        group: the held-out value, e.g. ``01F``.
        column: its column (default ``speaker``; ``group`` works for any layout).
        val: the validation rule.

    Raises:
        FoldError: unknown column, rule or value (names the values there are).
    """
    rule = ValRule.parse(val)
    if column == SPEAKER_COLUMN and SPEAKER_COLUMN not in corpus.labels.columns:
        column = "group"
    values = column_values(corpus, column)
    present = sorted(set(values) - {""}, key=natural_key)
    if group not in present:
        raise FoldError(
            f"no clip has {column} = {group!r} in the corpus at {corpus.root}; values: "
            f"{examples(present, 12)}"
        )
    _note_missing(corpus, column, values)
    return _hold_out(corpus, column, values, [group], rule, source=f"test-group:{column}={group}")


test_group.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def make_folds(corpus: Corpus, spec: str, *, val: ValRule | str = ValRule.PARTNER) -> list[Fold]:
    """Folds from a protocol spec (see the module docstring).

    Args:
        corpus: the corpus.
        spec: ``leave-one-out:<column>``, ``test-group:[<column>=]<value>`` or
            ``emobox:<folder>``.
        val: the validation rule.

    Returns:
        The folds.

    Raises:
        FoldError: the spec is not one of the protocols, or building it fails.
    """
    kind, sep, arg = str(spec).strip().partition(":")
    arg = arg.strip()
    if not sep or not arg:
        raise FoldError(f"fold protocol {spec!r} is not one of {list(PROTOCOLS)}")
    if kind == "leave-one-out":
        return leave_one_out(corpus, arg, val=val)
    if kind == "test-group":
        column, eq, value = arg.partition("=")
        if eq:
            return [test_group(corpus, value.strip(), column=column.strip(), val=val)]
        return [test_group(corpus, arg, val=val)]
    if kind == "emobox":
        return read_emobox_folds(arg, corpus, val=val)
    raise FoldError(f"fold protocol {spec!r} is not one of {list(PROTOCOLS)}")


# --------------------------------------------------------------------------------------------
# EmoBox fold files
# --------------------------------------------------------------------------------------------

_EMOBOX_FILE = re.compile(r"^(?P<dataset>.+)_(?P<role>train|valid|test)_fold_(?P<fold>\d+)\.(?P<ext>jsonl|json)$")
_EMOBOX_ROLES: dict[str, Role] = {"train": "Train", "valid": "Val", "test": "Test"}


def _emobox_records(path: Path) -> list[dict]:
    """Entries of one EmoBox file: JSONL (one object per line) or JSON ({key: entry})."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FoldError(f"cannot read EmoBox fold file {path}: {exc}") from exc
    records: list[dict] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FoldError(f"{path} is not JSON ({exc}); EmoBox .json files map keys to entries") from exc
        if not isinstance(data, dict):
            raise FoldError(f"{path}: expected an object {{key: entry}}, got {type(data).__name__}")
        for key, entry in data.items():
            records.append({"key": key, **(entry if isinstance(entry, dict) else {})})
        return records
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FoldError(f"{path} line {lineno} is not a JSON object ({exc}); fix or remove the line") from exc
        if not isinstance(entry, dict) or "key" not in entry:
            raise FoldError(f"{path} line {lineno}: an EmoBox entry needs a 'key' field, got {line[:80]!r}")
        records.append(entry)
    return records


def _emobox_clip(entry: dict, ids: set[str], by_stem: dict[str, str | None]) -> str | None:
    """Our clip id for an EmoBox entry: its key without the ``<dataset>-`` prefix, else the
    stem of its ``wav`` path (when exactly one clip has that file name)."""
    key = str(entry.get("key", ""))
    dataset = str(entry.get("dataset", ""))
    candidates = [key]
    if dataset and key.startswith(f"{dataset}-"):
        candidates.insert(0, key[len(dataset) + 1:])
    for c in candidates:
        if c in ids:
            return c
    wav = str(entry.get("wav", ""))
    if wav:
        stem = Path(wav.replace("\\", "/")).stem
        hit = by_stem.get(stem)
        if hit:
            return hit
    return None


def _emobox_fold_dirs(folder: Path) -> list[tuple[str, Path]]:
    if not folder.is_dir():
        raise FoldError(
            f"EmoBox fold folder {folder} not found; pass the dataset folder of EmoBox's data/ "
            "(e.g. EmoBox/data/iemocap, holding fold_1/ ...) or one fold_N folder"
        )
    dirs = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"fold_?\d+", p.name)]
    if dirs:
        return [(p.name, p) for p in sorted(dirs, key=lambda p: natural_key(p.name))]
    if any(_EMOBOX_FILE.match(p.name) for p in folder.iterdir()):
        return [(folder.name, folder)]
    raise FoldError(
        f"{folder} holds neither fold_N/ folders nor <dataset>_train_fold_N.jsonl files; "
        "pass EmoBox's data/<dataset> folder"
    )


def read_emobox_folds(
    folder: str | os.PathLike, corpus: Corpus, *, val: ValRule | str = ValRule.PARTNER
) -> list[Fold]:
    """Import EmoBox's published folds as :class:`Fold` s.

    EmoBox (emo-box/EmoBox) publishes, per dataset, ``data/<dataset>/fold_<N>/`` with
    ``<dataset>_train_fold_<N>.jsonl``, ``<dataset>_test_fold_<N>.jsonl`` and, for some
    datasets, ``<dataset>_valid_fold_<N>.jsonl``: one JSON object per line with at least
    ``key`` (``<dataset>-<utterance>``, e.g. ``iemocap-Ses01F_impro04_F000``) and ``wav`` (a path
    under EmoBox's download folder); the ``.json`` twins map each key to the same entry. Entries
    are matched to clip ids by the key without its ``<dataset>-`` prefix, else by the wav file's
    name. Their ``emo`` labels are not used: the labels are the corpus's own.

    Where a fold has no valid file, Val is chosen from its train entries by ``val`` (EmoBox
    itself splits train at random, which puts the same speakers in Train and Val).

    Args:
        folder: ``data/<dataset>`` (holding ``fold_N/``) or one ``fold_N`` folder.
        corpus: the corpus the entries refer to.
        val: the validation rule for folds without a valid file.

    Returns:
        One fold per ``fold_N``, named ``emobox-fold_N``.

    Raises:
        FoldError: no fold files, a fold without train or test file, unreadable lines, an
            entry listed in two roles, or a fold none of whose entries match the corpus.
    """
    rule = ValRule.parse(val)
    folder = Path(folder).expanduser()
    ids = set(corpus.clips.index)
    by_stem: dict[str, str | None] = {}
    for c in corpus.clips.index:
        stem = Path(str(corpus.clips.at[c, "path"])).stem or c.rsplit("/", 1)[-1]
        by_stem[stem] = None if stem in by_stem else c  # None: ambiguous file name
    folds = []
    for name, fold_dir in _emobox_fold_dirs(folder):
        files: dict[str, Path] = {}
        for p in sorted(fold_dir.iterdir()):
            m = _EMOBOX_FILE.match(p.name)
            if m is None:
                continue
            role = m["role"]
            if role not in files or p.suffix == ".jsonl":  # JSONL preferred over its .json twin
                files[role] = p
        lacking = [r for r in ("train", "test") if r not in files]
        if lacking:
            raise FoldError(
                f"EmoBox fold {fold_dir} has no {' or '.join(lacking)} file "
                f"(<dataset>_{lacking[0]}_fold_N.jsonl); found {sorted(p.name for p in fold_dir.iterdir())}"
            )
        split: dict[str, Role] = {}
        unmatched: list[str] = []
        for role in ("train", "valid", "test"):
            if role not in files:
                continue
            for entry in _emobox_records(files[role]):
                clip = _emobox_clip(entry, ids, by_stem)
                if clip is None:
                    unmatched.append(str(entry.get("key")))
                    continue
                ours = _EMOBOX_ROLES[role]
                if clip in split and split[clip] != ours:
                    raise FoldError(
                        f"EmoBox fold {fold_dir}: clip {clip!r} is listed as both "
                        f"{split[clip]} and {ours}; the fold files are inconsistent"
                    )
                split[clip] = ours
        if not split:
            raise FoldError(
                f"none of the {len(unmatched)} entries of EmoBox fold {fold_dir} match a clip of "
                f"the corpus at {corpus.root} (e.g. {examples(unmatched, 3)}); were the folds made "
                "for another dataset?"
            )
        if unmatched:
            logger.warning("EmoBox fold %s: %d entr(ies) match no clip of the corpus and are left "
                           "out (%s)", name, len(unmatched), examples(unmatched))
        applied = "emobox-valid"
        val_groups: tuple[str, ...] = ()
        if "valid" not in files:
            test = [c for c, r in split.items() if r == "Test"]
            rest = [c for c, r in split.items() if r == "Train"]
            who = speakers(corpus)
            if who is None and rule is ValRule.NEXT_GROUP:
                raise FoldError(
                    f"validation rule 'next-group' on EmoBox folds needs speakers (a 'speaker' "
                    f"label column or the group column), which the {corpus.layout} corpus at "
                    f"{corpus.root} lacks; use --cv-val none"
                )
            held = sorted({who[c] for c in test} - {""}, key=natural_key) if who is not None else []
            val_ids, val_groups, applied = _choose_val(
                corpus, test, rest, rule, column=SPEAKER_COLUMN, values=who, test_groups=held)
            if rest and len(val_ids) == len(rest):
                raise FoldError(
                    f"EmoBox fold {fold_dir}: validation rule {applied!r} leaves no Train clip "
                    f"(Val took every train entry); choose --cv-val next-group or --cv-val none"
                )
            for c in val_ids:
                split[c] = "Val"
        folds.append(_finish(Fold(
            name=f"emobox-{name}",
            split=split,
            column=SPEAKER_COLUMN,
            test_groups=(),
            val_groups=val_groups,
            val_rule=applied,
            source=f"emobox:{fold_dir}",
            shared_speakers=_shared(corpus, split),
        )))
    return folds


# --------------------------------------------------------------------------------------------
# folds on disk
# --------------------------------------------------------------------------------------------

FOLDS_VERSION = 1


def write_folds(path: str | os.PathLike, folds: Sequence[Fold]) -> None:
    """Write folds as JSON (temporary name, then an atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": FOLDS_VERSION, "folds": [f.to_dict() for f in folds]}, indent=1))
    os.replace(tmp, path)


def read_folds(path: str | os.PathLike) -> list[Fold]:
    """Folds written by :func:`write_folds`.

    Raises:
        FoldError: missing file, not JSON, or another version.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FoldError(f"fold file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise FoldError(f"fold file {path} is not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("version") != FOLDS_VERSION:
        raise FoldError(f"fold file {path} is not a version-{FOLDS_VERSION} fold file written by write_folds")
    return [Fold.from_dict(f) for f in data["folds"]]


__all__ = [
    "Fold",
    "FoldError",
    "PROTOCOLS",
    "ROLES",
    "Role",
    "ValRule",
    "column_values",
    "leave_one_out",
    "make_folds",
    "read_emobox_folds",
    "read_folds",
    "speakers",
    "test_group",
    "write_folds",
]
