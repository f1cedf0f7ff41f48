"""Fine-tuning the log-mel and fbank encoder families: Whisper's encoder (padded 30 s windows
and ``whisper_input`` trimmed) and w2v-BERT 2.0, on tiny random checkpoints.

References are written here from transformers' own pieces: ``WhisperFeatureExtractor`` and
the encoder's forward on the 30 s window, ``SeamlessM4TFeatureExtractor`` and the model's
forward with its attention mask, each clip alone.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import heads.finetune.run as ft_run
from data.audio import load_audio
from data.corpora import read_corpus
from data.demo import make_demo_corpus
from data.workdir import save_corpus_ref
from extract.base import SAMPLE_RATE, ExtractOptions
from extract.ssl import ENCODER_FAMILIES, SSLExtractor
from extract.store import FeatureStore
from extract.untrained import make_untrained_w2vbert, make_untrained_whisper
from heads.finetune import FinetuneConfig, finetune, finetune_cross_validation, store_embeddings
from heads.finetune.backbone import BACKBONES, build_backbone, load_model

FAMILIES = ["whisper", "whisper-trimmed", "w2vbert"]


def small(workdir: Path, model: Path, **kw: object) -> FinetuneConfig:
    base = dict(workdir=str(workdir), model=str(model), task="avb-high,avb-type", frozen_epochs=2,
                epochs=2, batch_size=8, lr=1e-3, max_seconds=1.0, patience=0, device="cpu",
                workers=1, n_boot=20)
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def whisper_input(family: str) -> str:
    return "trimmed" if family == "whisper-trimmed" else "padded"


def params(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return {k: v.detach().clone() for k, v in AutoModel.from_pretrained(folder).state_dict().items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ftfam")
    corpus = make_demo_corpus(root / "corpus", n_clips=40, seed=3)
    wd = root / "wd"
    save_corpus_ref(wd, corpus, "avb")
    whisper = make_untrained_whisper(root / "tiny-whisper")
    models = {"whisper": whisper, "whisper-trimmed": whisper,
              "w2vbert": make_untrained_w2vbert(root / "tiny-w2vbert")}
    return {"root": root, "corpus": corpus, "wd": wd, "models": models}


@pytest.fixture(scope="module")
def runs(setup: dict) -> dict:
    """One two-stage run per family, stored; the in-memory run captured at stage 2."""
    out = {}
    original = ft_run.run_stage2
    for family, model in setup["models"].items():
        captured: dict = {}

        def spy(run_state, t0, captured=captured):
            captured["run"] = run_state
            return original(run_state, t0)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ft_run, "run_stage2", spy)
            result = finetune(small(setup["wd"], model, run_name=family,
                                    whisper_input=whisper_input(family)))
        summary = store_embeddings(result.model_dir, setup["wd"], ExtractOptions(
            device="cpu", workers=1, whisper_input=whisper_input(family)))
        out[family] = {"result": result, "summary": summary, **captured}
    return out


def test_every_encoder_family_has_a_finetune_backbone() -> None:
    assert {cls.family for cls in ENCODER_FAMILIES} == set(BACKBONES)


@pytest.mark.parametrize("family", FAMILIES)
def test_stage2_trains_the_encoder_layers_and_leaves_the_fixed_parts(setup: dict, runs: dict,
                                                                    family: str) -> None:
    base, after = params(setup["models"][family]), params(runs[family]["result"].model_dir)
    assert set(base) == set(after)
    changed = {n for n in base if not torch.equal(after[n], base[n])}
    n_layers = 2
    for i in range(n_layers):  # every encoder layer learnt something
        assert any(n.startswith(f"encoder.layers.{i}.") for n in changed), (family, i, sorted(changed))
    if family.startswith("whisper"):
        fixed = ("encoder.conv1.", "encoder.conv2.", "encoder.embed_positions.", "decoder.")
        assert "encoder.layer_norm.weight" in changed
    else:
        fixed = ("feature_projection.",)
    assert [n for n in base if n.startswith(fixed)], fixed
    assert not [n for n in changed if n.startswith(fixed)]
    curves = json.loads((runs[family]["result"].run_dir / "curves.json").read_text())
    assert curves["stage"] == [1, 1, 2, 2] and np.isfinite(curves["train_total"]).all()


def reference_states(model, family: str, x: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Every hidden state ``(frames, hidden)`` of one clip through transformers' own
    preprocessing and forward (Whisper trimmed: the encoder's modules on the clip's own mel
    frames, alone)."""
    from transformers import SeamlessM4TFeatureExtractor, WhisperFeatureExtractor

    folder = model.name_or_path
    with torch.no_grad():
        if family == "w2vbert":
            f = SeamlessM4TFeatureExtractor.from_pretrained(folder)(
                [x], sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
            states = model(f.input_features, attention_mask=f.attention_mask,
                           output_hidden_states=True).hidden_states
            n = int(f.attention_mask[0].sum())  # the extractor pads to an even fbank count
            return tuple(h[0, :n] for h in states)
        mel = WhisperFeatureExtractor.from_pretrained(folder)(
            [x], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features  # (1, 80, 3000)
        n_mel = math.ceil(len(x) / 160)
        frames = (n_mel - 1) // 2 + 1
        enc = model.encoder
        if family == "whisper":
            return tuple(h[0, :frames] for h in enc(mel, output_hidden_states=True).hidden_states)
        h = torch.nn.functional.gelu(enc.conv1(mel[:, :, :n_mel]))
        h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
        h = h + enc.embed_positions.weight[:h.shape[1]]
        states = [h]
        for layer in enc.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
            states.append(h)
        states[-1] = enc.layer_norm(h)
        assert h.shape[1] == frames
        return tuple(s[0] for s in states)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_folder_reloads_and_its_stored_set_is_the_models_own_forward(setup: dict, runs: dict,
                                                                          family: str) -> None:
    from transformers import AutoModel

    r, s = runs[family]["result"], runs[family]["summary"]
    assert s.computed == 40 and not s.failed
    model = AutoModel.from_pretrained(r.model_dir).eval()
    assert type(model).__name__ == ("Wav2Vec2BertModel" if family == "w2vbert" else "WhisperModel")
    pre = json.loads((r.model_dir / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == ("SeamlessM4TFeatureExtractor" if family == "w2vbert"
                                             else "WhisperFeatureExtractor")
    info = json.loads((r.model_dir / "finetuned.json").read_text())
    assert info.get("whisper_input") == (None if family == "w2vbert" else whisper_input(family))
    store = FeatureStore(setup["wd"])
    header = store.find(r.spec)
    assert header.key == s.key and header.provenance["finetuned"]["run"] == family
    if family.startswith("whisper"):
        want = "trimmed-to-clip" if family == "whisper-trimmed" else "padded-30s"
        assert header.config["input"]["whisper_input"] == want
    corpus = read_corpus(setup["corpus"], "avb")
    ids = sorted(corpus.clips.index)[:3]
    stored, present = store.read(s.key, "pooled_mean", ids)
    assert present.all()
    waves = []
    for j, cid in enumerate(ids):
        x = load_audio(corpus.clips.loc[cid, "path"]).astype(np.float32)
        waves.append(x)
        for layer, h in enumerate(reference_states(model, family, x)):
            ref = h.mean(0).numpy().astype(np.float64)
            assert cosine(stored[j, layer].astype(np.float64), ref) >= 0.999, (cid, layer)
    # the heads' input during fine-tuning (the in-memory backbone, eval) is the stored last layer
    emb = runs[family]["run"].backbone.embed(waves, max_samples=64 * SAMPLE_RATE).numpy()
    for j in range(len(ids)):
        assert cosine(stored[j, -1].astype(np.float64), emb[j].astype(np.float64)) >= 0.999


def base_backbone(setup: dict, family: str, layer: int | None = None):
    ex = SSLExtractor(str(setup["models"][family]),
                      ExtractOptions(device="cpu", whisper_input=whisper_input(family)))
    ex.resolve()
    model = load_model(ex)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, build_backbone(model, ex, layer=layer, device=torch.device("cpu"))


@pytest.mark.parametrize("family", FAMILIES)
def test_pooled_vectors_read_true_frames_only_at_every_layer(setup: dict, family: str) -> None:
    """A clip alone and in a batch with a longer one (and a clip over 30 s: two Whisper
    windows) give the same pooled vector in eval mode, the hidden state the model reports."""
    rng = np.random.default_rng(1)
    short = (0.1 * rng.standard_normal(11_234)).astype(np.float32)
    long = (0.1 * rng.standard_normal(47_001)).astype(np.float32)
    for layer in (0, 1, 2, None):
        model, bb = base_backbone(setup, family, layer)
        model.eval()
        with torch.no_grad():
            alone = bb.pooled([short])[0]
            batch = bb.pooled([short, long])
            h, frames = bb.frames([short, long])
        torch.testing.assert_close(batch[0], alone, rtol=0, atol=2e-5)
        ref = reference_states(model, family, short)[2 if layer is None else layer]
        torch.testing.assert_close(alone, ref.mean(0), rtol=0, atol=2e-5)
        assert frames.tolist() == [reference_states(model, family, x)[0].shape[0] for x in (short, long)]
    if family.startswith("whisper"):
        model, bb = base_backbone(setup, family)
        model.eval()
        very_long = (0.1 * rng.standard_normal(31 * SAMPLE_RATE)).astype(np.float32)
        with torch.no_grad():
            h, frames = bb.frames([short, very_long])
            first = bb.frames([very_long[:30 * SAMPLE_RATE]])[0][0, :1500]
            rest = bb.frames([very_long[30 * SAMPLE_RATE:]])[0][0, :50]
        assert frames.tolist() == [bb.enc.num_frames(len(short)), 1500 + 50]
        torch.testing.assert_close(h[1, :1550], torch.cat([first, rest]), rtol=0, atol=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_every_encoder_layer_and_the_freeze_option_maps(setup: dict, family: str) -> None:
    stem = "encoder.conv1." if family.startswith("whisper") else "feature_projection."
    x = [(0.1 * np.random.default_rng(2).standard_normal(n)).astype(np.float32) for n in (9_000, 16_000)]
    for freeze in (True, False):
        model, bb = base_backbone(setup, family)
        model.config.layerdrop = 0.0  # w2v-BERT's LayerDrop would skip a layer's gradient at random
        trained = {id(p) for p in bb.trainable_params(freeze)}
        model.train()
        bb.pooled(x).square().sum().backward()
        names = dict(model.named_parameters())
        for i in range(2):
            grads = [p.grad for n, p in names.items() if n.startswith(f"encoder.layers.{i}.")]
            assert any(g is not None and g.abs().sum() > 0 for g in grads), (family, i)
        stem_params = [p for n, p in names.items() if n.startswith(stem)]
        assert stem_params
        assert all((id(p) in trained) != freeze for p in stem_params)
        assert all((p.grad is None) == freeze for p in stem_params)
        if family.startswith("whisper"):  # positions fixed, the decoder never trained
            assert not [n for n, p in names.items() if id(p) in trained and
                        (n.startswith("decoder.") or "embed_positions" in n)]


@pytest.mark.parametrize("family", ["whisper", "w2vbert"])
def test_ctc_and_speaker_adversary_heads_train_on_the_new_families(tmp_path: Path, setup: dict,
                                                                   family: str) -> None:
    from tests.heads.test_finetune_ser import make_release

    release = make_release(tmp_path / "corpus")
    wd = tmp_path / "wd"
    save_corpus_ref(wd, release, "iemocap")
    cfg = FinetuneConfig(workdir=str(wd), model=str(setup["models"][family]), task="iemocap4",
                         frozen_epochs=0, epochs=2, batch_size=4, lr=1e-3, patience=0, ctc=0.1,
                         adversary="speaker:1", device="cpu", workers=1, n_boot=10, run_name="g",
                         head_hidden=0)
    cv = finetune_cross_validation(cfg, "test-group:01F", val="partner")
    (fold, result), = cv.folds
    m = result.metrics
    aux = m["aux"]
    assert aux["ctc"]["test"]["n"] == 6 and 0.0 <= aux["ctc"]["test"]["cer_error"]
    assert aux["adversary"]["train"]["n"] == 12 and len(aux["adversary"]["settings"]["classes"]) == 2
    curves = json.loads((result.run_dir / "curves.json").read_text())
    assert all(np.isfinite(v) for v in curves["train_ctc"]) and len(curves["train_adversary"]) == 2


def test_options_that_do_not_apply_are_refused_with_the_option_and_family(setup: dict, runs: dict,
                                                                         tmp_path: Path) -> None:
    wd = setup["wd"]
    with pytest.raises(ValueError, match=r"--whisper-input trimmed applies to Whisper checkpoints "
                                         r"only; .* is a w2v-bert-fbank model"):
        finetune(small(wd, setup["models"]["w2vbert"], whisper_input="trimmed", run_name="no1"))
    with pytest.raises(ValueError, match="option whisper_input must be one of"):
        finetune(small(wd, setup["models"]["whisper"], whisper_input="cut", run_name="no2"))
    model_dir = runs["whisper-trimmed"]["result"].model_dir
    with pytest.raises(ValueError, match="fine-tuned on whisper-input trimmed.*--whisper-input "
                                         "trimmed.*python run_pipeline.py extract"):
        store_embeddings(model_dir, wd, ExtractOptions(device="cpu", whisper_input="padded"))
    assert not any((wd / "finetuned" / n).exists() for n in ("no1", "no2"))


@pytest.mark.parametrize("family", ["whisper-trimmed", "w2vbert"])
def test_layer_checkpointing_and_a_trained_feature_encoder(setup: dict, family: str) -> None:
    model = setup["models"][family]
    r = finetune(small(setup["wd"], model, run_name=f"gc-{family}", frozen_epochs=0, epochs=1,
                       layer=1, gradient_checkpointing=True, freeze_feature_encoder=False,
                       task="country", whisper_input=whisper_input(family)))
    cfg = json.loads((r.run_dir / "config.json").read_text())
    assert cfg["layer"] == 1 and cfg["family"] == ("w2v-bert-fbank" if family == "w2vbert" else "whisper-log-mel")
    base, after = params(model), params(r.model_dir)
    stem = "encoder.conv1." if family.startswith("whisper") else "feature_projection."
    assert any(not torch.equal(after[n], base[n]) for n in base if n.startswith(stem))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_bf16_autocast_run(setup: dict, family: str) -> None:
    r = finetune(small(setup["wd"], setup["models"][family], run_name=f"cuda-{family}", device="cuda",
                       frozen_epochs=1, epochs=1, whisper_input=whisper_input(family)))
    cfg = json.loads((r.run_dir / "config.json").read_text())
    assert cfg["compute_dtype"] == "bfloat16-autocast" and np.isfinite(r.metrics["val"]["score"])
