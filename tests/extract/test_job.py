"""extract_workdir(): what it tells its listener, what it returns, what it refuses (before
writing anything)."""
from __future__ import annotations

import json

import pytest

from data.demo import make_demo_corpus
from extract.base import ExtractOptions
from extract.job import ExtractJob, ExtractJobError, ExtractListener, extract_workdir
from extract.lock import WorkdirLock
from extract.store import FeatureStore


class Recorder(ExtractListener):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def split_written(self, split, path) -> None:
        self.events.append(("split", path.name))

    def set_started(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        self.events.append(("start", spec, n_clips))

    def clips_done(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        self.events.append(("done", spec, n_clips))

    def set_finished(self, spec: str, summary) -> None:
        self.events.append(("end", spec, None if summary is None else summary.computed))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo_corpus(tmp_path_factory.mktemp("job") / "corpus", n_clips=8, seed=1)


def _job(corpus, wd, **kw) -> ExtractJob:
    return ExtractJob(corpus=corpus, layout="avb", workdir=wd, options=ExtractOptions(workers=1),
                      **kw)


def test_listener_sees_start_progress_and_end_and_a_rerun_computes_nothing(tmp_path, corpus):
    wd = tmp_path / "wd"
    rec = Recorder()
    result = extract_workdir(_job(corpus, wd, features=("opensmile:eGeMAPSv02",), split="auto",
                                  split_stratify="none"), listener=rec)
    kinds = [e[0] for e in rec.events]
    # the demo has its own split: replacing it is a note; the split file comes before any set
    assert kinds[:3] == ["note", "split", "start"] and kinds[-1] == "end"
    assert "replaced by the automatic one" in rec.events[0][1]
    assert rec.events[2] == ("start", "opensmile:eGeMAPSv02", 8)
    assert sum(e[2] for e in rec.events if e[0] == "done") == 8
    assert rec.events[-1] == ("end", "opensmile:eGeMAPSv02", 8)
    assert result.notes == [rec.events[0][1]] and result.split_file == wd / "split.csv"
    assert [s.computed for s in result.summaries] == [8] and not result.failed
    assert json.loads((wd / "corpus.json").read_text())["split"]["method"] == "auto"
    assert len(FeatureStore(wd).status(result.summaries[0].key)[0]) == 8
    again = Recorder()
    result = extract_workdir(_job(corpus, wd, features=("opensmile:eGeMAPSv02",)), listener=again)
    assert again.events[0] == ("start", "opensmile:eGeMAPSv02", 0)
    assert result.summaries[0].reused == 8 and result.summaries[0].computed == 0


def test_refusals_write_nothing(tmp_path, corpus):
    wd = tmp_path / "wd"
    with pytest.raises(ExtractJobError, match="is not a folder"):
        extract_workdir(_job(tmp_path / "nope", wd, features=("opensmile:eGeMAPSv02",)))
    with pytest.raises(ExtractJobError, match="--split-seed goes with --split auto"):
        extract_workdir(_job(corpus, wd, features=("opensmile:eGeMAPSv02",), split_seed=3))
    with pytest.raises(ExtractJobError, match="--split-fractions takes three numbers"):
        extract_workdir(_job(corpus, wd, split="auto", split_fractions="a,b"))
    with pytest.raises(ExtractJobError, match="needs --features"):
        extract_workdir(_job(corpus, wd))
    with pytest.raises(ExtractJobError, match="opensmile:nonsense"):
        extract_workdir(_job(corpus, wd, features=("opensmile:nonsense",)))
    assert not wd.exists()
    wd.mkdir()
    with WorkdirLock(wd), pytest.raises(ExtractJobError, match="pid"):  # another one holds it
        extract_workdir(_job(corpus, wd, features=("opensmile:eGeMAPSv02",)))
    assert not (wd / "corpus.json").exists()
