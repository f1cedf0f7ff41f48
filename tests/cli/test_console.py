"""The console as a user sees it: log lines never run into progress bars (captured and on a
terminal), no bars or chatter of transformers, torch heads draw a bar instead of a line per
epoch, --version, help texts, no run folder left by a failed run, and a hub id that is not
cached fails at once when no network answers."""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from data.demo import make_demo_corpus
from tests.extract.conftest import build_tiny_model

from clitools import ROOT, cli, cli_in_terminal, terminal_lines

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")
LOG_ANYWHERE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
BAR = re.compile(r"\d+%\||\|\s*\d+/\d+ \[")


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("console")
    corpus = make_demo_corpus(base / "corpus", n_clips=24, seed=5)
    model = build_tiny_model("wav2vec2-group", base / "tiny-w2v2")
    return corpus, model


def _extract_args(corpus: Path, model: Path, wd: Path) -> list[str]:
    return ["extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
            "--workers", "1", "--features", "opensmile:eGeMAPSv02", f"ssl:{model}"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, corpus_and_model):
    """A workdir extracted with INFO logging on captured (not terminal) stderr."""
    corpus, model = corpus_and_model
    wd = tmp_path_factory.mktemp("wd") / "wd"
    p = cli(*_extract_args(corpus, model, wd), quiet=False)
    return wd, p


def test_captured_log_has_whole_lines_only(extracted):
    _, p = extracted
    assert "\r" not in p.stderr, "a progress bar redraw reached a log file"
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines and all(LOG_LINE.match(line) for line in lines), "\n".join(
        line for line in lines if not LOG_LINE.match(line))
    # the clip progress is a plain line per set (off a terminal), the libraries' bars are gone
    assert any("cli.progress: opensmile:eGeMAPSv02: 24/24 clips" in line for line in lines)
    for fragment in ("Loading weights", "Writing model shards", "it/s]"):
        assert fragment not in p.stderr, fragment


def test_terminal_shows_bars_and_log_lines_apart(tmp_path, corpus_and_model):
    corpus, model = corpus_and_model
    rc, _, raw = cli_in_terminal(*_extract_args(corpus, model, tmp_path / "wd"))
    assert rc == 0, raw[-3000:]
    assert BAR.search(raw), "no progress bar on a terminal"
    shown = terminal_lines(raw)
    glued = [line for line in shown if LOG_ANYWHERE.search(line)
             and (BAR.search(line) or not LOG_LINE.match(line))]
    assert not glued, "log lines glued to bar fragments:\n" + "\n".join(glued)
    assert any(LOG_LINE.match(line) and "extract.run" in line for line in shown)
    assert "Loading weights" not in raw


def test_torch_head_logs_a_line_per_seed_and_draws_an_epoch_bar(extracted):
    wd, _ = extracted
    args = ["train", "--workdir", str(wd), "--task", "avb-high", "--features",
            "opensmile:eGeMAPSv02", "--head", "mlp-avb", "--epochs", "25", "--patience", "0",
            "--seeds", "2", "--n-boot", "20"]
    p = cli(*args, "--run-name", "captured", quiet=False)
    epoch_lines = [line for line in p.stderr.splitlines() if re.search(r"epoch \d+/25", line)]
    # off a terminal: the first and the last epoch of each seed (a line at most every 15 s)
    assert 2 <= len(epoch_lines) <= 4 + 2, "\n".join(epoch_lines)
    summaries = [line for line in p.stderr.splitlines() if "heads.training.loop" in line
                 and "25 epoch(s)" in line]
    assert len(summaries) == 2, p.stderr
    rc, _, raw = cli_in_terminal(*args, "--run-name", "terminal")
    assert rc == 0, raw[-3000:]
    assert re.search(r"mlp-avb seed0:\s+\d+%\|", raw) and re.search(r"\d+/25 \[", raw), raw[-2000:]
    assert not [line for line in terminal_lines(raw) if re.search(r"epoch \d+/25 seed", line)]


def test_version_prints_the_project_version():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    p = cli("--version")
    assert re.match(rf"vocal-probe {re.escape(version)} \(Python \d", p.stdout), p.stdout
    assert "torch " in p.stdout and "transformers " in p.stdout and p.stdout.count("\n") == 1


def test_no_help_text_shows_a_doubled_percent_sign(capsys):
    """Every command's --help, printed by the real parser (in this process: one start each
    would cost minutes); `train --help` (which had one) also through the command line."""
    from cli.main import COMMANDS, main

    for command in dict.fromkeys(COMMANDS):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert "usage:" in text and "%%" not in text, (command, text)
    p = cli("train", "--help")
    assert "bootstrap 95 % CI" in " ".join(p.stdout.split())


def test_a_failed_train_leaves_no_run_folder_and_keeps_earlier_results(extracted):
    wd, _ = extracted
    base = ["train", "--workdir", str(wd), "--task", "avb-high", "--features",
            "opensmile:eGeMAPSv02", "--head", "mlp-avb", "--epochs", "2", "--n-boot", "10"]
    # the net refuses an unknown setting while the run is being fitted (after its folder exists)
    p = cli(*base, "--net", "no_such_setting=3", "--run-name", "fails", check=2)
    assert "no_such_setting" in p.stderr
    assert not (wd / "runs" / "fails").exists()
    # the same failure under the name of a finished run: its results stay
    cli(*base, "--run-name", "done")
    before = sorted(x.name for x in (wd / "runs" / "done").iterdir())
    cli(*base, "--net", "no_such_setting=3", "--run-name", "done", check=2)
    assert (wd / "runs" / "done" / "metrics.json").exists()
    assert sorted(x.name for x in (wd / "runs" / "done").iterdir()) == before
    json.loads((wd / "runs" / "done" / "metrics.json").read_text())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hub_id_not_cached_fails_at_once_when_no_network_answers(tmp_path, corpus_and_model):
    corpus, _ = corpus_and_model
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-empty"),
           "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(var, None)
    t0 = time.perf_counter()
    cli("--version", env=env)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir",
            str(tmp_path / "wd"), "--features", "ssl:no-such-org/not-cached-model", env=env,
            check=2, quiet=False)
    elapsed = time.perf_counter() - t0
    # huggingface_hub alone retries for about 25 s; the probe gives up after 3 s
    assert elapsed < startup + 12, (elapsed, startup)
    assert "cannot be reached" in p.stderr and "`hf download no-such-org/not-cached-model`" in p.stderr
    assert "Retrying" not in p.stderr
    assert not (tmp_path / "wd" / "features.h5").exists() and not (tmp_path / "wd" / "features").exists()


if sys.version_info < (3, 11):  # tomllib
    test_version_prints_the_project_version = pytest.mark.skip("needs Python 3.11")(
        test_version_prints_the_project_version)
