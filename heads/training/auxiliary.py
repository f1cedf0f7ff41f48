"""Seed 004's auxiliary heads beside a torch net: the speaker adversary (:mod:`heads.grl`) and
the CTC character head (:mod:`heads.ctc`), both on the net's shared representation.

Every net taps the representation its task layers share (:meth:`heads.nets.HeadNet.tap`):

* the adversary reads the pooled representation (or the mean of the tapped frames over true
  frames: the paper's "average pooling", III.C) behind the gradient-reversal layer, and adds
  ``beta * CE`` to the loss (``mode="forward"``: without the reversal);
* the CTC head projects the tapped frames linearly to the characters (III.B) and adds
  ``alpha * CTC``; it needs a net with a frame representation (``hidden_frames``).

So the joint loss is the paper's ``L = L_SER + alpha L_ASR + beta L_sid`` (III.D), with
``L_SER`` the net's own (weighted) task losses. The epoch is still selected on the tasks' Val
score alone (the paper does not say how it picks a checkpoint).

The CTC vocabulary is built from the Train transcripts (:meth:`heads.ctc.CharVocab.from_texts`)
and written to the run folder as ``vocab.json``. Clips without a transcript, or without an
adversary label, add nothing to that term.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from heads.auxiliary import ADVERSARY, TEXT_COLUMN, speaker_probe, train_classes
from heads.config import TrainOptions, parse_adversary
from heads.ctc import CharVocab, CTCConfig, CTCHead, pad_targets
from heads.dataset import Dataset
from heads.grl import AdversaryConfig, AdversaryHead, masked_mean_pool
from heads.nets import NETS, HeadNet

log = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
FRAME_NETS_HINT = ("lstm, lstm128, fc128 with --net order=fc-pool, autopool with "
                   "--net pool=outputs")


def check_auxiliary(head: str, opts: TrainOptions, net: HeadNet | None = None) -> None:
    """Refuse auxiliary heads a net cannot carry (before the net is built: by its input kind;
    with ``net``: by whether it taps frames).

    Raises:
        ValueError: ``ctc`` with a net without frames (names those that have them).
    """
    kind = NETS[head].input_kind
    if opts.ctc is not None and (kind == "vector" or (net is not None and not net.hidden_frames)):
        why = "it reads pooled vectors" if kind == "vector" else "its representation is pooled"
        raise ValueError(f"--ctc {opts.ctc}: head {head} has no per-frame representation for a CTC "
                         f"head ({why}); use a sequence head with frames: {FRAME_NETS_HINT}")


class Auxiliary(nn.Module):
    """The adversary and / or CTC head of one net, with their labels on the device.

    Args:
        head: the net's name; net: the net (its ``hidden_dim`` / ``hidden_frames``).
        opts: ``adversary``, ``adversary_mode``, ``ctc``.
        ds: the dataset (splits); columns: :func:`heads.auxiliary.auxiliary_columns`'s output.
        device: where the labels live.
        run_dir: where ``vocab.json`` goes (with ``ctc``).

    Raises:
        ValueError: a net that cannot carry the head, fewer than 2 Train speakers, no Train
            transcript.
    """

    def __init__(self, head: str, net: HeadNet, opts: TrainOptions, ds: Dataset,
                 columns: dict[str, list], device: torch.device, run_dir: Path) -> None:
        super().__init__()
        check_auxiliary(head, opts, net)
        if not net.hidden_dim:
            raise ValueError(f"head {head} does not say the width of its shared representation")
        self.names: list[str] = []
        self.adversary: AdversaryHead | None = None
        self.ctc: CTCHead | None = None
        if opts.adversary is not None:
            if ADVERSARY not in columns:
                raise ValueError("--adversary: the fit got no adversary labels (heads.auxiliary."
                                 "auxiliary_columns builds them)")
            _, beta = parse_adversary(opts.adversary)
            self.classes, codes = train_classes(columns[ADVERSARY], ds.split)
            self.codes = codes
            self.speakers = torch.as_tensor(codes, device=device)  # (n,)
            self.adversary = AdversaryHead(AdversaryConfig(
                in_dim=net.hidden_dim, n_speakers=len(self.classes), beta=beta,
                mode=opts.adversary_mode))
            self.names.append("adversary")
        if opts.ctc is not None:
            if TEXT_COLUMN not in columns:
                raise ValueError("--ctc: the fit got no transcripts (heads.auxiliary."
                                 "auxiliary_columns builds them)")
            texts = columns[TEXT_COLUMN]
            train = [texts[i] for i in ds.rows("Train")]
            if not any(train):
                raise ValueError(f"--ctc {opts.ctc}: no Train clip has a transcript in the corpus's "
                                 f"text column")
            self.vocab = CharVocab.from_texts(train)
            self.vocab.save(Path(run_dir) / VOCAB_FILE)
            self.targets = [self.vocab.encode(t) if t else [] for t in texts]
            self.alpha = float(opts.ctc)
            self.ctc = CTCHead(CTCConfig(in_dim=net.hidden_dim, vocab_size=len(self.vocab)))
            self.names.append("ctc")
        net.tapping = True

    def losses(self, net: HeadNet, rows: Tensor) -> Tensor:
        """The weighted auxiliary terms of the batch just run through ``net``, (A,)."""
        tapped = net.tapped
        out = []
        if self.adversary is not None:
            x = tapped["pooled"] if tapped["pooled"] is not None else tapped["frames"]
            lengths = None if tapped["pooled"] is not None else tapped["lengths"]
            logits = self.adversary(x, lengths)  # (B, S)
            out.append(self.adversary.loss(logits, self.speakers[rows.to(self.speakers.device)]))
        if self.ctc is not None:
            row_list = rows.tolist()
            keep = [b for b, r in enumerate(row_list) if self.targets[r]]
            if keep:
                idx = torch.as_tensor(keep, device=tapped["frames"].device)
                logp = self.ctc(tapped["frames"][idx])  # (B', T, V)
                targets, target_lengths = pad_targets([self.targets[row_list[b]] for b in keep])
                ctc = self.ctc.loss(logp, tapped["lengths"][idx.to(tapped["lengths"].device)],
                                    targets.to(logp.device), target_lengths)
                out.append(self.alpha * ctc)
            else:
                out.append(tapped["frames"].sum() * 0.0)
        return torch.stack(out)  # (A,)

    @torch.no_grad()
    def predict(self, net: HeadNet, batches: Any) -> dict[str, Any]:
        """Adversary predictions, pooled representations and CTC transcripts of every row.

        Args:
            net: the trained net (put in eval mode here).
            batches: an iterable of net argument tuples covering the rows in order.
        """
        net.eval()
        self.eval()
        pooled, predicted, texts = [], [], []
        for args in batches:
            net(*args)
            t = net.tapped
            frames_pooled = (t["pooled"] if t["pooled"] is not None
                             else masked_mean_pool(t["frames"], t["lengths"]))
            pooled.append(frames_pooled.float().cpu().numpy())
            if self.adversary is not None:
                x = t["pooled"] if t["pooled"] is not None else t["frames"]
                lengths = None if t["pooled"] is not None else t["lengths"]
                predicted.append(self.adversary(x, lengths).argmax(dim=1).cpu().numpy())
            if self.ctc is not None:
                ids = self.ctc.decode(self.ctc(t["frames"]), t["lengths"])
                texts += [self.vocab.decode(i) for i in ids]
        out: dict[str, Any] = {}
        hidden = np.concatenate(pooled) if pooled else np.zeros((0, 0), np.float32)
        if self.adversary is not None:
            out[ADVERSARY] = {"classes": list(self.classes), "codes": self.codes,
                              "predicted": np.concatenate(predicted)}
            out["hidden"] = hidden
        if self.ctc is not None:
            out[TEXT_COLUMN] = {"hypotheses": texts, "vocab": VOCAB_FILE,
                                "vocab_size": len(self.vocab)}
        return out

    def probe(self, outputs: dict[str, Any], train_rows: np.ndarray) -> None:
        """Add the speaker probe (:func:`heads.auxiliary.speaker_probe`) to ``outputs``."""
        if ADVERSARY in outputs:
            outputs[ADVERSARY]["probe"] = speaker_probe(outputs.pop("hidden"), self.codes, train_rows)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: configs, weights, the adversary's classes, the vocabulary."""
        out: dict[str, Any] = {"state": self.state_dict(), "names": list(self.names)}
        if self.adversary is not None:
            out["adversary"] = {"config": self.adversary.extra_state(), "classes": list(self.classes)}
        if self.ctc is not None:
            out["ctc"] = {"config": self.ctc.extra_state(), "alpha": self.alpha,
                          "symbols": list(self.vocab.symbols), "normaliser": self.vocab.normaliser}
        return out


__all__ = ["VOCAB_FILE", "Auxiliary", "check_auxiliary"]
