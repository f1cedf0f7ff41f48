"""Character CTC head of seed 004: a vocabulary built from Train transcripts, a linear
projection of frame sequences to it, the CTC loss with exact lengths, greedy decoding.

The paper: "simple linear projection from z to y, where z in R^{L x d} and y in R^{L x V}
(V = 32, size of vocab)", softmax and the CTC loss (004, III.B), weighted alpha = 0.1 in the
joint loss (III.D). What the 32 symbols are is **not stated**. 32 is the size of the character
vocabulary shipped with the English wav2vec2 CTC checkpoints (``<pad> <s> </s> <unk> |``, 26
letters and the apostrophe), which may be where the number comes from; that is our inference,
not the paper's.

Ours is built from the Train transcripts (:meth:`CharVocab.from_texts`): index 0 the CTC blank,
1 ``<unk>`` (characters not seen in Train), 2 the word delimiter ``|``, then every character of
the normalised Train text in sorted order. :func:`normalise_transcript` lower-cases, drops
IEMOCAP's bracketed non-speech markers (``[LAUGHTER]``, ``[BREATHING]``, ``[GARBAGE]``) and
``<...>`` tags, and keeps letters, digits and apostrophes (every other character becomes a word
break). On IEMOCAP that gives the 3 specials plus the letters, apostrophe and whatever digits
occur: close to, but not forced to be, 32.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLANK = "<blank>"
UNK = "<unk>"
WORD = "|"
SPECIALS = (BLANK, UNK, WORD)
BLANK_ID, UNK_ID, WORD_ID = 0, 1, 2

PAPER_VOCAB_SIZE = 32
"""V in seed 004 (the symbols themselves are not stated)."""

VOCAB_VERSION = 1
NORMALISER = "lower-nomarkers-alnum'-v1"
"""Name of :func:`normalise_transcript`'s rules, stored with every vocabulary."""

_MARKERS = re.compile(r"\[[^\]]*\]|<[^>]*>")
_NOT_KEPT = re.compile(r"[^0-9a-z']+")


def normalise_transcript(text: str) -> str:
    """The text a character model is trained on.

    Example:
        >>> normalise_transcript("  Yeah. [LAUGHTER] I'm SO--tired!  ")
        "yeah i'm so tired"
    """
    text = _MARKERS.sub(" ", str(text).lower())
    return " ".join(_NOT_KEPT.sub(" ", text).split())


@dataclass(frozen=True)
class CharVocab:
    """A CTC character vocabulary: ``symbols[0]`` is the blank, 1 ``<unk>``, 2 ``|``.

    Attributes:
        symbols: every symbol, index = class id.
        normaliser: the normalisation rules the vocabulary was built with.
    """

    symbols: tuple[str, ...]
    normaliser: str = NORMALISER

    def __post_init__(self) -> None:
        if tuple(self.symbols[:3]) != SPECIALS:
            raise ValueError(f"a CharVocab starts with {list(SPECIALS)}, got {list(self.symbols[:3])}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("CharVocab symbols must be unique")
        bad = [s for s in self.symbols[3:] if len(s) != 1 or s == " "]
        if bad:
            raise ValueError(f"CharVocab characters must be single non-space characters, got {bad[:5]}")

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def blank(self) -> int:
        return BLANK_ID

    @classmethod
    def from_texts(cls, texts: Iterable[str | None], *, min_count: int = 1) -> CharVocab:
        """Build from (Train) transcripts; missing ones (None/NaN) are skipped.

        Args:
            texts: raw transcripts; normalised with :func:`normalise_transcript`.
            min_count: characters seen fewer times map to ``<unk>``.

        Raises:
            ValueError: no character at all, or ``min_count`` < 1.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for t in texts:
            if t is None or (isinstance(t, float) and t != t):
                continue
            counts.update(normalise_transcript(t).replace(" ", ""))
        chars = sorted(c for c, n in counts.items() if n >= min_count)
        if not chars:
            raise ValueError("no character in the transcripts given; is the Train split's text column empty?")
        return cls(symbols=(*SPECIALS, *chars))

    def encode(self, text: str) -> list[int]:
        """Class ids of a transcript (normalised first; spaces become ``|``).

        Example:
            >>> v = CharVocab.from_texts(["ab ba"])
            >>> v.encode("AB, c")
            [3, 4, 2, 1]
        """
        index = {s: i for i, s in enumerate(self.symbols)}
        return [WORD_ID if ch == " " else index.get(ch, UNK_ID) for ch in normalise_transcript(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of class ids (``|`` -> space; blanks dropped; no collapsing: see
        :func:`greedy_decode`)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"class id {i} outside the vocabulary of {len(self.symbols)} symbols")
            if i == BLANK_ID:
                continue
            out.append(" " if i == WORD_ID else self.symbols[i])
        return " ".join("".join(out).split())

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (temporary name, then an atomic rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": VOCAB_VERSION, "normaliser": self.normaliser,
                                   "blank": BLANK_ID, "symbols": list(self.symbols)},
                                  ensure_ascii=False, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            ValueError: not such a file, another version, or another normaliser.
            FileNotFoundError: no file.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != VOCAB_VERSION:
            raise ValueError(f"{path} is not a version-{VOCAB_VERSION} CharVocab file")
        if data.get("normaliser") != NORMALISER:
            raise ValueError(
                f"{path} was built with normaliser {data.get('normaliser')!r}, this code has "
                f"{NORMALISER!r}; rebuild the vocabulary from the Train transcripts"
            )
        return cls(symbols=tuple(data["symbols"]), normaliser=data["normaliser"])


def pad_targets(targets: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Encoded transcripts -> (padded (B, U_max) long, lengths (B,) long); padding is 0."""
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    out = torch.zeros(len(targets), max(1, int(lengths.max()) if len(targets) else 1), dtype=torch.long)
    for b, t in enumerate(targets):
        if len(t):
            out[b, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return out, lengths


def min_frames(target: Sequence[int]) -> int:
    """Fewest frames CTC needs for ``target``: its length plus one blank per repeated pair."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


@dataclass(frozen=True)
class CTCConfig:
    """Hyperparameters of :class:`CTCHead` (saved with every checkpoint).

    Attributes:
        in_dim: width of the frame features.
        vocab_size: number of symbols, blank included.
        dropout: dropout on the frames before the projection.
        reduction: ``mean`` (each clip's loss divided by its target length, then the batch
            mean: ``torch.nn.functional.ctc_loss``'s default) or ``sum``.
        zero_infinity: an impossible clip (fewer frames than :func:`min_frames`) gets loss 0
            instead of infinity.
    """

    in_dim: int
    vocab_size: int
    dropout: float = 0.0
    reduction: str = "mean"
    zero_infinity: bool = True

    def __post_init__(self) -> None:
        if self.in_dim < 1 or self.vocab_size < len(SPECIALS) + 1:
            raise ValueError(
                f"in_dim must be >= 1 and vocab_size >= {len(SPECIALS) + 1}, got {self.in_dim}, {self.vocab_size}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _check_lengths(lengths: Tensor, frames: int, batch: int) -> Tensor:
    lengths = torch.as_tensor(lengths).long()
    if lengths.shape != (batch,):
        raise ValueError(f"frame lengths must be ({batch},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > frames).any()):
        raise ValueError(f"frame lengths must be in [1, frames={frames}], got {lengths.tolist()}")
    return lengths


class CTCHead(nn.Module):
    """Linear projection of frame features to character log-probabilities, CTC loss, greedy
    decoding.

    ``forward(frames)``: (B, T, D) -> log-probabilities (B, T, V). Frames past a clip's length
    are never read by :meth:`loss` or :meth:`decode`.

    Example:
        >>> head = CTCHead(CTCConfig(in_dim=8, vocab_size=6))
        >>> logp = head(torch.randn(2, 9, 8))
        >>> targets, target_lengths = pad_targets([[3, 4, 4], [5]])
        >>> loss = head.loss(logp, torch.tensor([9, 4]), targets, target_lengths)
        >>> loss.shape, len(head.decode(logp, torch.tensor([9, 4])))
        (torch.Size([]), 2)
    """

    def __init__(self, config: CTCConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(config.in_dim, config.vocab_size)

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 3 or frames.shape[-1] != self.config.in_dim:
            raise ValueError(f"frames must be (batch, time, {self.config.in_dim}), got {tuple(frames.shape)}")
        return F.log_softmax(self.proj(self.dropout(frames)), dim=-1)  # (B, T, V)

    def loss(self, log_probs: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """CTC loss of a batch.

        Args:
            log_probs: (B, T, V) from :meth:`forward`.
            frame_lengths: (B,) true frames per clip, in [1, T].
            targets: (B, U) padded class ids (padding ignored), no blank inside the lengths.
            target_lengths: (B,) true target lengths, in [0, U].

        Returns:
            A scalar, reduced as the config says.

        Raises:
            ValueError: lengths out of range, or a blank inside a target.
        """
        batch, frames, _ = log_probs.shape
        frame_lengths = _check_lengths(frame_lengths, frames, batch)
        target_lengths = torch.as_tensor(target_lengths).long()
        targets = torch.as_tensor(targets).long()
        if target_lengths.shape != (batch,) or targets.dim() != 2 or targets.shape[0] != batch:
            raise ValueError(
                f"targets must be ({batch}, U) with target_lengths ({batch},), got "
                f"{tuple(targets.shape)} and {tuple(target_lengths.shape)}")
        if bool((target_lengths < 0).any()) or bool((target_lengths > targets.shape[1]).any()):
            raise ValueError(f"target lengths must be in [0, {targets.shape[1]}], got {target_lengths.tolist()}")
        positions = torch.arange(targets.shape[1], device=targets.device)
        inside = positions[None, :] < target_lengths.to(targets.device)[:, None]  # (B, U)
        if bool((targets[inside] == BLANK_ID).any()):
            raise ValueError("a target holds the blank id 0 inside its length; encode with CharVocab.encode")
        if bool((targets[inside] >= self.config.vocab_size).any()) or bool((targets[inside] < 0).any()):
            raise ValueError(f"target ids must be in [1, {self.config.vocab_size - 1}]")
        return F.ctc_loss(
            log_probs.transpose(0, 1),  # (T, B, V)
            targets,
            frame_lengths.to(log_probs.device),
            target_lengths.to(log_probs.device),
            blank=BLANK_ID,
            reduction=self.config.reduction,
            zero_infinity=self.config.zero_infinity,
        )

    def decode(self, log_probs: Tensor, frame_lengths: Tensor) -> list[list[int]]:
        """Greedy decoding of each clip's true frames (see :func:`greedy_decode`)."""
        return greedy_decode(log_probs, frame_lengths)

    def extra_state(self) -> dict:
        """The config as a plain dict (what a checkpoint stores to rebuild the head)."""
        return asdict(self.config)


def greedy_decode(log_probs: Tensor, frame_lengths: Tensor, *, blank: int = BLANK_ID) -> list[list[int]]:
    """Best path decoding: the arg-max symbol of each true frame, repeats collapsed, blanks
    removed (a blank between two equal symbols keeps both).

    Args:
        log_probs: (B, T, V) scores (any monotone transform of probabilities).
        frame_lengths: (B,) true frames, in [1, T].
        blank: the blank id.

    Returns:
        One list of class ids per clip.

    Example:
        >>> a, b, c = 3, 4, 5
        >>> path = [a, a, 0, a, b, b, 0, 0, c, 2, 2]
        >>> scores = torch.nn.functional.one_hot(torch.tensor([path]), 6).float()
        >>> greedy_decode(scores, torch.tensor([len(path)]))
        [[3, 3, 4, 5, 2]]
    """
    batch, frames, _ = log_probs.shape
    frame_lengths = _check_lengths(frame_lengths, frames, batch)
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    out = []
    for b in range(batch):
        path = best[b, : int(frame_lengths[b])]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        path = path[keep]
        out.append([int(i) for i in path[path != blank]])
    return out


__all__ = [
    "BLANK",
    "CTCConfig",
    "CTCHead",
    "CharVocab",
    "PAPER_VOCAB_SIZE",
    "UNK",
    "WORD",
    "greedy_decode",
    "min_frames",
    "normalise_transcript",
    "pad_targets",
]
