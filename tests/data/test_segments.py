"""Segments: a clip that is (file, start, end).

Reading only the span (counted in frames handed out by libsndfile), equality with the same span
cut out and saved as its own file, the id and hash rules, and the per-row errors of the csv
layout (negative, start not before end, past the file's end, overlapping, not a time).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.audio import (AudioError, clip_seconds, file_hash, format_seconds, load_audio,
                        segment_hash, to_nanoseconds)
from data.corpora import read_corpus
from data.corpus import parse_time, segment_id


def _noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = 0.2 * np.random.default_rng(seed).standard_normal((n, channels))
    return x[:, 0] if channels == 1 else x


@pytest.fixture
def frames_read(monkeypatch):
    """Count the frames libsndfile hands out, and refuse whole-file decodes of segments."""
    counter = {"frames": 0, "whole": 0}
    real_read = sf.SoundFile.read
    real_sf_read = sf.read

    def counting_read(self, frames=-1, *args, **kwargs):
        out = real_read(self, frames, *args, **kwargs)
        counter["frames"] += len(out)
        return out

    def counting_sf_read(*args, **kwargs):  # its frames are counted by SoundFile.read inside
        counter["whole"] += 1
        return real_sf_read(*args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    monkeypatch.setattr(sf, "read", counting_sf_read)
    return counter


@pytest.mark.parametrize("rate,channels,subtype", [(16000, 1, "PCM_16"), (44100, 2, "PCM_24"),
                                                   (22050, 1, "FLOAT")])
def test_segment_equals_the_span_saved_as_its_own_file(tmp_path, rate, channels, subtype):
    long = tmp_path / "long.wav"
    sf.write(long, _noise(rate * 20, channels), rate, subtype=subtype)
    stored, _ = sf.read(long, dtype="float64", always_2d=True)
    for start, end in [(0.0, 2.0), (3.25, 5.5), (12.345678, 14.0), (18.0, 20.0)]:
        # the nearest frame, halves up (22050 Hz * 3.25 s = 71662.5 -> 71663)
        first, stop = (int(np.floor(t * rate + 0.5)) for t in (start, end))
        cut = tmp_path / f"cut_{start}.wav"
        sf.write(cut, stored[first:stop], rate, subtype=subtype)
        seg = load_audio(long, start=start, end=end)
        ref = load_audio(cut)
        assert seg.dtype == np.float32 and np.array_equal(seg, ref), (start, end)
        assert clip_seconds(long, start, end) == pytest.approx((stop - first) / rate)
    # an open end runs to the end of the file; start 0 with no end is the whole file
    assert np.array_equal(load_audio(long, start=18.0), load_audio(long, start=18.0, end=20.0))
    assert np.array_equal(load_audio(long, start=0.0), load_audio(long))


def test_a_segment_of_a_long_file_reads_only_its_frames(tmp_path, frames_read):
    long = tmp_path / "long.flac"
    sf.write(long, _noise(16000 * 120), 16000)  # 2 minutes, 1.92 M frames
    x = load_audio(long, start=61.0, end=63.0)
    assert len(x) == 32000
    assert frames_read == {"frames": 32000, "whole": 0}
    frames_read["frames"] = 0
    load_audio(long)
    assert frames_read == {"frames": 16000 * 120, "whole": 1}


@pytest.mark.parametrize("start,end,fragment", [
    (-0.5, 1.0, "the start is negative"),
    (3.0, 3.0, "the start is not before the end"),
    (4.0, 2.0, "the start is not before the end"),
    (9.0, 10.5, "ends past the end of the file (10 s long)"),
    (10.5, None, "ends past the end of the file"),
])
def test_out_of_range_segments_raise_naming_file_and_times(tmp_path, start, end, fragment):
    p = tmp_path / "ten.wav"
    sf.write(p, _noise(160000), 16000)
    with pytest.raises(AudioError) as info:
        load_audio(p, start=start, end=end)
    assert fragment in str(info.value) and str(p) in str(info.value)


def test_end_within_half_a_frame_of_the_file_end_is_the_end(tmp_path):
    p = tmp_path / "ten.wav"
    sf.write(p, _noise(160000), 16000)
    assert len(load_audio(p, start=9.0, end=10.00003)) == 16000


def test_hash_rule(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _noise(16000), 16000)
    fh = file_hash(p)
    assert fh == hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()  # unchanged rule
    assert segment_hash(fh, None, None) == segment_hash(fh, 0.0, None) == fh
    expected = hashlib.blake2b(f"{fh}@250000000-750000000".encode(), digest_size=16).hexdigest()
    assert segment_hash(fh, 0.25, 0.75) == expected
    assert segment_hash(fh, 0.25, None) == hashlib.blake2b(
        f"{fh}@250000000-end".encode(), digest_size=16).hexdigest()
    assert len({segment_hash(fh, 0.25, 0.75), segment_hash(fh, 0.25, 0.5),
                segment_hash(fh, 0.0, 0.75), fh}) == 4
    assert to_nanoseconds(pd.Timedelta("00:01:02.125").value / 1e9) == 62_125_000_000


def test_ids_and_times():
    assert parse_time("00:00:12.500") == 12.5 and parse_time("1:00:00") == 3600.0
    assert parse_time("02:03.25") == 123.25 and parse_time(7) == 7.0
    assert parse_time(pd.Timedelta(seconds=1.5)) == 1.5 and parse_time(pd.NaT) is None
    assert parse_time("-2") == -2.0
    for bad in ("abc", "1:2:3:4", "12s", "1:75"):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad)
    assert segment_id("talks/long", 12.5, 14.0) == "talks/long@12.5-14"
    assert segment_id("a", 0.1, 0.3) == "a@0.1-0.3" and segment_id("a", 0, None) == "a"
    assert format_seconds(3723.000000001) == "3723.000000001"


@pytest.fixture
def segmented_csv(tmp_path):
    sf.write(tmp_path / "long.wav", _noise(16000 * 10), 16000)
    sf.write(tmp_path / "short.wav", _noise(16000), 16000)
    (tmp_path / "labels.csv").write_text(
        "file,start,end,split,y\n"
        "long.wav,0,2,train,1\n"               # line 2
        "long.wav,00:00:02.000,4.5,train,2\n"  # line 3
        "long.wav,4,6,val,3\n"                 # line 4: overlaps line 3
        "long.wav,9,11,val,4\n"                # line 5: past the end
        "long.wav,5,3,val,5\n"                 # line 6: start after end
        "long.wav,-1,1,val,6\n"                # line 7: negative
        "long.wav,soon,1,val,7\n"              # line 8: not a time
        "long.wav,,,test,8\n"                  # line 9: the whole file
        "short.wav,,,test,9\n"                 # line 10
        "long.wav,7,,test,10\n"                # line 11: to the end
    )
    return tmp_path


def test_csv_layout_reads_segments_and_names_bad_rows(segmented_csv):
    c = read_corpus(segmented_csv, "csv")
    assert set(c.ids) == {"long", "short", "long@0-2", "long@2-4.5", "long@4-6", "long@9-11",
                          "long@5-3", "long@-1-1", "long@soon-1", "long@7-end"}
    spans = c.spans()
    assert spans["long@2-4.5"] == (2.0, 4.5) and spans["long@7-end"] == (7.0, None)
    assert "long" not in spans and "short" not in spans
    errors = c.clip_errors()
    assert set(errors) == {"long@4-6", "long@9-11", "long@5-3", "long@-1-1", "long@soon-1"}
    assert errors["long@4-6"].startswith("labels.csv line 4:") and "overlaps" in errors["long@4-6"]
    assert "labels.csv line 3" in errors["long@4-6"]
    assert errors["long@9-11"].startswith("labels.csv line 5:") and "past the end" in errors["long@9-11"]
    assert errors["long@5-3"].startswith("labels.csv line 6:") and "not before the end" in errors["long@5-3"]
    assert errors["long@-1-1"].startswith("labels.csv line 7:") and "negative" in errors["long@-1-1"]
    assert errors["long@soon-1"].startswith("labels.csv line 8:") and "not a time" in errors["long@soon-1"]
    assert c.labels.loc["long@2-4.5", "y"] == 2.0 and "start" not in c.labels.columns
    assert c.clips.loc["long@0-2", "split"] == "Train"
    src = c.sources(["long@2-4.5", "short"])
    assert list(src.columns) == ["file", "start", "end"]
    assert src.loc["long@2-4.5", "start"] == 2.0 and src.loc["short", "start"] == 0.0
    assert np.isnan(src.loc["short", "end"])
    assert any("5 segment row(s)" in p for p in c.problems)


def test_adjacent_segments_and_whole_files_do_not_overlap(tmp_path):
    sf.write(tmp_path / "a.wav", _noise(16000 * 4), 16000)
    pd.DataFrame({"file": ["a.wav"] * 4, "start": [0, 1, 2, None], "end": [1, 2, 4, None]}
                 ).to_csv(tmp_path / "labels.csv", index=False)
    c = read_corpus(tmp_path, "csv")
    assert c.clip_errors() == {} and len(c) == 4


def test_extraction_of_segments_reads_only_their_frames(tmp_path, segmented_csv, frames_read):
    from extract.base import ExtractOptions
    from extract.run import clip_hashes, extract_corpus
    from extract.store import FeatureStore

    corpus = read_corpus(segmented_csv, "csv")
    segs = corpus.subset(["long@0-2", "long@2-4.5", "long@7-end", "long@4-6", "long@9-11"])
    store = FeatureStore(tmp_path / "wd")
    s = extract_corpus(store, segs, "logmel:16", options=ExtractOptions(workers=1))
    assert s.computed == 3 and set(s.failed) == {"long@4-6", "long@9-11"}
    assert frames_read["whole"] == 0
    assert frames_read["frames"] == 16000 * (2 + 2.5 + 3)
    assert "labels.csv line 4" in s.failed["long@4-6"]
    done, failed = store.status(s.key)
    fh = file_hash(segmented_csv / "long.wav")
    assert done["long@2-4.5"] == segment_hash(fh, 2.0, 4.5)
    assert set(failed) == {"long@4-6", "long@9-11"}
    hashes, _ = clip_hashes({"long": str(segmented_csv / "long.wav")}, tmp_path / "wd")
    assert hashes["long"] == fh  # a whole-file clip keeps its hash: existing stores stay valid
    again = extract_corpus(store, segs, "logmel:16", options=ExtractOptions(workers=1))
    assert again.reused == 3 and again.computed == 0
