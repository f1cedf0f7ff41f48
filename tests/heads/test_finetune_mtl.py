"""Issue 12, paper 000 end to end: the fine-tune heads as the frozen stage's ``mlp-mtl`` with
``projection = "per-task"`` (``head_net`` / ``head_options``), the intermediate tasks'
predictions fed along with the pooled features, and the recipes hcmlab-mtl-ft /
hcmlab-mtl-b960h-ft running both of the paper's stages (000 sec. II)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import heads.finetune.stages as ft_stages
from data.demo import make_demo_corpus
from data.workdir import save_corpus_ref
from extract.base import SAMPLE_RATE
from heads.finetune import FinetuneConfig, load_finetuned
from heads.finetune.backbone import HEAD_SETTINGS, build_heads, head_settings
from heads.nets.mlp import MlpMtl
from heads.recipes import list_recipes, load_recipe
from tests.extract.conftest import build_tiny_model
from tests.heads.test_recipes_nets_fidelity import (assert_projection_per_task,
                                                  paper_000_tasks)

HCMLAB_FT = [r for r in list_recipes() if r.name.startswith("hcmlab-") and r.stage == "finetune"]


def _outputs(specs) -> list[SimpleNamespace]:
    """Stand-ins of :class:`heads.training.outputs.Output` (name, task, target name)."""
    return [SimpleNamespace(name=n, task=f"avb-{n}" if n not in ("country",) else n,
                            target=SimpleNamespace(name=n)) for n, _, _ in specs]


def _heads(cfg: FinetuneConfig, specs, dim: int = 768):
    return build_heads(dim, specs, head_settings(cfg, _outputs(specs)))


SYSTEMS = {  # recipe: (task, output, chain) as 000 sec. III names the variant
    "hcmlab-mtl-ft": ("avb-high,avb-culture,avb-type,country", "clamp", ()),  # -SM
    "hcmlab-mtl-b960h-ft": ("avb-high,avb-culture,avb-type,country", "clamp", ()),  # B960h
    "hcmlab-mtl-1of4-ft": ("avb-high,avb-culture,avb-two,avb-type,country", "sigmoid", ("country",)),
}


def test_the_recipes_are_the_papers_systems_with_both_stages() -> None:
    assert {r.name for r in HCMLAB_FT} == set(SYSTEMS)
    for r in HCMLAB_FT:
        cfg = r.finetune_config("/tmp/wd", run_name="x")
        task, output, chain = SYSTEMS[r.name]
        assert r.task == task
        assert (cfg.frozen_epochs, cfg.epochs, cfg.patience, cfg.batch_size) == (30, 30, 2, 32)
        assert (cfg.head_lr, cfg.weight_decay, cfg.optimizer) == (1e-3, 0.01, "adamw")  # AdamW defaults
        assert (cfg.lr, cfg.schedule, cfg.warmup, cfg.warmup_ratio) == (4e-5, "cosine", 1.0, None)
        assert cfg.freeze_feature_encoder is False and cfg.max_seconds == 0.0  # whole net, whole clips
        assert (cfg.weighting, cfg.loss, cfg.output, cfg.class_weights) == ("uw", "ccc", output, True)
        assert (cfg.head_net, cfg.head_hidden, cfg.head_options["projection"]) == ("mlp-mtl", 256, "per-task")
        assert tuple(cfg.head_options.get("chain", ())) == chain
        (net,) = _heads(cfg, paper_000_tasks(r.task)).nets
        assert net.config.chain == chain and net.config.output == output
        assert cfg.layer is None  # the last hidden state: layer 12 of a base model
        rows = {row.detail: row for row in r.fidelity.rows}
        for detail in ("projection layers", "intermediate tasks", "stage 1", "stage 2",
                       "stage 2 learning rate", "stage 2 schedule", "epochs", "stopping",
                       "batch size", "padding", "regression outputs"):
            assert rows[detail].kind == "match", (r.name, detail)
        assert rows["crops"].kind == "not stated" and "whole clips" in rows["crops"].ours
    sm = {p.split: p.scores for p in load_recipe("hcmlab-mtl-ft").reproduces}
    assert sm == {"val": {"avb-high": 0.654, "avb-culture": 0.639, "avb-type": 0.584, "country": 0.657},
                  "test": {"avb-high": 0.685, "avb-culture": 0.515, "avb-type": 0.586}}
    b960h = {p.split: p.scores for p in load_recipe("hcmlab-mtl-b960h-ft").reproduces}
    assert b960h == {"val": {"avb-high": 0.658, "avb-culture": 0.642, "avb-type": 0.567, "country": 0.647},
                     "test": {"avb-high": 0.679, "avb-culture": 0.526, "avb-type": 0.573}}
    (one_of_four,) = load_recipe("hcmlab-mtl-1of4-ft").reproduces
    assert one_of_four.split == "val" and one_of_four.scores == {
        "avb-high": 0.628, "avb-culture": 0.614, "avb-two": 0.245, "avb-type": 0.542, "country": 0.603}
    assert load_recipe("hcmlab-mtl-b960h-ft").features == ("ssl:facebook/data2vec-audio-base-960h",)
    assert not any("after fine-tuning" in p.note for r in HCMLAB_FT for p in r.reproduces)


@pytest.mark.parametrize("chain", [(), ("country",), ("country", "type")])
@pytest.mark.parametrize("recipe", HCMLAB_FT, ids=[r.name for r in HCMLAB_FT])
def test_finetune_heads_are_the_papers_projection_per_task(recipe, chain) -> None:
    """One MlpMtl over all tasks; each task Linear(768, 256), GELU, Linear(256, k); nothing
    shared; a chained task's output size joins the other tasks' input (768 + its k)."""
    options = {**recipe.finetune["head_options"], "chain": list(chain)}
    cfg = recipe.finetune_config("/tmp/wd", run_name="x", head_options=options)
    specs = paper_000_tasks(recipe.task)
    heads = _heads(cfg, specs)
    (net,) = heads.nets
    assert isinstance(net, MlpMtl) and net.config.chain == chain
    assert_projection_per_task(net, specs, chain)
    assert sum(p.numel() for p in heads.parameters()) == sum(
        p.numel() for m in net.heads for p in m.parameters())  # no layer beside the net's heads


def test_chained_predictions_enter_with_the_pooled_features() -> None:
    """The chain entry names the task ("country"); the country head reads the pooled features
    alone, every other head [pooled, softmax(country logits)]; regression outputs clamped to
    [0, 1] (-SM). Computed here by hand."""
    torch.manual_seed(0)
    cfg = load_recipe("hcmlab-mtl-ft").finetune_config(
        "/tmp/wd", run_name="x", head_options={"projection": "per-task", "chain": "country"})
    specs = paper_000_tasks("avb-high,avb-type,country")
    heads = _heads(cfg, specs)
    high, typ, country = heads.nets[0].heads
    x = torch.randn(6, 768)
    out = heads(x)
    torch.testing.assert_close(out["country"], country(x))
    fed = torch.cat([x, torch.softmax(country(x), dim=-1)], dim=-1)  # (6, 772)
    torch.testing.assert_close(out["high"], high(fed).clamp(0.0, 1.0))
    torch.testing.assert_close(out["type"], typ(fed))
    with torch.no_grad():
        country[2].bias.add_(torch.tensor([4.0, 0.0, 0.0, 0.0]))
    assert not torch.allclose(heads(x)["type"], out["type"])  # the country prediction moves Type
    # a chain entry naming no output says which outputs there are
    with pytest.raises(ValueError, match="chain entry 'age' must name exactly one output"):
        head_settings(FinetuneConfig(**{**_base(), "head_net": "mlp-mtl",
                                        "head_options": {"chain": ["age"]}}), _outputs(specs))


def _base() -> dict:
    return {"workdir": "/tmp/wd", "model": "m", "task": "avb-high"}


def test_default_heads_and_other_recipes_are_unchanged() -> None:
    """Without head_net: one mlp-mtl (shared projection) per output, as before; every other
    fine-tune recipe leaves head_net and head_options out and keeps its crops."""
    cfg = FinetuneConfig(**_base())
    assert (cfg.head_net, cfg.head_options, cfg.max_seconds) == (None, None, 8.0)
    specs = paper_000_tasks("avb-high,avb-type,country")
    heads = _heads(cfg, specs)
    assert len(heads.nets) == 3 and all(n.shared is not None and len(n.heads) == 1 for n in heads.nets)
    assert {"head_net", "head_options"} <= set(HEAD_SETTINGS)
    for r in list_recipes():
        if r.stage == "finetune" and r not in HCMLAB_FT:
            c = r.finetune_config("/tmp/wd", run_name="x")
            assert (c.head_net, c.head_options) == (None, None) and c.max_seconds > 0, r.name


def test_bad_head_net_options_say_what_to_give() -> None:
    base = _base()
    with pytest.raises(ValueError, match="head_options .* give head_net too"):
        FinetuneConfig(**base, head_options={"projection": "per-task"}).check()
    with pytest.raises(ValueError, match="head_net must be one of"):
        FinetuneConfig(**base, head_net="mlp-avb").check()
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['hidden'\\]"):
        FinetuneConfig(**base, head_net="mlp-mtl", head_options={"hidden": 128}).check()
    with pytest.raises(ValueError, match="head_hidden >= 1.*head_hidden is 0"):
        FinetuneConfig(**base, head_net="mlp-mtl", head_hidden=0).check()
    with pytest.raises(ValueError, match="no head_rnn; head_hidden is 0"):
        FinetuneConfig(**base, head_net="mlp-mtl", head_rnn="lstm:1x8", head_hidden=0,
                       frozen_epochs=0).check()
    with pytest.raises(ValueError, match="shared_head is True"):
        FinetuneConfig(**base, head_net="mlp-mtl", shared_head=True).check()
    with pytest.raises(ValueError, match="max_seconds must be >= 0"):
        FinetuneConfig(**base, max_seconds=-1.0).check()
    with pytest.raises(ValueError, match="projection must be one of"):
        build_heads(8, paper_000_tasks("avb-high"), {"head_net": "mlp-mtl", "head_options": {"projection": "tree"}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ftmtl")
    corpus = make_demo_corpus(root / "corpus", n_clips=40, seed=5)
    model = build_tiny_model("data2vec-audio", root / "tiny-d2v")
    wd = root / "wd"
    save_corpus_ref(wd, corpus, "avb")
    return {"root": root, "model": model, "wd": wd}


def test_finetune_recipe_hcmlab_mtl_ft_runs_both_stages_through_the_cli(
        setup: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """`finetune --recipe hcmlab-mtl-ft` on a tiny random data2vec-audio, one epoch per stage:
    the recipe's settings in config.json, the per-task head in heads.pt, whole clips in stage
    2, and the feature encoder trained."""
    from cli.main import main
    from transformers import AutoModel

    lengths: list[np.ndarray] = []
    original = ft_stages.train_plan

    def spy(samples, *args, **kwargs):
        lengths.append(np.asarray(samples).copy())
        return original(samples, *args, **kwargs)

    monkeypatch.setattr(ft_stages, "train_plan", spy)
    rc = main(["-q", "finetune", "--workdir", str(setup["wd"]), "--recipe", "hcmlab-mtl-ft",
               "--features", f"ssl:{setup['model']}", "--frozen-epochs", "1", "--epochs", "1",
               "--device", "cpu", "--workers", "1", "--run-name", "paper", "--no-extract",
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    run_dir = setup["wd"] / "finetuned" / "paper"
    saved = json.loads((run_dir / "config.json").read_text())
    opts = saved["options"]
    assert (opts["frozen_epochs"], opts["epochs"]) == (1, 1)  # the overrides
    assert (opts["lr"], opts["head_lr"], opts["schedule"], opts["warmup"]) == (4e-5, 1e-3, "cosine", 1.0)
    assert (opts["batch_size"], opts["patience"], opts["weighting"], opts["output"]) == (32, 2, "uw", "clamp")
    assert (opts["head_net"], opts["head_options"], opts["head_hidden"]) == ("mlp-mtl", {"projection": "per-task"}, 256)
    assert opts["freeze_feature_encoder"] is False and opts["max_seconds"] == 0.0
    assert saved["recipe"]["name"] == "hcmlab-mtl-ft"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stage1"] is not None and metrics["stage2"] is not None
    # stage 2 plans its batches on each Train clip's full length: no crop
    (planned,) = lengths
    assert len(planned) == metrics["n_clips"]["Train"] and planned.min() > 0
    assert planned.max() > SAMPLE_RATE * 1.0  # demo clips are longer than the tests' 1 s crops
    # the head as the paper's, read back from heads.pt
    model, heads, ckpt = load_finetuned(run_dir)
    (net,) = heads.nets
    assert isinstance(net, MlpMtl) and net.shared is None and ckpt["head_net"] == "mlp-mtl"
    hidden = model.config.hidden_size
    for (name, _, k), module in zip(ckpt["net_tasks"], net.heads):
        layers = list(module)
        assert [type(m) for m in layers] == [torch.nn.Linear, torch.nn.GELU, torch.nn.Linear], name
        assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (hidden, 256, k)
    assert [t[2] for t in ckpt["net_tasks"]] == [10, 40, 8, 4]
    # the whole net was fine-tuned: the CNN feature encoder moved
    base = AutoModel.from_pretrained(setup["model"])
    conv = "feature_extractor.conv_layers.0.conv.weight"
    assert not torch.equal(dict(model.named_parameters())[conv], dict(base.named_parameters())[conv])


def test_a_chained_run_resolves_the_task_name_saves_the_chain_and_is_reused(setup: dict) -> None:
    """head_options chain "country" (a task name) through a whole run: heads.pt records the
    output names, the reloaded heads feed country's probabilities to High and Type, and a rerun
    with the same settings (a table among them) reuses the finished run."""
    from heads.finetune import finetune

    cfg = FinetuneConfig(workdir=str(setup["wd"]), model=str(setup["model"]),
                         task="avb-high,avb-type,country", frozen_epochs=1, epochs=1, batch_size=8,
                         patience=0, device="cpu", workers=1, n_boot=20, head_net="mlp-mtl",
                         head_options={"projection": "per-task", "chain": "country"},
                         output="clamp", max_seconds=0.0, run_name="chained")
    first = finetune(cfg)
    model, heads, ckpt = load_finetuned(first.run_dir)
    assert ckpt["head_options"] == {"projection": "per-task", "chain": ["country"]}
    (net,) = heads.nets
    assert net.config.chain == ("country",) and net.config.projection == "per-task"
    hidden = model.config.hidden_size
    in_dims = {name: module[0].in_features for (name, _, _), module in zip(ckpt["net_tasks"], net.heads)}
    assert in_dims == {"high": hidden + 4, "type": hidden + 4, "country": hidden}
    x = torch.randn(3, hidden)
    high, typ, country = net.heads
    fed = torch.cat([x, torch.softmax(country(x), dim=-1)], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(heads(x)["type"], typ(fed))
    again = finetune(cfg)
    assert again.resumed and again.run_dir == first.run_dir
