"""Recipes of the fine-tune stage (paper 004's ser-mtl*): the [finetune] table, the published
numbers against the paper's tables, the commands `recipes` prints, `train --recipe` refusing
them, and `finetune --recipe` running one on a tiny IEMOCAP-shaped release."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from heads.recipes import FINETUNE_KEYS, RecipeError, list_recipes, load_recipe, parse_recipe

SER = ["ser-mtl", "ser-mtl-grl-0.1", "ser-mtl-grl-1", "ser-mtl-forward-0.1", "ser-mtl-forward-1"]


def test_the_five_systems_are_finetune_recipes_with_the_papers_settings() -> None:
    names = {r.name for r in list_recipes() if r.stage == "finetune"}
    assert set(SER) <= names
    expected = {"ser-mtl": ("0", "reverse", "grl"), "ser-mtl-grl-0.1": ("0.1", "reverse", "loss"),
                "ser-mtl-grl-1": ("1", "reverse", "loss"), "ser-mtl-forward-0.1": ("0.1", "forward", "loss"),
                "ser-mtl-forward-1": ("1", "forward", "loss")}
    for name, (beta, mode, at) in expected.items():
        r = load_recipe(name)
        cfg = r.finetune_config("/tmp/wd", run_name="x")
        assert r.layout == "iemocap" and r.task == "iemocap4" and r.head == ""
        assert (cfg.lr, cfg.warmup_ratio, cfg.schedule, cfg.epochs, cfg.ctc) == (5e-5, 0.1, "linear", 100, 0.1)
        assert cfg.accumulated_batch == 8 and cfg.frozen_epochs == 0 and cfg.head_hidden == 0
        assert (cfg.adversary, cfg.adversary_mode, cfg.adversary_at) == (f"speaker:{beta}", mode, at)
        assert r.fold_protocol() == ("test-group:01F", "none")
        assert r.fold_protocol(cv="leave-one-out:speaker", cv_val="partner") == ("leave-one-out:speaker", "partner")


def test_published_numbers_are_tables_ii_and_iii() -> None:
    def test_scores(name: str) -> dict:
        (pub,) = load_recipe(name).reproduces
        assert pub.split == "test"
        return pub.scores

    assert test_scores("ser-mtl") == {"iemocap4.wa": 0.746}
    assert test_scores("ser-mtl-grl-1") == {"iemocap4.wa": 0.751, "ctc.wer_error": 0.244, "adversary.speaker_accuracy": 0.292}
    assert test_scores("ser-mtl-grl-0.1") == {"iemocap4.wa": 0.751, "ctc.wer_error": 0.247, "adversary.speaker_accuracy": 0.298}
    assert test_scores("ser-mtl-forward-1") == {"iemocap4.wa": 0.739, "ctc.wer_error": 0.243, "adversary.speaker_accuracy": 0.288}
    assert test_scores("ser-mtl-forward-0.1") == {"iemocap4.wa": 0.749, "ctc.wer_error": 0.239, "adversary.speaker_accuracy": 0.321}
    from reports.published import published_for

    pubs = {(p.system, p.metric): p.score for p in published_for("iemocap4")}
    assert pubs[("SER-MTL forward beta 0.1 (seed 004)", "speaker_accuracy")] == 0.321
    assert pubs[("SER-MTL [Ghosh et al.] beta 0 (seed 004)", "wa")] == 0.746
    assert len(pubs) == 13 and all(p.split == "test" for p in published_for("iemocap4"))


def test_fidelity_rows_name_every_stated_detail() -> None:
    for name in SER:
        f = load_recipe(name).fidelity
        rows = {r.detail: r for r in f.rows}
        assert f.file == "004_bc3e2557e40ca95b.txt" and f.authors == "Seungwon Ha"
        for detail in ("warm-up", "learning rate", "batch size", "epochs", "optimiser", "alpha",
                       "beta", "joint loss", "fold", "pooling", "ASR head", "speaker head"):
            assert rows[detail].kind == "match", (name, detail)
        assert rows["decay"].kind == "not stated" and "linear" in rows["decay"].ours
        assert rows["vocabulary"].kind == "differs"
        assert rows["checkpoint"].kind == "not stated"


def test_finetune_table_is_validated(tmp_path: Path) -> None:
    import tomllib

    text = (Path(load_recipe("ser-mtl-grl-1").path)).read_text()
    with pytest.raises(RecipeError, match=r"\[finetune\]: unknown key\(s\) \['epoch'\]"):
        parse_recipe(tomllib.loads(text.replace("epochs = 100", "epoch = 100")))
    with pytest.raises(RecipeError, match="adversary must be COLUMN:BETA"):
        parse_recipe(tomllib.loads(text.replace('adversary = "speaker:1"', 'adversary = "speaker"')))
    with pytest.raises(RecipeError, match="cv or test_group, not both"):
        parse_recipe(tomllib.loads(text.replace('test_group = "01F"', 'test_group = "01F"\ncv = "leave-one-out:speaker"')))
    with pytest.raises(RecipeError, match="unknown validation rule"):
        parse_recipe(tomllib.loads(text.replace('cv_val = "none"', 'cv_val = "nobody"')))
    with pytest.raises(RecipeError, match="features must be one backbone"):
        parse_recipe(tomllib.loads(text.replace('features = "ssl:facebook/wav2vec2-base"', 'features = "opensmile:eGeMAPSv02"')))
    with pytest.raises(RecipeError, match="warmup_ratio must be in"):
        load_recipe("ser-mtl").finetune_config(tmp_path, warmup_ratio=1.5)
    with pytest.raises(RecipeError, match="finetune --workdir .* --recipe ser-mtl"):
        load_recipe("ser-mtl").experiment_config(tmp_path)
    assert {"ctc", "adversary", "grad_accum", "warmup_ratio", "test_group", "cv_val"} <= set(FINETUNE_KEYS)


def test_recipes_command_prints_the_finetune_and_extract_commands(capsys: pytest.CaptureFixture) -> None:
    from cli.main import build_parser, main

    assert main(["recipes", "ser-mtl-forward-1"]) == 0
    out = capsys.readouterr().out
    assert "finetune (end to end) of ssl:facebook/wav2vec2-base" in out and "fold test-group:01F (Val: none)" in out
    assert "published test: iemocap4.wa 0.739, ctc.wer_error 0.243, adversary.speaker_accuracy 0.288" in out
    parser = build_parser()
    lines = [ln[ln.index("python run_pipeline.py"):] for ln in out.splitlines()
             if "python run_pipeline.py" in ln and "`" not in ln]
    extract, finetune = ([ln for ln in lines if ln.split()[2] == c][0] for c in ("extract", "finetune"))
    args = parser.parse_args(shlex.split(extract)[2:])
    assert args.layout == "iemocap" and args.features == ["ssl:facebook/wav2vec2-base"]
    args = parser.parse_args(shlex.split(finetune)[2:])
    assert args.command == "finetune" and args.recipe == "ser-mtl-forward-1"
    assert main(["recipes", "--fidelity", "ser-mtl"]) == 0
    assert "[match] schedule: warm-up" in capsys.readouterr().out


def test_train_recipe_refuses_a_finetune_recipe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    rc = main(["-q", "train", "--workdir", str(tmp_path), "--recipe", "ser-mtl-grl-1"])
    assert rc == 2 and "python run_pipeline.py finetune --workdir" in capsys.readouterr().err


def test_finetune_recipe_runs_the_papers_fold_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`finetune --recipe ser-mtl-grl-1` with a tiny backbone and 2 epochs: the paper's fold
    (Test 01F, Train the other three speakers here, no Val), CTC and the reversed adversary."""
    from cli.main import main
    from data.workdir import save_corpus_ref
    from tests.heads.test_finetune_ser import make_release, tiny_wav2vec2

    release = make_release(tmp_path / "corpus")
    wd = tmp_path / "wd"
    save_corpus_ref(wd, release, "iemocap")
    model = tiny_wav2vec2(tmp_path / "tiny")
    rc = main(["-q", "finetune", "--workdir", str(wd), "--recipe", "ser-mtl-grl-1", "--features",
               f"ssl:{model}", "--epochs", "2", "--lr", "1e-3", "--device", "cpu", "--workers", "1",
               "--run-name", "paper", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "1 fold(s) of test-group:01F (Val: none): speaker=01F" in out
    assert "iemocap4: Test uar = " in out and "ctc: Test wer_error = " in out
    assert "adversary: Train speaker_accuracy = " in out and "published test: iemocap4.wa 0.751" in out
    assert "speaker_probe: Train speaker_accuracy = " in out  # over folds, as train --cv prints
    assert "not extracted" in out
    fold = wd / "finetuned" / "paper" / "speaker_01F"
    m = json.loads((fold / "metrics.json").read_text())
    assert m["n_clips"] == {"Train": 18, "Val": 0, "Test": 6} and m["val"] is None
    assert m["stage2"]["selected_on"] == "last epoch (no Val clips)"
    assert m["recipe"]["name"] == "ser-mtl-grl-1" and m["aux"]["adversary"]["settings"]["classes"] == ["01M", "02F", "02M"]
    cfg = json.loads((fold / "config.json").read_text())["options"]
    assert cfg["epochs"] == 2 and cfg["grad_accum"] == 2 and cfg["adversary"] == "speaker:1"
    assert json.loads((wd / "finetuned" / "paper" / "cv.json").read_text())["recipe"]["name"] == "ser-mtl-grl-1"
