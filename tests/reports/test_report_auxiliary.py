"""The report's table of seed 004's auxiliary heads reads the one layout of heads.aux_metrics
(written here by train's own scorers), and names a run of an older layout instead of reading it."""
from __future__ import annotations

import numpy as np
import pytest

from cli.cmd_train import auxiliary_lines
from heads.aux_metrics import OLDER_TEXT, older_layout
from heads.auxiliary import score_adversary, score_transcripts, train_classes
from reports.auxiliary import auxiliary_blocks


def _run_metrics() -> dict:
    split = np.array(["Train"] * 6 + ["Val", "Val", "Test"])
    speakers = ["a", "a", "b", "b", "a", "b", "a", "c", "c"]
    classes, codes = train_classes(speakers, split)
    seeds = [{"classes": classes, "codes": codes,
              "predicted": np.array([0, 1, 1, 1, 0, 1, 0, 0, 0]),
              "probe": {"score": 0.5, "n_fit": 4, "n_scored": 2, "majority": 0.5}}]
    refs = [None] * 6 + ["yes no", "okay", "fine go"]
    hyps = [""] * 6 + ["yes", "okay", "fine go"]
    aux = score_adversary(seeds, split, spec="speaker:1", mode="reverse")
    aux["ctc"] = score_transcripts(refs, [hyps], split, alpha=0.1, vocab_file="vocab.json",
                                   vocab_size=12)
    return {"aux": aux}


def test_the_table_reads_the_one_layout():
    m = _run_metrics()
    aux = m["aux"]
    # by hand: Train 5 of 6 right; the Val clip of 'a' right, the one of 'c' is no class
    assert aux["adversary"]["train"]["speaker_accuracy"] == pytest.approx(5 / 6)
    assert aux["adversary"]["val"] == {"speaker_accuracy": 1.0, "n": 1}
    assert aux["adversary"]["test"]["speaker_accuracy"] is None
    # jiwer by hand: Val 1 deleted word of 3, 3 deleted characters ("_no") of 10
    assert aux["ctc"]["val"]["wer_error"] == pytest.approx(1 / 3)
    assert aux["ctc"]["val"]["cer_error"] == pytest.approx(3 / 10)
    assert "train" not in aux["ctc"] and aux["ctc"]["test"]["wer_error"] == 0.0
    (text, table) = auxiliary_blocks(["r"], {"r": {"metrics": m}})
    (row,) = table["rows"]
    assert row == ["r", "speaker beta 1.0 reverse", "0.8333", "1.0000", "-", "0.5000 (chance 0.500)",
                   "alpha 0.1", "0.3333 / 0.3000", "0.0000 / 0.0000"]
    assert "linear probe" in text["text"]


def test_a_run_of_an_older_layout_is_named_not_read():
    old_train = {"adversary": {"column": "speaker", "beta": 1.0, "mode": "reverse",
                               "speaker_accuracy": {"Train": {"score": 0.9, "n": 6}}},
                 "ctc": {"alpha": 0.1, "val": {"wer_error": 0.5, "cer_error": 0.2, "n": 2}}}
    old_finetune = {"adversary": {"column": "speaker", "train": {"speaker_accuracy": 0.7, "n": 12}}}
    assert older_layout(old_train) and older_layout(old_finetune)
    assert not older_layout(_run_metrics()) and not older_layout({"tasks": {}})
    blocks = auxiliary_blocks(["new", "old", "older"],
                              {"new": {"metrics": _run_metrics()}, "old": {"metrics": old_train},
                               "older": {"metrics": old_finetune}})
    assert [r[0] for r in blocks[1]["rows"]] == ["new"]  # no numbers of the old runs
    assert blocks[2]["text"] == f"Auxiliary heads of old, older: {OLDER_TEXT}."
    assert "0.9000" not in str(blocks) and "0.7000" not in str(blocks)
    assert auxiliary_lines(old_train) == [f"auxiliary heads: {OLDER_TEXT}"]
    assert auxiliary_blocks(["old"], {"old": {"metrics": old_train}})[0]["kind"] == "p"
