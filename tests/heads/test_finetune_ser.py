"""Paper 004's system in ``finetune``: CTC and speaker-adversary heads, the warm-up-ratio
schedule, gradient accumulation, runs per fold, segments read as their span.

A tiny IEMOCAP-shaped release is written here (two sessions, four speakers, six utterances each
with transcripts; the emotion sets the tone's pitch), and a tiny random wav2vec2 without any
dropout, LayerDrop or SpecAugment (train mode computes what eval mode computes), so that
gradients can be compared exactly.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import heads.finetune.auxiliary as ft_aux
import heads.finetune.run as ft_run
from data.workdir import save_corpus_ref
from heads.ctc import CharVocab, normalise_transcript
from heads.finetune import FinetuneConfig, finetune, finetune_cross_validation
from heads.finetune.schedule import lr_multiplier, warmup_steps_of
from heads.finetune.stages import Micro, accumulate, stage2_schedule
from heads.nets import length_mask, masked_mean

EMOTIONS = {"neu": 140.0, "hap": 220.0, "sad": 110.0, "ang": 300.0}
WORDS = ["yes", "no", "maybe", "okay", "fine", "go"]


def tiny_wav2vec2(folder: Path) -> Path:
    """3 transformer layers of width 32, the real conv geometry, no dropout of any kind."""
    import transformers

    config = transformers.Wav2Vec2Config(
        conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        num_conv_pos_embedding_groups=4, num_conv_pos_embeddings=8, feat_extract_norm="group",
        do_stable_layer_norm=False, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.0, mask_feature_prob=0.0)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                                          do_normalize=True, return_attention_mask=False
                                          ).save_pretrained(folder)
    return folder


def make_release(root: Path) -> Path:
    """IEMOCAP_full_release with Session1/2: utterances, EmoEvaluation, transcriptions."""
    release = root / "IEMOCAP_full_release"
    rng = np.random.default_rng(0)
    codes = list(EMOTIONS)
    for s in (1, 2):
        dialog = f"Ses0{s}F_impro01"
        session = release / f"Session{s}"
        emo_lines, text_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for g in ("F", "M"):
            for k in range(6):
                utt = f"{dialog}_{g}{k:03d}"
                code = codes[k % 4]
                f0 = EMOTIONS[code] * (1.05 if g == "M" else 1.0)
                t = np.arange(int(16000 * rng.uniform(0.5, 0.7))) / 16000
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                sf.write(wav, wave.astype(np.float32), 16000, subtype="PCM_16")
                start = 1.0 + 3 * k
                emo_lines += [f"[{start:.4f} - {start + 1:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]", ""]
                words = " ".join(WORDS[(k + j) % len(WORDS)] for j in range(2))
                text_lines.append(f"{utt} [{start:08.4f}-{start + 1:08.4f}]: {words.capitalize()}.")
        for sub, lines in (("EmoEvaluation", emo_lines), ("transcriptions", text_lines)):
            path = session / "dialog" / sub / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    return release


def settings(wd: Path, model: Path, **kw) -> FinetuneConfig:
    base = dict(workdir=str(wd), model=str(model), task="iemocap4", frozen_epochs=0, epochs=2,
                batch_size=2, grad_accum=2, lr=1e-3, warmup_ratio=0.1, schedule="linear",
                weighting="equal", label_smoothing=0.0, class_weights=False, head_hidden=0,
                patience=0, ctc=0.1, adversary="speaker:1", device="cpu", workers=1, n_boot=10,
                max_seconds=5.0)
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ser")
    release = make_release(root / "corpus")
    wd = root / "wd"
    save_corpus_ref(wd, release, "iemocap")
    return {"root": root, "wd": wd, "model": tiny_wav2vec2(root / "tiny"), "release": release}


@pytest.fixture(scope="module")
def study(setup: dict) -> dict:
    """leave-one-out:speaker with the partner Val rule: four folds, CTC + reversed adversary."""
    captured: list = []
    probed: list = []
    original = ft_run.run_stage2
    original_probe = ft_aux.speaker_probe

    def spy(run_state, t0):
        captured.append(run_state)
        return original(run_state, t0)

    def probe_spy(hidden, codes, train_rows):
        probed.append((np.array(hidden), np.array(codes), np.array(train_rows)))
        return original_probe(hidden, codes, train_rows)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ft_run, "run_stage2", spy)
        mp.setattr(ft_aux, "speaker_probe", probe_spy)
        cv = finetune_cross_validation(settings(setup["wd"], setup["model"], run_name="loso"),
                                       "leave-one-out:speaker", val="partner")
    return {"cv": cv, "runs": captured, "probed": probed}


def test_cv_runs_every_fold_with_ctc_and_adversary_and_summarises(setup: dict, study: dict) -> None:
    cv = study["cv"]
    folder = setup["wd"] / "finetuned" / "loso"
    summary = json.loads((folder / "cv.json").read_text())
    assert [f["name"] for f in summary["folds"]] == ["speaker=01F", "speaker=01M", "speaker=02F", "speaker=02M"]
    metrics = [json.loads((folder / d / "metrics.json").read_text())
               for d in ("speaker_01F", "speaker_01M", "speaker_02F", "speaker_02M")]
    assert [m["fold"]["test_groups"] for m in metrics] == [["01F"], ["01M"], ["02F"], ["02M"]]
    for m, (fold, _) in zip(metrics, cv.folds):
        assert m["n_clips"] == {"Train": 12, "Val": 6, "Test": 6}
        # the adversary's classes are the fold's Train speakers; the held-out ones are not
        train_speakers = sorted({c[3:5] + c.rsplit("_", 1)[1][0] for c in fold.ids("Train")})
        adv = m["aux"]["adversary"]
        assert adv["settings"]["classes"] == train_speakers and len(train_speakers) == 2
        assert adv["train"]["n"] == 12 and adv["test"]["n"] == 0
        assert adv["test"]["speaker_accuracy"] is None and "note" in adv["test"]
        assert 0.0 <= adv["train"]["speaker_accuracy"] <= 1.0
        assert m["aux"]["ctc"]["test"]["n"] == 6 and m["aux"]["ctc"]["settings"]["alpha"] == 0.1
    # mean ± std over folds: the fold scores, numpy by hand
    test = summary["tasks"]["iemocap4"]["test"]
    scores = [m["tasks"]["iemocap4"]["test"]["score"] for m in metrics]
    assert test["score"]["folds"] == pytest.approx(scores)
    assert test["score"]["mean"] == pytest.approx(np.mean(scores))
    assert test["score"]["std"] == pytest.approx(np.std(scores, ddof=1))
    wers = [m["aux"]["ctc"]["test"]["wer_error"] for m in metrics]
    assert summary["aux"]["ctc"]["test"]["wer_error"]["mean"] == pytest.approx(np.mean(wers))
    accs = [m["aux"]["adversary"]["train"]["speaker_accuracy"] for m in metrics]
    assert summary["aux"]["adversary"]["train"]["speaker_accuracy"]["folds"] == pytest.approx(accs)
    probes = [m["aux"]["speaker_probe"]["train"]["speaker_accuracy"] for m in metrics]
    assert summary["aux"]["speaker_probe"]["train"]["speaker_accuracy"]["mean"] == pytest.approx(np.mean(probes))
    assert summary["aux"]["speaker_probe"]["train"]["speaker_accuracy"]["std"] == pytest.approx(np.std(probes, ddof=1))
    assert "test" not in summary["aux"]["adversary"]  # no fold's Test speaker is a class
    csv = (folder / "cv.csv").read_text()
    assert "iemocap4,test,uar," in csv and "ctc,test,wer_error," in csv and "adversary,train,speaker_accuracy," in csv
    assert "speaker_probe,train,speaker_accuracy," in csv
    wa = test["targets"]["emotion"]["pooled"]["wa"]
    pooled = pd.concat(pd.read_csv(folder / d / "predictions_test.csv")
                       for d in ("speaker_01F", "speaker_01M", "speaker_02F", "speaker_02M"))
    assert wa == pytest.approx((pooled["emotion_true"] == pooled["emotion_pred"]).mean())


FOLD_DIRS = ("speaker_01F", "speaker_01M", "speaker_02F", "speaker_02M")


def test_speaker_probe_is_sklearns_logistic_regression_on_the_train_clips_pooled_output(
        setup: dict, study: dict) -> None:
    """finetune's speaker probe (the one train reports): a LogisticRegression fitted here on the
    final model's pooled output of the Train clips, standardised with the fitting clips'
    moments, every other clip of each speaker (row order) fitting and the others scored."""
    from sklearn.linear_model import LogisticRegression

    folder = setup["wd"] / "finetuned" / "loso"
    assert len(study["probed"]) == len(study["runs"]) == 4
    for run, (hidden, _, _), d in zip(study["runs"], study["probed"], FOLD_DIRS):
        probe = json.loads((folder / d / "metrics.json").read_text())["aux"]["speaker_probe"]
        emb, rows, _ = run.encode_rows(run.train_rows, "probe reference")
        X = emb.numpy().astype(np.float64)
        np.testing.assert_allclose(hidden, X, rtol=1e-5, atol=1e-6)  # what the probe read
        speakers = np.array([run.ds.ids[r][3:5] + run.ds.ids[r].rsplit("_", 1)[1][0] for r in rows])
        fit = np.zeros(len(rows), dtype=bool)
        for spk in np.unique(speakers):
            fit[np.flatnonzero(speakers == spk)[0::2]] = True
        mean, std = X[fit].mean(axis=0), X[fit].std(axis=0)
        std[std < 1e-8] = 1.0
        Z = (X - mean) / std
        reference = LogisticRegression(max_iter=2000).fit(Z[fit], speakers[fit])
        want = float(np.mean(reference.predict(Z[~fit]) == speakers[~fit]))
        assert probe["train"]["speaker_accuracy"] == pytest.approx(want)
        assert probe["train"]["n"] == int((~fit).sum()) == 6 and probe["train"]["n_fit"] == 6
        # 3 + 3 fitting clips: the first speaker is the majority, right on 3 of the 6 scored
        assert probe["train"]["majority_accuracy"] == pytest.approx(0.5)
        assert probe["settings"]["column"] == "speaker" and "measures" in probe


def _key_paths(tree: Any, prefix: str = "") -> set[str]:
    """Every key path of nested dicts (values left out)."""
    if not isinstance(tree, dict):
        return {prefix}
    return set().union(*(_key_paths(v, f"{prefix}.{k}" if prefix else k) for k, v in tree.items()))


def test_train_and_finetune_write_the_same_aux_layout(setup: dict, study: dict,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same heads (CTC 0.1, reversed speaker adversary, beta 1) on the same fold (01F held
    out, Val its partner 01M): train on cached log-mel frames and finetune write the same key
    paths under metrics.json's aux and cv.json's aux."""
    from data.corpora import read_corpus
    from extract.base import ExtractOptions
    from extract.run import extract_corpus
    from extract.store import FeatureStore
    from heads.config import ExperimentConfig
    from heads.crossval import run_cross_validation

    wd = tmp_path_factory.mktemp("train-aux") / "wd"
    save_corpus_ref(wd, setup["release"], "iemocap")
    extract_corpus(FeatureStore(wd), read_corpus(setup["release"], "iemocap"), "logmel:16",
                   options=ExtractOptions(workers=1))
    cfg = ExperimentConfig(workdir=str(wd), task="iemocap4", features=("logmel:16",),
                           head="lstm128", n_boot=0, run_name="t",
                           options={"epochs": 1, "device": "cpu", "ctc": 0.1,
                                    "adversary": "speaker:1", "frames_field": "logmel"})
    train_cv = run_cross_validation(cfg, "test-group:01F", val="partner")
    ((fold, result),) = train_cv.folds
    fine = json.loads((setup["wd"] / "finetuned" / "loso" / "speaker_01F" / "metrics.json").read_text())
    assert fold.name == "speaker=01F" and fine["fold"]["val_groups"] == list(fold.val_groups)
    train_aux, fine_aux = result.metrics["aux"], fine["aux"]
    assert set(train_aux) == set(fine_aux) == {"adversary", "speaker_probe", "ctc"}
    assert _key_paths(train_aux) == _key_paths(fine_aux)
    assert "adversary" not in result.metrics and "ctc" not in result.metrics  # one place only
    # the same splits: the adversary on train / val / test, the probe on train, CTC on val / test
    assert [s for s in ("train", "val", "test") if s in train_aux["adversary"]] == ["train", "val", "test"]
    assert [s for s in ("train", "val", "test") if s in train_aux["ctc"]] == ["val", "test"]
    fine_cv = json.loads((setup["wd"] / "finetuned" / "loso" / "cv.json").read_text())
    assert _key_paths(train_cv.summary["aux"]) == _key_paths(fine_cv["aux"])
    # and the CLI prints both with the same lines (adversary, probe, CTC)
    from cli.cmd_train import auxiliary_lines

    heads_of = lambda m: [line.split()[0] for line in auxiliary_lines(m)]
    assert heads_of(result.metrics) == heads_of(fine) == ["adversary", "speaker", "ctc"]


def test_fold_run_stores_its_vocabulary_and_scores_wer_with_jiwer(setup: dict, study: dict) -> None:
    from heads.finetune.run import load_finetuned

    run_dir = setup["wd"] / "finetuned" / "loso" / "speaker_01F"
    corpus_texts = {}
    for p in setup["release"].rglob("transcriptions/*.txt"):
        for line in p.read_text().splitlines():
            utt, _, text = line.partition(" [")
            corpus_texts[utt] = text.split("]: ", 1)[1]
    fold = study["cv"].folds[0][0]
    vocab = CharVocab.load(run_dir / "vocab.json")
    assert vocab == CharVocab.from_texts([corpus_texts[c] for c in fold.ids("Train")])
    pred = pd.read_csv(run_dir / "predictions_test.csv", keep_default_na=False)
    refs = [normalise_transcript(t) for t in pred["text_true"]]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["aux"]["ctc"]["test"]["wer_error"] == pytest.approx(jiwer.wer(refs, list(pred["text_pred"])))
    assert m["aux"]["ctc"]["test"]["cer_error"] == pytest.approx(jiwer.cer(refs, list(pred["text_pred"])))
    ckpt = torch.load(run_dir / "heads.pt", weights_only=False)
    assert ckpt["aux"]["ctc"]["vocab_size"] == len(vocab)
    assert ckpt["aux"]["adversary"]["beta"] == 1.0 and ckpt["aux"]["adversary"]["mode"] == "reverse"
    _, heads, _ = load_finetuned(run_dir)
    assert list(heads(torch.zeros(1, 32))) == ["emotion"]
    curves = json.loads((run_dir / "curves.json").read_text())
    assert len(curves["train_ctc"]) == 2 and all(np.isfinite(curves["train_ctc"]))
    assert len(curves["val_speaker_accuracy"]) == 2  # Val (the partner) is no class: None
    assert curves["val_speaker_accuracy"] == [None, None] and len(curves["val_wer"]) == 2


def test_warmup_ratio_and_linear_decay_are_the_formula(setup: dict, study: dict) -> None:
    # by hand: T steps, w = ceil(0.1 T), step s runs at (s + 1) / w, then (T - s) / (T - w)
    T = 37
    w = math.ceil(0.1 * T)
    hand = [(s + 1) / w if s < w else (T - s) / (T - w) for s in range(T)]
    assert warmup_steps_of(T, ratio=0.1, epochs=1.0, steps_per_epoch=5) == w == 4
    assert [lr_multiplier(s, total_steps=T, warmup_steps=w, decay="linear") for s in range(T)] == pytest.approx(hand)
    cos = [(s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (T - w))) for s in range(T)]
    assert [lr_multiplier(s, total_steps=T, warmup_steps=w, decay="cosine") for s in range(T)] == pytest.approx(cos)
    assert warmup_steps_of(100, ratio=0.1, epochs=1.0, steps_per_epoch=5) == 10
    # the run: 12 Train clips, micro-batches of 2, 2 per step -> 3 steps an epoch, 6 in all,
    # ceil(0.6) = 1 warm-up step; the lr after each epoch is the optimiser's after 3k steps
    run = study["runs"][0]
    assert stage2_schedule(run.cfg, len(run.train_rows)) == (3, 6, 1)
    lrs = run.curves["lr"]
    assert lrs == pytest.approx([1e-3 * (6 - 3) / (6 - 1), 1e-3 * (6 - 6) / (6 - 1)])
    m = json.loads((setup["wd"] / "finetuned" / "loso" / "speaker_01F" / "metrics.json").read_text())
    assert m["stage2"]["accumulated_batch"] == 4 and m["stage2"]["warmup_steps"] == 1


def test_gradient_accumulation_equals_one_big_batch(study: dict) -> None:
    """k micro-batches of unequal size (3 + 1 clips) accumulate the gradient of one batch of 4,
    computed here by hand: CE(emotion) + alpha CTC + beta CE(speaker) behind the reversal."""
    from heads.ctc import pad_targets

    run = study["runs"][0]
    model = run.backbone.model.train()
    run.heads.train()
    run.aux.train()
    params = [p for m in (model, run.heads, run.aux) for p in m.parameters() if p.requires_grad]
    rng = np.random.default_rng(1)
    waves = [(0.3 * rng.standard_normal(8000)).astype(np.float32) for _ in range(4)]
    waves = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waves]
    rows = [int(r) for r in run.train_rows[:4]]

    def grads() -> list[torch.Tensor]:
        return [p.grad.detach().clone() for p in params]

    for p in params:
        p.grad = None
    accumulate(run, [Micro(waves[:3], rows[:3], [True] * 3), Micro(waves[3:], rows[3:], [True])], 0)
    accumulated = grads()

    for p in params:
        p.grad = None
    x = torch.from_numpy(np.stack(waves))
    h = model(x).last_hidden_state  # (4, T, H), equal lengths: no padding
    frames = model._get_feat_extract_output_lengths(torch.tensor([8000] * 4))
    pooled = masked_mean(h, length_mask(frames, h.shape[1]))
    classes = torch.as_tensor(run.ds.truths["iemocap4"]["emotion"][rows]).long()  # class codes
    assert bool((classes >= 0).all())
    loss = F.cross_entropy(run.heads(pooled)["emotion"], classes)
    tg, tl = pad_targets([run.aux_targets.encoded[r] for r in rows])
    logp = torch.log_softmax(run.aux.ctc.proj(h), -1)
    loss = loss + 0.1 * F.ctc_loss(logp.transpose(0, 1), tg, frames, tl, blank=0, zero_infinity=True)
    spk = torch.as_tensor(run.aux_targets.codes[rows])
    loss = loss + 1.0 * F.cross_entropy(run.aux.adversary(pooled), spk)
    loss.backward()
    for a, b, p in zip(accumulated, grads(), params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the reversal reached the encoder: its gradient differs from the one without the speaker term
    assert any(float(g.abs().sum()) > 0 for g in accumulated)


def test_a_segmented_corpus_is_read_as_its_spans(tmp_path: Path, setup: dict,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import heads.finetune.batches as batches
    from data.audio import load_audio

    rng = np.random.default_rng(3)
    sf.write(tmp_path / "long.wav", (0.2 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000)
    rows = ["file,start,end,split,tone"]
    for i, (a, b) in enumerate([(0, 0.6), (0.6, 1.4), (1.5, 2.0), (2.0, 2.7), (3.0, 3.5), (3.5, 4.4),
                                (4.5, 5.0), (5.0, 5.8)]):
        rows.append(f"long.wav,{a},{b},{['train', 'train', 'train', 'train', 'val', 'val', 'test', 'test'][i]},{'ab'[i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    wd = tmp_path / "wd"
    save_corpus_ref(wd, tmp_path, "csv", tmp_path / "labels.csv")
    calls: list = []
    real = batches.load_audio

    def spy(path, **kw):
        calls.append((Path(path).name, kw.get("start"), kw.get("end")))
        return real(path, **kw)

    monkeypatch.setattr(batches, "load_audio", spy)
    captured = {}
    original = ft_run.run_stage2

    def keep(run_state, t0):
        captured["run"] = run_state
        return original(run_state, t0)

    monkeypatch.setattr(ft_run, "run_stage2", keep)
    r = finetune(settings(wd, setup["model"], task="classify:tone", ctc=0.0, adversary=None,
                          epochs=1, run_name="seg"))
    run = captured["run"]
    assert r.metrics["n_clips"] == {"Train": 4, "Val": 2, "Test": 2}
    spans = {c: s for c, s in zip(run.ds.ids, run.durations)}
    assert spans["long@0.6-1.4"] == pytest.approx(0.8) and spans["long@3.5-4.4"] == pytest.approx(0.9)
    assert ("long.wav", 0.6, 1.4) in calls and all(s is not None and e is not None for _, s, e in calls)
    x = run.audio._one("long@0.6-1.4")
    assert len(x) == 12800 and np.array_equal(x, load_audio(tmp_path / "long.wav")[9600:22400])
