"""Tests for heads/recipes.py, the recipe files and the `recipes` / `train --recipe` commands.

Every recipe runs for one epoch on a 48-clip demo workdir holding openSMILE eGeMAPSv02 and a
tiny random 12-layer wav2vec2 (extract.ssl) set with layer-12 pooled vectors and frames.
Substitutions, so that the suite stays fast and offline:

* ``ssl:facebook/...`` -> the tiny wav2vec2 set (no hub download; same layer 12, same fields);
* ``opensmile:ComParE_2016`` -> eGeMAPSv02 (ComParE's "not in the store" message is tested);
* LSTM hidden sizes -> 16 (the full-size nets of every recipe are built, not trained, in
  ``test_every_recipe_builds_its_net_at_full_size``).

If ``extract.ssl`` cannot be imported, SSL recipes run on substitutes instead: eGeMAPS
functionals for vector heads and ``logmel:16`` frames for sequence heads.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from heads.experiment import run_experiment
from heads.recipes import (RECIPES_DIR, TRAIN_KEYS, RecipeError, extract_command, list_recipes,
                           load_recipe, parse_recipe)
from heads.registry import HEADS
from heads.training import Output, resolve_chain

ALL_RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
RECIPES = [r.name for r in list_recipes() if r.stage == "train"]
"""The recipes `train --recipe` runs; those of the fine-tune stage (a [finetune] table) are
tested in test_recipes_finetune.py, and with these where a test holds for every recipe."""


def _tiny_wav2vec2(folder: Path) -> Path:
    """A randomly initialised 12-layer, 16-wide wav2vec2 (group norm, like wav2vec2-base)."""
    import transformers

    config = transformers.Wav2Vec2Config(
        conv_dim=(8,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        hidden_size=16, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32,
        num_conv_pos_embedding_groups=4, num_conv_pos_embeddings=8, feat_extract_norm="group",
        do_stable_layer_norm=False)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                                          do_normalize=True, return_attention_mask=False
                                          ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """48 demo clips (A-VB layout) with eGeMAPS and a tiny SSL set (or substitutes)."""
    from data.corpora import read_corpus
    from data.demo import make_demo_corpus
    from data.workdir import save_corpus_ref
    from extract.base import ExtractOptions
    from extract.run import extract_corpus
    from extract.store import FeatureStore

    wd = tmp_path_factory.mktemp("demo")
    root = make_demo_corpus(wd / "corpus", n_clips=48)
    save_corpus_ref(wd, root, "avb")
    corpus = read_corpus(root, "avb")
    store = FeatureStore(wd)
    extract_corpus(store, corpus, "opensmile:eGeMAPSv02", options=ExtractOptions(workers=1))
    extract_corpus(store, corpus, "logmel:16", options=ExtractOptions(workers=1))  # the CNN recipes
    try:
        from extract.ssl import SSLExtractor  # noqa: F401
    except ImportError:  # SSL extraction not available: substitutes (see the module docstring)
        extract_corpus(store, corpus, "logmel:16", options=ExtractOptions(workers=1))
        return {"workdir": wd, "ssl": None, "vector": "opensmile:eGeMAPSv02", "frames": "logmel:16",
                "layer": None, "frames_field": "logmel"}
    spec = f"ssl:{_tiny_wav2vec2(wd / 'tiny-wav2vec2')}"
    extract_corpus(store, corpus, spec, options=ExtractOptions(
        layers=(12,), poolings=("mean",), frames_layers=(12,), dtype="float32", device="cpu"))
    return {"workdir": wd, "ssl": spec, "vector": spec, "frames": spec, "layer": 12,
            "frames_field": "frames_l12"}


def _overrides(recipe, demo: dict) -> dict:
    """What the demo workdir needs changed (see the module docstring); one epoch, one seed."""
    out: dict = {"epochs": 1, "seeds": 1, "device": "cpu"}
    sequence = HEADS[recipe.head].input_kind == "sequence"
    features = []
    for f in recipe.features:
        if f.startswith("logmel:"):  # the spectrogram CNNs: 16 bands, tiny widths
            features.append("logmel:16")
            continue
        if f.startswith("ssl:"):
            features.append(demo["frames"] if sequence else demo["vector"])
            if demo["ssl"] is None:
                out["layer"] = None
                if sequence:
                    out["frames_field"] = demo["frames_field"]
        else:
            features.append("opensmile:eGeMAPSv02")
    out["features"] = tuple(features)
    if recipe.head == "lstm":
        out["net"] = {**recipe.options.get("net", {}), "hidden": 16}
    if recipe.head in ("resnet18", "resnet34", "resnet50"):
        out["net"] = {**recipe.options.get("net", {}), "width": 4}
    if recipe.head == "cnn-exits":
        out["net"] = {**recipe.options.get("net", {}), "channels": (4, 4, 4, 4, 4)}
    return out


def test_recipe_files_cover_the_reproduced_systems() -> None:
    names = set(RECIPES)
    assert {"avb-baseline-compare", "avb-baseline-egemaps", "exvo-baseline-compare",
            "exvo-baseline-egemaps", "slabcnu-lstm"} <= names
    assert {f"hcmlab-mtl-{v}" for v in ("0of5", "1of4", "2of3", "no-two", "no-two-clamp")} <= names
    assert {f"slabcnu-lstm-{p}" for p in ("first", "max", "mean")} <= names
    for head in ("fc128", "lstm128", "netvlad", "autopool", "mean3"):
        assert {f"conformer-{head}", f"conformer-{head}-st"} <= names
    assert {f"exvo-mlp-{w}" for w in ("equal", "uw", "ruw", "rruw", "dwa", "druw")} <= names
    assert {"exvo-resnet50", "exvo-resnet50-mtl"} <= names
    assert {"exvo-cnn-st", "exvo-resnet34-mtl", "hcmlab-mtl-b960h", "slabcnu-lstm-lv60k",
            "slabcnu-lstm-xlsr53"} <= names
    recipes = {r.name: r for r in list_recipes()}
    assert recipes["slabcnu-lstm-xlsr53"].reproduces[1].scores["avb-two"] == 0.6202
    assert recipes["exvo-baseline-compare"].reproduces[0].scores["exvo"] == 0.349
    assert recipes["hcmlab-mtl-2of3"].options["chain"] == "country,type"
    assert recipes["avb-baseline-egemaps"].options["batch_size"] == 8


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_builds_its_net_at_full_size(name: str) -> None:
    from data.tasks import parse_tasks
    from heads.nets import build_net
    from heads.config import TrainOptions

    r = load_recipe(name)
    opts = TrainOptions.from_dict(r.options)
    tasks = parse_tasks(r.task)
    outputs = [Output(tg.name, t.name, tg, "ccc") for t in tasks for tg in t.targets]
    groups = [[o] for o in outputs] if opts.separate else [outputs]
    options = dict(opts.net)
    if opts.output:
        options["output"] = opts.output
    if opts.chain:
        options["chain"] = resolve_chain(opts.chain, outputs)
    for group in groups:
        net = build_net(r.head, 768, [o.spec() for o in group], **options)
        assert list(net(*_dummy_input(net))) == [o.name for o in group]


def _dummy_input(net) -> tuple:
    if net.input_kind == "vector":
        return (torch.zeros(2, net.input_dim),)
    return torch.zeros(2, 3, net.input_dim), torch.tensor([3, 1])


# IEMOCAP recipes (paper 004) need an IEMOCAP corpus: tests/heads/test_ser_recipes.py runs them
DEMO_RECIPES = [n for n in RECIPES if load_recipe(n).layout != "iemocap"]


@pytest.mark.parametrize("name", DEMO_RECIPES)
def test_every_recipe_runs_one_epoch_on_the_demo_workdir(name: str, demo: dict) -> None:
    r = load_recipe(name)
    cfg = r.experiment_config(demo["workdir"], run_name=f"t-{name}", n_boot=0, **_overrides(r, demo))
    result = run_experiment(cfg)
    run = result.run_dir
    assert isinstance(result.metrics["val"]["score"], float)
    assert set(result.metrics["tasks"]) == {t.strip() for t in r.task.split(",")}
    assert list(run.glob("model_seed0*.pt")) and list(run.glob("curves_seed0*.json"))
    curves = json.loads(sorted(run.glob("curves_seed0*.json"))[0].read_text())
    assert curves["epoch"] == [0] and curves["task_weights"]
    assert (run / f"predictions_test_{r.task.split(',')[0]}.csv").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["epochs"] == 1


def test_unknown_keys_fail_naming_the_valid_ones(tmp_path: Path) -> None:
    good = (RECIPES_DIR / "exvo-baseline-egemaps.toml").read_text()
    with pytest.raises(RecipeError, match=r"\[train\]: unknown key\(s\) \['epoch'\]; valid keys: task"):
        parse_recipe(_toml(good.replace("epochs = 20", "epoch = 20")))
    with pytest.raises(RecipeError, match=r"\[recipe\]: unknown key\(s\) \['papers'\]"):
        parse_recipe(_toml(good.replace("paper =", "papers =")))
    with pytest.raises(RecipeError, match="optimizer must be one of"):
        parse_recipe(_toml(good.replace('optimizer = "adam"', 'optimizer = "sgd"')))
    bad = tmp_path / "renamed.toml"
    bad.write_text(good)
    with pytest.raises(RecipeError, match="must equal the file name"):
        load_recipe(str(bad))
    with pytest.raises(RecipeError, match="no recipe 'nope'.*available: avb-baseline-compare"):
        load_recipe("nope")
    r = load_recipe("exvo-baseline-egemaps")
    with pytest.raises(RecipeError, match="unknown override"):
        r.experiment_config(tmp_path, epochz=1)
    assert "epochs" in TRAIN_KEYS and "seeds" in TRAIN_KEYS


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_missing_features_name_the_extract_command(demo: dict, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    wd = str(demo["workdir"])
    rc = main(["-q", "train", "--workdir", wd, "--recipe", "avb-baseline-compare", "--n-boot", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    root = str(Path(wd) / "corpus")
    assert (f"python run_pipeline.py extract --corpus {root} --layout avb --workdir {wd} "
            f"--features opensmile:ComParE_2016") in err
    # a sequence recipe whose set has no frames says how to store them
    cmd = extract_command("/w", "ssl:facebook/wav2vec2-base", layer=12, frames_field="frames_l12")
    assert cmd.endswith("--features ssl:facebook/wav2vec2-base --layers 12 --poolings mean --frames-layers 12")
    if demo["ssl"] is not None:
        rc = main(["-q", "train", "--workdir", wd, "--recipe", "slabcnu-lstm", "--features",
                   "opensmile:eGeMAPSv02", "--n-boot", "0"])
        assert rc == 2 and "needs frame sequences" in capsys.readouterr().err


def test_cli_recipe_flags_override_the_recipe(demo: dict, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    wd = demo["workdir"]
    rc = main(["-q", "train", "--workdir", str(wd), "--recipe", "exvo-baseline-egemaps", "--epochs",
               "1", "--seeds", "1", "--n-boot", "0", "--weighting", "uw", "--run-name", "cli"])
    out = capsys.readouterr().out
    assert rc == 0 and "published test: exvo 0.314" in out
    config = json.loads((wd / "runs" / "cli" / "config.json").read_text())
    assert config["options"]["epochs"] == 1 and config["options"]["weighting"] == "uw"
    assert config["options"]["batch_size"] == 8 and config["seeds"] == 1  # recipe, flags
    assert config["head"] == "mlp-avb"
    # torch options with a classical head are a usage error
    rc = main(["-q", "train", "--workdir", str(wd), "--task", "avb-high", "--features",
               "opensmile:eGeMAPSv02", "--head", "ridge", "--epochs", "3"])
    assert rc == 2 and "torch heads only" in capsys.readouterr().err


def test_recipes_command_lists_every_recipe(capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ALL_RECIPES:
        assert f"\n{name}\n" in f"\n{out}"
    assert "published test: avb-two 0.6202" in out and f"{len(ALL_RECIPES)} recipes" in out
    assert main(["recipes", "slabcnu-lstm"]) == 0
    assert "weight_decay = 0.0625" in capsys.readouterr().out


def test_frames_stream_from_the_store_when_over_the_memory_budget(demo: dict) -> None:
    from extract.store import FeatureStore
    from heads.sequences import InMemorySequences, StoreSequences, load_sequences

    if demo["ssl"] is None:
        pytest.skip("needs extract.ssl frames with a num_frames field")
    store = FeatureStore(demo["workdir"])
    ids = sorted(store.status(store.find(demo["ssl"]).key)[0])[:10]
    lazy, present, desc = load_sequences(store, [demo["ssl"]], ids, layer=12, max_memory_gb=0.0)
    eager, present2, _ = load_sequences(store, [demo["ssl"]], ids, layer=12)
    assert isinstance(lazy, StoreSequences) and isinstance(eager, InMemorySequences)
    assert desc["field"] == "frames_l12" and present.all() and present2.all()
    for a, b in zip(lazy.rows(range(10)), eager.rows(range(10))):
        assert a.shape == b.shape and (a == b).all()


# -- published numbers and the fidelity tables ---------------------------------------------------
PAPERS = RECIPES_DIR.parents[1] / "shared" / "papers"


def _scores(name: str, split: str = "val") -> dict:
    return next(p.scores for p in load_recipe(name).reproduces if p.split == split)


def test_published_numbers_are_the_papers_tables() -> None:
    """Each recipe carries its own row of its paper's table (checked by hand against the text)."""
    table1 = {"equal": 0.405, "uw": 0.406, "ruw": 0.414, "rruw": 0.421, "dwa": 0.419, "druw": 0.423, "st": 0.418}
    for w, hm in table1.items():  # seed 003, Table 1, validation H-Mean
        assert _scores(f"exvo-cnn-{w}")["exvo"] == hm
    assert _scores("exvo-cnn-druw", "test") == {"exvo": 0.394}
    assert _scores("exvo-cnn-st") == {"exvo": 0.418, "emotion CCC": 0.645, "country UAR": 0.588, "age MAE": 3.926}
    seed001 = {"exvo-resnet18": 0.416, "exvo-resnet18-mtl": 0.377, "exvo-resnet34": 0.414,
               "exvo-resnet34-mtl": 0.379, "exvo-resnet50": 0.412, "exvo-resnet50-mtl": 0.385,
               "conformer-mean3": 0.424, "conformer-fc128": 0.421,
               "conformer-lstm128": 0.392, "conformer-netvlad": 0.419, "conformer-autopool": 0.417,
               "conformer-mean3-st": 0.432}
    for name, hm in seed001.items():
        assert _scores(name)["exvo"] == hm
    assert _scores("exvo-resnet50") == {"exvo": 0.412, "emotion CCC": 0.620, "country UAR": 0.540, "age MAE": 3.818}
    assert _scores("exvo-resnet50-mtl") == {"exvo": 0.385, "emotion CCC": 0.569, "country UAR": 0.513, "age MAE": 4.093}
    for head in ("fc128", "lstm128", "netvlad", "autopool"):  # no single-task row in Table 1
        assert _scores(f"conformer-{head}-st") == {}
    assert _scores("hcmlab-mtl-no-two-clamp", "test") == {"avb-high": 0.685, "avb-culture": 0.515, "avb-type": 0.586}
    assert _scores("hcmlab-mtl-b960h", "test") == {"avb-high": 0.679, "avb-culture": 0.526, "avb-type": 0.573}
    assert _scores("hcmlab-mtl-0of5")["avb-high"] == 0.650
    for name in ("hcmlab-mtl-0of5", "hcmlab-mtl-no-two", "hcmlab-mtl-b960h"):
        assert "after fine-tuning" in load_recipe(name).reproduces[0].note
    assert load_recipe("slabcnu-lstm-lv60k").features == ("ssl:facebook/wav2vec2-large-lv60",)
    assert load_recipe("slabcnu-lstm-xlsr53").features == ("ssl:facebook/wav2vec2-large-xlsr-53",)
    base = load_recipe("slabcnu-lstm")
    assert base.features == ("ssl:facebook/wav2vec2-base",) and "cheaper" in base.description
    assert _scores("slabcnu-lstm") == {"avb-two": 0.5465, "avb-high": 0.5869, "avb-culture": 0.4718, "avb-type": 0.4165}
    assert _scores("exvo-baseline-egemaps")["exvo"] == 0.324


def _normalised(text: str) -> str:
    import re

    return re.sub(r"\s+", " ", text).strip().lower()


@pytest.mark.skipif(not PAPERS.is_dir(), reason="../shared/papers is not here")
@pytest.mark.parametrize("name", ALL_RECIPES)
def test_fidelity_quotes_and_numbers_are_in_the_paper(name: str) -> None:
    """Every quote is the paper's own words (pieces joined by ' ... '), every published number
    appears in the text of the paper (or, for the organisers' baselines, of a paper citing them)."""
    import re

    texts = {p.name: _normalised(p.read_text(encoding="utf-8")) for p in PAPERS.glob("*.txt")}
    notes = PAPERS.parent / "FIELD_NOTES.md"
    if notes.exists():
        texts["FIELD_NOTES.md"] = _normalised(notes.read_text(encoding="utf-8"))
    r = load_recipe(name)
    f = r.fidelity
    for row in f.rows:
        source = row.source.split()[0]
        if row.quote == "not stated" or source not in texts:
            continue
        for piece in row.quote.split(" ... "):
            piece = re.sub(r"\s*\(Eq\. \d\)$", "", piece)
            assert _normalised(piece) in texts[source], (row.detail, piece)
    pool = texts.get(f.file, "") if f.file != "FIELD_NOTES.md" else " ".join(texts.values())
    for pub in r.reproduces:
        for key, value in pub.scores.items():
            for v in (value if isinstance(value, tuple) else (value,)):
                forms = {f"{v:.3f}", f"{v:.3f}".lstrip("0"), f"{v:.4f}", f"{100 * v:.2f}", f"{v:g}"}
                assert any(x in pool for x in forms), (key, v)


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_every_recipe_has_a_fidelity_table(name: str) -> None:
    from heads.recipes import FIDELITY_ASPECTS, STATUSES

    f = load_recipe(name).fidelity
    assert f is not None and f.authors and f.title and f.venue and f.id and f.table
    assert f.file == "FIELD_NOTES.md" or (f.file[:3].isdigit() and f.file.endswith(".txt"))
    counts = f.counts()
    assert set(counts) == set(STATUSES) and sum(counts.values()) == len(f.rows)
    assert {r.aspect for r in f.rows} <= set(FIDELITY_ASPECTS)
    for row in f.rows:
        if row.kind in ("option", "differs"):
            assert len(row.status.split(":", 1)[1].strip()) > 10  # says why


def _with_fidelity(rows: list[dict]) -> dict:
    import tomllib

    data = tomllib.loads((RECIPES_DIR / "exvo-cnn-druw.toml").read_text())
    data["fidelity"]["rows"] = rows
    return data


def test_fidelity_table_is_validated() -> None:
    import tomllib

    data = tomllib.loads((RECIPES_DIR / "exvo-cnn-druw.toml").read_text())
    rows = data["fidelity"]["rows"]
    r = parse_recipe(data)
    assert r.fidelity.counts() == {"match": 17, "option": 2, "differs": 0, "not stated": 17}
    row = dict(rows[0])
    with pytest.raises(RecipeError, match="status must be"):
        parse_recipe(_with_fidelity([{**row, "status": "differs"}] + rows[1:]))  # no reason
    with pytest.raises(RecipeError, match="status must be"):
        parse_recipe(_with_fidelity([{**row, "status": "close enough"}] + rows[1:]))
    with pytest.raises(RecipeError, match="disagree"):
        parse_recipe(_with_fidelity([{**row, "quote": "not stated"}] + rows[1:]))
    with pytest.raises(RecipeError, match="aspect must be one of"):
        parse_recipe(_with_fidelity([{**row, "aspect": "vibes"}] + rows[1:]))
    with pytest.raises(RecipeError, match="appears twice"):
        parse_recipe(_with_fidelity([row, row] + rows[1:]))
    with pytest.raises(RecipeError, match=r"unknown key\(s\) \['why'\]"):
        parse_recipe(_with_fidelity([{**row, "why": "x"}] + rows[1:]))
    with pytest.raises(RecipeError, match="no row for spectrogram"):
        parse_recipe(_with_fidelity([x for x in rows if x["aspect"] != "spectrogram"]))
    with pytest.raises(RecipeError, match="no row for optimiser, lr"):
        parse_recipe(_with_fidelity([x for x in rows if x["aspect"] not in ("optimiser", "lr")]))
    no_title = tomllib.loads((RECIPES_DIR / "exvo-cnn-druw.toml").read_text())
    del no_title["fidelity"]["title"]
    with pytest.raises(RecipeError, match="title"):
        parse_recipe(no_title)


def test_recipes_fidelity_command(capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    assert main(["recipes", "--fidelity", "exvo-cnn-rruw"]) == 0
    out = capsys.readouterr().out
    assert "Dynamic Restrained Uncertainty Weighting Loss" in out and "003_703426222e9491b4.txt" in out
    assert "[match] weighting: restraint (Eq. 4)" in out and "[option] weighting: RUW regulariser" in out
    assert "14 match, 1 option, 0 differs, 17 not stated" in out
    assert main(["recipes", "--fidelity"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALL_RECIPES) and "exvo-cnn-druw" in out
    assert main(["recipes", "--fidelity", "nope"]) == 2


# ------------------------------------------------- citations and commands (issue 14 point 11)
NO_ARXIV = {"004_bc3e2557e40ca95b.txt": "https://github.com/haseungwon/Nlp"}
PAPER_IDS = {"000_541d76b1ef8946d0.txt": "arXiv:2209.13914", "001_241d37b03409d150.txt": "arXiv:2206.12494",
             "002_e3da139e7ea44eaa.txt": "arXiv:2210.00263", "003_703426222e9491b4.txt": "arXiv:2206.11049"}


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_name_shows_the_citation_table_and_a_valid_extract_command(
        name: str, capsys: pytest.CaptureFixture) -> None:
    import re
    import shlex

    from cli.main import build_parser, main

    r = load_recipe(name)
    f = r.fidelity
    assert f.authors and f.title and f.venue and f.table and r.layout in ("avb", "exvo", "iemocap")
    if f.file in NO_ARXIV:  # paper 004 names only its code repository
        assert f.id == NO_ARXIV[f.file]
    else:
        assert re.match(r"^arXiv:\d{4}\.\d{5}\b", f.id), f.id  # the other papers have an arXiv id
    if f.file in PAPER_IDS:
        assert f.id.startswith(PAPER_IDS[f.file])
        if PAPERS.is_dir():  # the title and the first author are the paper's own header
            head = _normalised((PAPERS / f.file).read_text(encoding="utf-8")[:3000])
            assert _normalised(f.title) in head and _normalised(f.authors.split(",")[0]) in head
    assert main(["recipes", name]) == 0
    out = capsys.readouterr().out
    assert f"paper:      {f.authors}, \"{f.title}\", {f.venue} ({f.id})" in out
    assert f"reproduces: {r.table}" in out
    assert not re.search(r"seed 00\d|no number in the notes", out, flags=re.I)
    commands = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("python run_pipeline.py extract")]
    assert len(commands) == len(r.features)
    parser = build_parser()
    for cmd, spec in zip(commands, r.features):
        args = parser.parse_args(shlex.split(cmd)[2:])  # the real parser accepts it as printed
        assert args.command == "extract" and args.features == [spec] and args.layout == r.layout
        if spec.startswith("ssl:") and HEADS[r.head].input_kind == "sequence":
            assert args.frames_layers == str(r.layer if r.layer is not None else "")


def test_a_printed_extract_command_runs_and_train_then_finds_its_features(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shlex
    import sys

    from cli.main import main
    from data.demo import make_demo_corpus
    from data.workdir import save_corpus_ref

    wd = tmp_path / "wd"
    root = make_demo_corpus(tmp_path / "corpus", n_clips=12)
    save_corpus_ref(wd, root, "avb")
    assert main(["recipes", "avb-baseline-egemaps", "--workdir", str(wd)]) == 0
    out = capsys.readouterr().out
    (cmd,) = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("python run_pipeline.py extract")]
    assert f"--corpus {root} --layout avb --workdir {wd} --features opensmile:eGeMAPSv02" in cmd
    import subprocess

    p = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=Path(__file__).resolve().parents[2],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "12 clips" in p.stdout
    rc = main(["-q", "train", "--workdir", str(wd), "--recipe", "avb-baseline-egemaps", "--epochs", "1",
               "--seeds", "1", "--n-boot", "0", "--task", "avb-type", "--run-name", "r"])
    assert rc == 0, capsys.readouterr().err


def test_recipe_on_another_task_drops_what_no_longer_applies(demo: dict, capsys: pytest.CaptureFixture) -> None:
    """exvo-baseline-egemaps names age in its loss and carries the ExVo published numbers: on
    avb-two (another task) both no longer apply; the run is named after its own settings."""
    from cli.main import main

    wd = demo["workdir"]
    r = load_recipe("exvo-baseline-egemaps")
    use = r.reuse("avb-two")
    assert not use.same_task and use.published == () and use.options["loss"] == "mse"
    assert r.reuse("exvo").same_task and r.reuse("exvo").published == r.reproduces
    assert r.reuse("avb-two", given={"loss"}).options["loss"] == "mse,age=mse"  # a flag is kept
    w = next(x for x in RECIPES if str(load_recipe(x).options.get("weighting", "")).startswith("fixed:"))
    assert "weighting" not in load_recipe(w).reuse("avb-two").options, w  # 3 weights, 1 target
    years = load_recipe("exvo-resnet18").reuse("avb-high")  # age in years: no age in avb-high
    assert years.options["unscaled"] == [] and any(d.startswith("unscaled age: age not a target") for d in years.dropped)
    assert load_recipe("exvo-resnet18").reuse("exvo,avb-high").options["unscaled"] == ["age"]
    chain = load_recipe("hcmlab-mtl-2of3").reuse("avb-high,avb-two")
    assert "chain" not in chain.options and any(d.startswith("chain 'country,type'") for d in chain.dropped)

    runs = set((wd / "runs").glob("*")) if (wd / "runs").exists() else set()
    rc = main(["-q", "train", "--workdir", str(wd), "--recipe", "exvo-baseline-egemaps", "--task", "avb-two",
               "--epochs", "1", "--seeds", "1", "--n-boot", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "no longer applies:" in out and "loss 'mse,age=mse': age not a target of avb-two" in out
    assert "published numbers not shown" in out and "published test" not in out
    (new,) = set((wd / "runs").glob("*")) - runs
    assert not new.name.endswith("-exvo-baseline-egemaps") and "avb-two" in new.name
    m = json.loads((new / "metrics.json").read_text())
    assert m["recipe"]["name"] == "exvo-baseline-egemaps" and m["recipe"]["published"] == []
    assert m["recipe"]["same_task"] is False and m["recipe"]["run_task"] == "avb-two"
    assert json.loads((new / "config.json").read_text())["options"]["loss"] == "mse"
    # on its own task the published comparison stays and is recorded
    rc = main(["-q", "train", "--workdir", str(wd), "--recipe", "exvo-baseline-egemaps", "--epochs", "1",
               "--seeds", "1", "--n-boot", "0", "--run-name", "own"])
    assert rc == 0 and "published test: exvo 0.314" in capsys.readouterr().out
    m = json.loads((wd / "runs" / "own" / "metrics.json").read_text())
    assert m["recipe"]["same_task"] and {"split": "test", "scores": {"exvo": 0.314}, "note": r.reproduces[1].note} in m["recipe"]["published"]


# -- paper 001: 2.5 s windows, age in years, the paper's task weights (issue 12) ----------------
CONFORMERS = [f"conformer-{h}{s}" for h in ("fc128", "lstm128", "netvlad", "autopool", "mean3") for s in ("", "-st")]
PAPER_001 = CONFORMERS + [f"exvo-resnet{d}{s}" for d in (18, 34, 50) for s in ("", "-mtl")]


def test_conformer_recipes_run_their_nets_on_2_5_s_window_means() -> None:
    """Every Conformer recipe's net averages 125-frame windows first: its output on 300 frames
    equals the same net (window_frames 0) on the three window means computed here by hand."""
    from heads.config import TrainOptions
    from heads.nets import build_net

    tasks = [("emotion", "regression", 10), ("country", "classification", 4), ("age", "regression", 1)]
    torch.manual_seed(0)
    x = torch.randn(2, 300, 8)
    lengths = torch.tensor([300, 130])
    x[1, 130:] = 0.0
    by_hand = torch.stack([x[0, :125].mean(0), x[0, 125:250].mean(0), x[0, 250:].mean(0)])
    short = torch.stack([x[1, :125].mean(0), x[1, 125:130].mean(0), torch.zeros(8)])
    for name in CONFORMERS:
        r = load_recipe(name)
        opts = TrainOptions.from_dict(r.options)
        assert opts.net["window_frames"] == 125, name
        net = build_net(r.head, 8, tasks, **dict(opts.net)).eval()
        assert net.config.window_frames == 125
        if r.head == "fc128":
            assert net.config.order == "pool-fc"  # the FC on the averaged feature
        if r.head == "autopool":
            assert net.config.pool == "features" and net.alpha.shape == (8,)
        plain = build_net(r.head, 8, tasks, **{**dict(opts.net), "window_frames": 0}).eval()
        plain.load_state_dict(net.state_dict())
        with torch.no_grad():
            got, want = net(x, lengths), plain(torch.stack([by_hand, short]), torch.tensor([3, 2]))
        for task in got:
            torch.testing.assert_close(got[task], want[task], atol=1e-5, rtol=1e-5)


def test_paper_001_recipes_train_age_in_years_with_the_papers_weights() -> None:
    from data.tasks import parse_tasks
    from heads.config import TrainOptions
    from heads.training.weighting import build_weighting

    assert [tg.name for t in parse_tasks("exvo") for tg in t.targets] == ["emotion", "country", "age"]
    for name in PAPER_001:
        r = load_recipe(name)
        opts = TrainOptions.from_dict(r.options)
        assert opts.unscaled == ("age",) and opts.output == "linear", name
        text = (RECIPES_DIR / f"{name}.toml").read_text()
        assert "18.05" not in text and "next wave" not in text, name
        if opts.separate:
            assert opts.weighting == "equal"
            continue
        weights = build_weighting(opts.weighting, 3).weights()
        assert [round(float(w), 6) for w in weights] == [5.0, 0.05, 0.05], name
        assert {row.detail: row.status for row in r.fidelity.rows}["age target"] == "match"


def test_train_recipe_conformer_autopool_windows_frames_and_keeps_age_in_years(
        demo: dict, capsys: pytest.CaptureFixture) -> None:
    """`train --recipe conformer-autopool` through the command line: the saved net pools the
    features over 2.5 s windows, age's label range is the identity (years), and the task
    weights are the paper's 5 / 0.05 / 0.05."""
    from cli.main import main

    wd = demo["workdir"]
    if demo["ssl"] is None:
        pytest.skip("needs extract.ssl layer-12 frames")
    rc = main(["-q", "train", "--workdir", str(wd), "--recipe", "conformer-autopool", "--features",
               demo["ssl"], "--epochs", "1", "--seeds", "1", "--n-boot", "0", "--run-name", "autopool"])
    assert rc == 0, capsys.readouterr().err
    run = wd / "runs" / "autopool"
    ckpt = torch.load(run / "model_seed0.pt", weights_only=False)
    assert ckpt["head"] == "autopool" and ckpt["weighting_spec"] == "fixed:5,0.05,0.05"
    assert ckpt["net_config"]["window_frames"] == 125 and ckpt["net_config"]["pool"] == "features"
    assert tuple(ckpt["options"]["unscaled"]) == ("age",)
    outputs = {o["name"]: o for o in ckpt["outputs"]}
    assert outputs["age"]["lo"] == (0.0,) and outputs["age"]["hi"] == (1.0,)  # years, not [0, 1]
    curves = json.loads((run / "curves_seed0.json").read_text())
    assert {k: [round(w, 6) for w in v] for k, v in curves["task_weights"].items()} == {
        "emotion": [5.0], "country": [0.05], "age": [0.05]}


def test_an_age_in_years_recipe_runs_on_a_task_without_age(demo: dict, capsys: pytest.CaptureFixture) -> None:
    """exvo-resnet18 trains age unscaled; on avb-high (no age) that no longer applies and the
    run trains instead of failing on an unknown unscaled name."""
    from cli.main import main

    rc = main(["-q", "train", "--workdir", str(demo["workdir"]), "--recipe", "exvo-resnet18", "--task",
               "avb-high", "--features", "logmel:16", "--net", "width=4", "--epochs", "1", "--seeds",
               "1", "--n-boot", "0", "--run-name", "years-elsewhere"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "unscaled age: age not a target of avb-high; none" in out
    config = json.loads((demo["workdir"] / "runs" / "years-elsewhere" / "config.json").read_text())
    assert list(config["options"]["unscaled"]) == []
