"""The CTC head inside the torch heads' training (``--ctc ALPHA``): on synthetic frames whose
transcript can be read off them, training brings the CER far below chance; the term added to
the loss is ``alpha * torch.nn.functional.ctc_loss`` on the net's frames; the vocabulary is
built from Train and stored with the run; nets without frames are refused by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from data.tasks import parse_tasks, resolve_task, target_array
from heads.auxiliary import score_transcripts
from heads.base import FitOptions
from heads.config import TrainOptions
from heads.ctc import CharVocab
from heads.dataset import SequenceDataset
from heads.nets import build_net
from heads.registry import HEADS
from heads.scoring import character_error
from heads.sequences import InMemorySequences

LETTERS = "abcde"
D = 8


def spoken(n: int = 240, seed: int = 0) -> tuple[SequenceDataset, list[str]]:
    """Clips of one or two words over five letters; each letter is 2-4 frames of its own
    direction, a blank-like noise frame between letters: the text is decodable from frames."""
    rng = np.random.default_rng(seed)
    dirs = np.eye(D)[: len(LETTERS)] * 3.0
    texts, arrays, rows = [], [], []
    for i in range(n):
        words = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 5))))
                 for _ in range(int(rng.integers(1, 3)))]
        text = " ".join(words)
        frames = []
        for ch in text:
            if ch == " ":
                frames += [rng.normal(size=D) * 0.3 for _ in range(2)]
                continue
            frames += [dirs[LETTERS.index(ch)] + rng.normal(size=D) * 0.3
                       for _ in range(int(rng.integers(2, 5)))]
            frames.append(rng.normal(size=D) * 0.3)
        arrays.append(np.asarray(frames, np.float32))
        texts.append(text.upper() + ".")  # normalisation lower-cases and drops the full stop
        split = "Train" if i < 0.6 * n else "Val" if i < 0.8 * n else "Test"
        rows.append({"id": f"c{i:03d}", "emo": ("x", "y")[i % 2], "split": split})
    table = pd.DataFrame(rows).set_index("id")
    task = resolve_task(parse_tasks("classify:emo")[0], table[["emo"]])
    truths = {task.name: {tg.name: target_array(tg, table[["emo"]], list(table.index))
                          for tg in task.targets}}
    ds = SequenceDataset(list(table.index), table["split"].to_numpy(),
                         np.zeros((n, 0), np.float32), [task], truths, [],
                         sequences=InMemorySequences.from_arrays(arrays, dtype=np.float32))
    return ds, texts


def _fit(ds, texts, tmp_path: Path, run: str, head: str = "fc128", **options):
    # restore_best off: the epoch is selected on the (here random) emotion labels alone
    opts = {"epochs": 25, "batch_size": 16, "patience": 0, "lr": 1e-2, "device": "cpu",
            "ctc": 1.0, "restore_best": False, "net": {"order": "fc-pool", "hidden": 32}, **options}
    return HEADS[head].fit(ds, ds.tasks, seed=0, out_dir=tmp_path / run,
                           options=FitOptions(head_options=opts, columns={"text": texts}))


def test_ctc_training_reads_the_text_off_the_frames(tmp_path):
    ds, texts = spoken()
    res = _fit(ds, texts, tmp_path, "r")
    hyps = res.auxiliary["text"]["hypotheses"]
    val = np.flatnonzero(ds.split == "Val")
    refs = [texts[i].lower().rstrip(".") for i in val]
    cer = character_error(refs, [hyps[i] for i in val])
    # chance: the empty transcript has CER 1; a random letter string of the right length ~0.8
    assert cer < 0.25, cer
    # the same net and seed trained one epoch is far worse: the number measures learning
    short = _fit(ds, texts, tmp_path, "short", epochs=1)
    cer1 = character_error(refs, [short.auxiliary["text"]["hypotheses"][i] for i in val])
    assert cer1 > cer + 0.2, (cer1, cer)
    vocab = CharVocab.load(tmp_path / "r" / "vocab.json")
    assert vocab.symbols[3:] == tuple(LETTERS)
    ckpt = torch.load(tmp_path / "r" / "model_seed0.pt", weights_only=False)
    assert ckpt["auxiliary"]["ctc"]["symbols"] == list(vocab.symbols)
    block = score_transcripts(texts, [hyps], ds.split, alpha=1.0, vocab_file="vocab.json",
                              vocab_size=len(vocab))
    assert block["val"]["cer_error"] == pytest.approx(cer) and block["val"]["n"] == len(val)


def test_ctc_term_is_alpha_times_torch_ctc_loss_on_the_nets_frames(tmp_path):
    from heads.training.auxiliary import Auxiliary

    ds, texts = spoken(n=20)
    texts = list(texts)
    texts[1] = None  # a clip without a transcript adds nothing
    torch.manual_seed(0)
    net = build_net("lstm128", D, [("emo", "classification", 2)], hidden=6)
    opts = TrainOptions.from_dict({"ctc": 0.1})
    aux = Auxiliary("lstm128", net, opts, ds, {"text": texts}, torch.device("cpu"), tmp_path)
    rows = torch.tensor([0, 1, 2, 3])
    seqs = [torch.as_tensor(s) for s in ds.sequences.rows([0, 1, 2, 3])]
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    net(x, lengths)
    (term,) = aux.losses(net, rows)
    vocab = CharVocab.from_texts([texts[i] for i in ds.rows("Train")])
    keep = [0, 2, 3]
    frames, _ = net.lstm(x)  # unpacked LSTM: equal on true frames (padding comes after)
    logp = F.log_softmax(aux.ctc.proj(frames[keep]), dim=-1).transpose(0, 1)
    targets = [torch.tensor(vocab.encode(texts[i])) for i in keep]
    want = 0.1 * F.ctc_loss(logp, torch.cat(targets), lengths[keep],
                            torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
    torch.testing.assert_close(term, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head, net, match", [
    ("mlp-mtl", {}, "reads pooled vectors"),
    ("mean3", {}, "its representation is pooled"),
    ("fc128", {"order": "pool-fc"}, "its representation is pooled"),
])
def test_nets_without_frames_are_refused_by_name(tmp_path, head, net, match):
    ds, texts = spoken(n=20)
    if head == "mlp-mtl":
        from heads.dataset import Dataset

        ds = Dataset(ds.ids, ds.split, np.ones((20, 3), np.float32), ds.tasks, ds.truths, [])
    with pytest.raises(ValueError, match=f"no per-frame representation.*{match}.*lstm, lstm128"):
        _fit(ds, texts, tmp_path, "x", head=head, net=net, epochs=1)


def test_ctc_option_is_checked():
    for bad in (0, -0.1, float("inf")):
        with pytest.raises(ValueError, match="ctc is the weight alpha"):
            TrainOptions.from_dict({"ctc": bad})
    assert TrainOptions.from_dict({"ctc": 0.1}).ctc == 0.1
