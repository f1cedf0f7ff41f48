"""End-to-end fine-tuning (heads/finetune.py) on tiny random checkpoints and a 40-clip demo corpus.

One shared two-stage run (module fixture) is inspected by most tests: the backbone before stage 2
is captured by wrapping ``_stage2``, so "stage 1 leaves the backbone alone" is checked on the
same run that later changes it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import heads.finetune as ft
import heads.finetune.run as ft_run
from heads.finetune.backbone import Backbone
from data.audio import load_audio
from data.corpora import read_corpus
from data.demo import make_demo_corpus
from data.tasks import TaskError
from data.workdir import save_corpus_ref
from extract.base import ExtractOptions, ExtractorUnavailable
from extract.store import FeatureStore
from heads.finetune import FinetuneConfig, finetune, load_finetuned, store_embeddings
from tests.extract.conftest import build_tiny_model

TASKS = "avb-high,avb-type"


def small(workdir: Path, model: Path, **kw: object) -> FinetuneConfig:
    """Settings of a run that takes about a second on one CPU thread."""
    base = dict(workdir=str(workdir), model=str(model), task=TASKS, frozen_epochs=6, epochs=2,
                batch_size=8, lr=1e-3, max_seconds=1.0, patience=0, device="cpu", workers=1,
                n_boot=20)
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def params(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return {k: v.detach().clone() for k, v in AutoModel.from_pretrained(model_dir).state_dict().items()}


def is_conv(name: str) -> bool:
    return name.startswith("feature_extractor.")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ft")
    corpus = make_demo_corpus(root / "corpus", n_clips=40, seed=3)
    model = build_tiny_model("wav2vec2-group", root / "tiny-w2v2")
    wd = root / "wd"
    save_corpus_ref(wd, corpus, "avb")
    return {"root": root, "corpus": corpus, "model": model, "wd": wd}


@pytest.fixture(scope="module")
def run(setup: dict) -> dict:
    """The shared run: stage 1 then stage 2, the backbone captured between them, then stored."""
    captured: dict = {}
    original = ft_run.run_stage2

    def spy(run_state, t0):
        captured["before_stage2"] = {k: v.detach().clone()
                                     for k, v in run_state.backbone.model.state_dict().items()}
        captured["run"] = run_state
        return original(run_state, t0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ft_run, "run_stage2", spy)
        result = finetune(small(setup["wd"], setup["model"], run_name="ft"))
    summary = store_embeddings(result.model_dir, setup["wd"], ExtractOptions(device="cpu", workers=1))
    return {**captured, "result": result, "summary": summary}


def test_stage1_leaves_the_backbone_alone_stage2_trains_it(setup: dict, run: dict) -> None:
    base = params(setup["model"])
    before, after = run["before_stage2"], params(run["result"].model_dir)
    for name, value in base.items():
        assert torch.equal(before[name], value), f"stage 1 changed {name}"
    changed = [n for n in base if not is_conv(n) and not torch.equal(after[n], base[n])]
    assert len(changed) > 10, "stage 2 left the transformer unchanged"
    assert any(n.startswith("encoder.layers.") for n in changed)


def test_feature_encoder_stays_frozen(setup: dict, run: dict) -> None:
    base, after = params(setup["model"]), params(run["result"].model_dir)
    conv = [n for n in base if is_conv(n)]
    assert conv and all(torch.equal(after[n], base[n]) for n in conv)


def test_losses_fall_and_val_scores_are_recorded(run: dict) -> None:
    run_dir = run["result"].run_dir
    curves = json.loads((run_dir / "curves.json").read_text())
    assert curves["stage"] == [1] * 6 + [2] * 2
    s1 = [t for t, s in zip(curves["train_total"], curves["stage"]) if s == 1]
    assert s1[-1] < s1[0] - 0.01, f"stage 1 loss did not fall: {s1}"
    for task in ("avb-high", "avb-type"):
        assert len(curves["val_score"][task]) == 8 and np.isfinite(curves["val_score"][task]).all()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(m["tasks"]) == {"avb-high", "avb-type"}
    assert m["tasks"]["avb-type"]["val"]["metric"] == "uar"
    assert 0.0 <= m["tasks"]["avb-type"]["val"]["score"] <= 1.0
    assert np.isfinite(m["val"]["score"]) and np.isfinite(m["stage1"]["selection"])
    assert m["stage2"]["best_epoch"] in (0, 1) and m["stage2_clips_per_s"] > 0
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["base_model"] == str(run["run"].cfg.model) and cfg["tasks"] == ["avb-high", "avb-type"]
    assert cfg["options"]["lr"] == 1e-3 and "torch" in cfg["versions"] and cfg["started"] <= cfg["finished"]
    assert not cfg["attention_mask"]  # group-norm wav2vec2: trained without one
    assert not list(run_dir.parent.glob(".*.tmp"))


def test_saved_folder_gives_the_in_memory_outputs(setup: dict, run: dict) -> None:
    model, heads, ckpt = load_finetuned(run["result"].run_dir)
    mem = run["run"]
    x = torch.from_numpy(0.1 * np.random.default_rng(0).standard_normal(12_000).astype(np.float32))[None]
    with torch.no_grad():
        mine = mem.backbone.model.eval()(x).last_hidden_state
        saved = model(x).last_hidden_state
        torch.testing.assert_close(saved, mine, rtol=0, atol=1e-6)
        emb = mine.mean(1)
        h_mem, h_saved = mem.heads.eval()(emb), heads(emb)
    for name in h_mem:
        torch.testing.assert_close(h_saved[name], h_mem[name], rtol=0, atol=1e-6)
    assert [o["name"] for o in ckpt["outputs"]] == ["high", "type"]
    pre = json.loads((run["result"].model_dir / "preprocessor_config.json").read_text())
    assert pre["do_normalize"] is True


def test_stored_embeddings_equal_a_direct_forward_and_say_fine_tuned(setup: dict, run: dict) -> None:
    from transformers import AutoModel

    s = run["summary"]
    assert s.computed == 40 and not s.failed
    store = FeatureStore(setup["wd"])
    header = store.find(run["result"].spec)
    assert header.key == s.key and header.name == "ssl-tiny-w2v2-ft-ft"
    info = header.provenance["finetuned"]
    assert info["base_model"] == str(setup["model"]) and info["run"] == "ft"
    assert info["tasks"] == ["avb-high", "avb-type"]
    model = AutoModel.from_pretrained(run["result"].model_dir).eval()
    corpus = read_corpus(setup["corpus"], "avb")
    for cid in sorted(corpus.clips.index)[:3]:
        x = load_audio(corpus.clips.loc[cid, "path"]).astype(np.float64)
        x = ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)[None]).last_hidden_state[0].mean(0).numpy()
        stored, present = store.read(s.key, "pooled_mean", [cid])
        v = stored[0, -1].astype(np.float64)
        assert present[0]
        assert v @ ref / (np.linalg.norm(v) * np.linalg.norm(ref)) >= 0.999


def test_rerun_reuses_a_finished_run_and_refuses_other_settings(setup: dict, run: dict) -> None:
    again = finetune(small(setup["wd"], setup["model"], run_name="ft", workers=2))
    assert again.resumed and again.metrics == run["result"].metrics
    with pytest.raises(FileExistsError, match="epochs differ.*another --run-name"):
        finetune(small(setup["wd"], setup["model"], run_name="ft", epochs=3))


def test_a_failure_before_the_rename_leaves_nothing_under_the_run_name(setup: dict,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ft_run, "save_run", boom)
    with pytest.raises(OSError, match="disk full"):
        finetune(small(setup["wd"], setup["model"], run_name="killed", frozen_epochs=1, epochs=0))
    root = setup["wd"] / ft.FINETUNED_DIR
    assert not (root / "killed").exists() and not list(root.glob(".killed.*"))


def test_layer_mask_shared_head_checkpointing_and_trained_feature_encoder(setup: dict) -> None:
    """data2vec-audio (layer-norm convs: attention mask), a chosen layer, gradient
    checkpointing, a shared head, and the feature encoder trained on request."""
    model = build_tiny_model("data2vec-audio", setup["root"] / "tiny-d2v")
    r = finetune(small(setup["wd"], model, run_name="d2v", frozen_epochs=0, epochs=1, layer=2,
                       gradient_checkpointing=True, shared_head=True, freeze_feature_encoder=False,
                       task="country"))
    cfg = json.loads((r.run_dir / "config.json").read_text())
    assert cfg["attention_mask"] and cfg["layer"] == 2 and r.metrics["stage1"] is None
    base, after = params(model), params(r.model_dir)
    assert any(not torch.equal(after[n], base[n]) for n in base if is_conv(n))
    _, heads, _ = load_finetuned(r.run_dir)
    assert len(heads.nets) == 1


def test_bad_options_fail_before_any_work_with_clear_messages(setup: dict, tmp_path: Path) -> None:
    wd, model = setup["wd"], setup["model"]
    with pytest.raises(TaskError, match="unknown task 'avb-nope'"):
        finetune(small(wd, model, task="avb-nope"))
    with pytest.raises(ValueError, match="layer 9 is not a hidden-state index.*0..3"):
        finetune(small(wd, model, layer=9, run_name="x1"))
    with pytest.raises(ValueError, match="option output must be one of"):
        finetune(small(wd, model, output="tanh"))
    with pytest.raises(ValueError, match="nothing to train"):
        finetune(small(wd, model, frozen_epochs=0, epochs=0))
    with pytest.raises(ValueError, match="unknown weighting 'kendall'"):
        finetune(small(wd, model, weighting="kendall"))
    with pytest.raises(ExtractorUnavailable, match="does not exist.*save_pretrained"):
        finetune(small(wd, tmp_path / "missing", run_name="x2"))
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="'bert' model, not a speech SSL model"):
        finetune(small(wd, tmp_path / "bert", run_name="x3"))
    with pytest.raises(FileNotFoundError, match="corpus.json.*extract"):
        finetune(small(tmp_path / "empty", model))
    with pytest.raises(ValueError, match="--whisper-input trimmed applies to Whisper checkpoints "
                                         "only; .* is a conv-waveform model"):
        finetune(small(wd, model, whisper_input="trimmed", run_name="x4"))
    assert not any((wd / ft.FINETUNED_DIR / n).exists() for n in ("x1", "x2", "x3", "x4"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_run(setup: dict) -> None:
    r = finetune(small(setup["wd"], setup["model"], run_name="cuda", device="cuda", frozen_epochs=1,
                       epochs=1))
    cfg = json.loads((r.run_dir / "config.json").read_text())
    assert cfg["compute_dtype"] == "bfloat16-autocast" and np.isfinite(r.metrics["val"]["score"])


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_layer_hooks_pick_the_hidden_state_the_model_reports(setup: dict, layer: int) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(setup["model"]).eval()
    bb = Backbone(model, do_normalize=False, use_mask=False, min_samples=400, layer=layer,
                      device=torch.device("cpu"))
    x = 0.1 * np.random.default_rng(layer).standard_normal(9_000).astype(np.float32)
    with torch.no_grad():
        ours = bb.pooled([x])[0]
        ref = model(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states[layer][0].mean(0)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_the_report_lists_the_finetune_run_with_its_scores(setup: dict, run: dict) -> None:
    from reports.report import write_report

    write_report(setup["wd"])
    md = (setup["wd"] / "report.md").read_text()
    metrics = run["result"].metrics
    for task in TASKS.split(","):
        section = md[md.index(f"## {task}"):]
        row = next(line for line in section.splitlines() if line.startswith("| finetuned/ft |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "finetune" and "(fine-tuned end to end)" in cells[2]
        assert cells[4] == f"{metrics['tasks'][task]['val']['score']:.4f}"
