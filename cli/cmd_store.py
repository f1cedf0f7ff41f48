"""``list``, ``export``, ``verify`` and ``merge``: look at, take out, check and combine stores."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cli.common import EXIT_CLIPS_FAILED, EXIT_OK, UsageError, add_workdir, say

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="show every feature set of a workdir with its provenance",
                       description="Every feature set: key, spec, rows, failures, fields, config "
                                   "and provenance (library versions, device, dtype, dates, throughput).")
    add_workdir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)

    p = sub.add_parser("export", help="write one feature matrix to .npz, .csv or .parquet",
                       description="Export a feature set's rows (arrays `ids`, `X` and `columns` in "
                                   ".npz; one row per clip with an `id` column in .csv/.parquet). "
                                   "Columns are named l<layer>_<pooling>_<i> for SSL sets "
                                   "(l12_mean_0), by openSMILE's feature names for openSMILE sets. "
                                   "For a corpus with "
                                   "segments every row also says where its audio is: `file`, `start`, "
                                   "`end` columns (seconds; `files`, `starts`, `ends` in .npz).")
    add_workdir(p)
    p.add_argument("--features", required=True, metavar="SPEC|KEY",
                   help="the set: its spec (opensmile:eGeMAPSv02), name or key (see `list`)")
    p.add_argument("--field", help="field to export (default: functionals, or pooled_<pooling> for SSL)")
    p.add_argument("--layer", type=int, help="SSL hidden-state index to export (default: the last stored)")
    p.add_argument("--pooling", default="mean", help="SSL pooling to export (default: mean)")
    p.add_argument("--split", choices=["Train", "Val", "Test"], help="only clips of this split")
    p.add_argument("--with-labels", action="store_true",
                   help="add each clip's split, group and every label column of the corpus "
                        "(csv/parquet: columns before the features; npz: arrays split, group, "
                        "label_columns and label_<column>)")
    p.add_argument("--format", choices=["fairseq", "hear"],
                   help="write a folder (--out DIR) in another tool's layout instead of one file: "
                        "fairseq: a frame-sequence field (frames_l<layer>, logmel, lld) as "
                        "<split>.npy (all frames, float32) + <split>.lengths + <split>.ids, one "
                        "group per split (train, valid, test; all without a split), and one "
                        "<split>.<COL> file ('<id> <value>' lines) per --label column; hear: a "
                        "vector field as hear-eval-kit's per-split memmaps "
                        "(<split>.embeddings.npy, .embedding-dimensions.json, "
                        ".target-labels.pkl) with labelvocabulary.csv and task_metadata.json "
                        "for the class column --label")
    p.add_argument("--label", metavar="COL[,COL..]",
                   help="with --format: label column(s) to write (fairseq: any number; hear: "
                        "the one class column of the task, clips without a label left out)")
    p.add_argument("--out", required=True, metavar="FILE|DIR",
                   help="output file: .npz, .csv or .parquet; with --format, a folder")
    p.set_defaults(func=run_export)

    p = sub.add_parser("verify", help="check every feature set for completeness and readability",
                       description="Reads every row of every set, compares stored content hashes with "
                                   "the audio on disk, lists missing and failed clips. Exit 0 when "
                                   "complete, 3 when clips are missing or failed.")
    add_workdir(p)
    p.add_argument("--no-hash-check", action="store_true",
                   help="skip comparing stored hashes with the audio files")
    p.add_argument("--deep", action="store_true",
                   help="rehash the content of every audio file (default: only files whose size "
                        "or mtime changed; the output says which check ran)")
    p.add_argument("--repair", action="store_true",
                   help="fix what was found: move damaged files aside and recompute missing, failed "
                        "and stale rows with each set's recorded options (good rows are kept)")
    p.add_argument("--workers", type=int, help="processes for recomputation (default: as recorded)")
    p.add_argument("--drop", action="append", metavar="KEY", default=[],
                   help="delete a feature set and all its rows from the store (its key, see "
                        "`list`); repeatable. Then extract it again with another configuration")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("merge", help="combine shard stores (extract --shard K/N) into the workdir's store",
                       description="Every WORKDIR/shards/*/ store is folded into the workdir's store; "
                                   "shards must share each feature set's configuration.")
    add_workdir(p)
    p.add_argument("--keep-shards", action="store_true", help="leave the shard folders in place")
    p.set_defaults(func=run_merge)


def _store(workdir: str):
    from extract.store import FeatureStore, StoreError

    store = FeatureStore(workdir)
    if not Path(workdir).is_dir():
        raise UsageError(f"--workdir {workdir} does not exist")
    try:
        store.check_schema()
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
    return store


def run_list(args: argparse.Namespace) -> int:
    from extract.store import StoreError

    store = _store(args.workdir)
    infos, problems = [], []
    for key in store.keys():
        try:
            infos.append(store.info(key))
        except StoreError as exc:
            problems.append(f"{key}: {exc}")
    leftovers = store.temporary_files()
    if leftovers:
        problems.append(f"{len(leftovers)} temporary file(s) left by a killed writer "
                        f"({sum(p.stat().st_size for p in leftovers if p.exists()) / 1e6:.1f} MB, "
                        f"e.g. {leftovers[0]}); the next extract removes them")
    if args.json:
        say(json.dumps([{"key": i.key, "spec": i.header.spec, "rows": i.n_rows,
                         "failed": i.n_failed, "parts_pending": i.n_parts,
                         "config": i.header.config, "provenance": i.header.provenance,
                         "fields": {k: {"shape": f.shape, "dtype": f.dtype, "ragged": f.ragged}
                                    for k, f in i.header.fields.items()}} for i in infos],
                       indent=2, default=str))
        for p in problems:
            log.warning("%s", p)
        return EXIT_CLIPS_FAILED if problems else EXIT_OK
    if not infos:
        say(f"{args.workdir}: no feature sets yet")
    for i in infos:
        h = i.header
        say(f"{h.key}")
        say(f"  spec        {h.spec}")
        say(f"  rows        {i.n_rows} stored, {i.n_failed} failed"
            + (f", {i.n_parts} journal part(s) not yet compacted" if i.n_parts else ""))
        for name, f in h.fields.items():
            shape = ("T, " if f.ragged else "") + ", ".join(str(s) for s in f.shape)
            say(f"  field       {name} ({shape}) {f.dtype}")
        say(f"  config      {json.dumps(h.config, sort_keys=True)}")
        prov = {k: v for k, v in h.provenance.items() if k not in ("runs", "last_run")}
        say(f"  provenance  {json.dumps(prov, sort_keys=True, default=str)}")
        last = h.provenance.get("last_run")
        if last:
            say(f"  last run    {last.get('date')}: {last.get('computed')} clips in "
                f"{last.get('seconds')} s, {last.get('audio_s_per_s')} audio-s/s, "
                f"{last.get('clips_per_s')} clips/s")
    for p in problems:
        say(f"problem: {p}")
    return EXIT_CLIPS_FAILED if problems else EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from extract.export import ExportError, export_matrix
    from heads.features import FeatureError, find_set, request_checks, resolve_field

    store = _store(args.workdir)
    if args.format is not None:
        try:
            return _export_folder(args, store)
        except ExportError as exc:
            raise UsageError(str(exc)) from exc
    if args.label is not None:
        raise UsageError("--label goes with --format hear")
    try:
        header = find_set(store, args.features, request_checks(args.field, args.layer, args.pooling))
        field, index, layer = resolve_field(header, args.field, args.layer, args.pooling)
    except FeatureError as exc:
        raise UsageError(str(exc)) from exc
    from data.workdir import load_corpus_ref, open_corpus

    corpus = None
    if args.split or args.with_labels:
        try:
            corpus = open_corpus(args.workdir)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    elif load_corpus_ref(args.workdir) is not None:
        try:
            corpus = open_corpus(args.workdir)
        except (OSError, ValueError):  # corpus moved: the store alone is enough to export
            corpus = None
    only = set(corpus.split_ids(args.split)) if args.split else None
    # a corpus with segments: every row says where its audio is (file, start, end in seconds)
    sources = corpus.sources if corpus is not None and corpus.spans() else None
    labels = None
    if args.with_labels:
        labels = corpus.clips[["split", "group"]].join(corpus.labels, how="left")
    try:
        r = export_matrix(store, header.key, field, args.out, index=index, only=only,
                          sources=sources, labels=labels)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    say(f"wrote {r.path}: {r.n_rows} clips x {r.n_cols} ({header.key}, field {field}"
        + (f", layer {layer}" if layer is not None else "") + ")")
    return EXIT_OK


def _export_folder(args: argparse.Namespace, store) -> int:
    """``export --format fairseq|hear``: a folder in another tool's layout."""
    from data.hints import split_command
    from data.workdir import open_corpus
    from extract.export_layouts import export_fairseq, export_hear
    from heads.features import FeatureError, find_set, request_checks, resolve_field
    from heads.sequences import choose_frames_field

    if args.with_labels:
        raise UsageError(f"--format {args.format} writes the label columns named by --label "
                         f"COL[,COL..], not --with-labels")
    columns = [c.strip() for c in (args.label or "").split(",") if c.strip()]
    need_corpus = args.format == "hear" or args.split or columns
    corpus = None
    try:
        corpus = open_corpus(args.workdir)
    except (OSError, ValueError) as exc:
        if need_corpus:
            raise UsageError(str(exc)) from exc
    split_of = None if corpus is None else corpus.clips["split"].to_dict()
    only = corpus.split_ids(args.split) if args.split else None
    unknown = [c for c in columns if c not in corpus.labels.columns] if columns else []
    if unknown:
        raise UsageError(f"--label {','.join(unknown)}: no such label column; label columns: "
                         f"{', '.join(map(str, corpus.labels.columns))}")
    try:
        if args.format == "fairseq":
            header = find_set(store, args.features,
                              lambda h: choose_frames_field([h], args.field, args.layer))
            _, field = choose_frames_field([header], args.field, args.layer)
            r = export_fairseq(store, header.key, field, args.out, split_of=split_of, only=only,
                               labels=corpus.labels[columns] if columns else None)
            parts = [f"{p} {n} clips / {r.frames[p]} frames" for p, n in r.clips.items()]
            layer = None
        else:
            if args.split:
                raise UsageError("--format hear writes train, valid and test; drop --split")
            if len(columns) != 1:
                raise UsageError("--format hear needs --label COL: the one class column of the "
                                 f"task (label columns: "
                                 f"{', '.join(map(str, corpus.labels.columns))})")
            if not any(corpus.summary()[s] for s in ("Train", "Val", "Test")):
                raise UsageError("hear-eval-kit needs Train/Val/Test and no clip has a split; "
                                 f"make one with `{split_command(args.workdir)}`")
            header = find_set(store, args.features,
                              request_checks(args.field, args.layer, args.pooling))
            field, index, layer = resolve_field(header, args.field, args.layer, args.pooling)
            r = export_hear(store, header.key, field, args.out, split_of=split_of,
                            label=corpus.labels[columns[0]].to_dict(), index=index,
                            task_name=f"{Path(args.workdir).name}-{columns[0]}")
            parts = [f"{p} {n} clips" for p, n in r.clips.items()]
    except FeatureError as exc:
        raise UsageError(str(exc)) from exc
    say(f"wrote {r.path} ({args.format} layout): {', '.join(parts)} x {r.dim} "
        f"({header.key}, field {field}" + (f", layer {layer}" if layer is not None else "") + ")")
    for why, n in r.left_out.items():
        say(f"  left out: {n} clip(s) with {why}")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from extract.lock import WorkdirBusy, WorkdirLock
    from extract.store import FeatureStore
    from extract.verify import repair_store, verify_store

    if not Path(args.workdir).is_dir():
        raise UsageError(f"--workdir {args.workdir} does not exist")
    store = FeatureStore(args.workdir)  # no schema check: verify must look at damaged stores
    if args.drop:
        return _drop(store, args.drop)
    report = verify_store(store, check_hashes=not args.no_hash_check, deep=args.deep)
    for line in report.lines():
        say(line)
    if not args.repair or report.ok:
        return EXIT_OK if report.ok else EXIT_CLIPS_FAILED
    try:
        with WorkdirLock(args.workdir, purpose="verify --repair"):
            fixed = repair_store(store, report, workers=args.workers)
    except WorkdirBusy as exc:
        raise UsageError(str(exc)) from exc
    if fixed.refused:
        say(f"not repaired: {fixed.refused}")
        return EXIT_CLIPS_FAILED
    for p in fixed.quarantined:
        say(f"moved aside: {p}")
    for key, where in sorted(fixed.headers_from.items()):
        if where != "sets.json":
            say(f"{key}: header recovered from {where}")
    if fixed.catalog_added:
        say(f"sets.json: {len(fixed.catalog_added)} set(s) written back: "
            + ", ".join(fixed.catalog_added))
    for key, n in fixed.recomputed.items():
        say(f"{key}: recomputed {n} row(s)")
    for key, why in fixed.skipped.items():
        say(f"{key}: not repaired: {why}")
    for key, failed in fixed.still_failed.items():
        say(f"{key}: {len(failed)} clip(s) still fail (see below)")
    after = verify_store(store, check_hashes=not args.no_hash_check, deep=args.deep)
    say("after repair:")
    for line in after.lines():
        say(line)
    return EXIT_OK if after.ok and not fixed.skipped else EXIT_CLIPS_FAILED


def _drop(store, keys: list[str]) -> int:
    from extract.lock import WorkdirBusy, WorkdirLock

    known = store.keys()
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise UsageError(f"--drop {' '.join(unknown)}: no such set in {store.workdir}; stored "
                         f"keys: {', '.join(known) or 'none'}")
    rows = {k: store.info(k).n_rows for k in keys}
    try:
        with WorkdirLock(store.workdir, purpose="verify --drop"):
            store.compact(drop=keys)
    except WorkdirBusy as exc:
        raise UsageError(str(exc)) from exc
    for k in keys:
        say(f"dropped {k} ({rows[k]} rows)")
    return EXIT_OK


def run_merge(args: argparse.Namespace) -> int:
    from extract.lock import WorkdirBusy, WorkdirLock
    from extract.merge import merge_shards
    from extract.store import StoreError

    store = _store(args.workdir)
    try:
        with WorkdirLock(args.workdir, purpose="merge"):
            result = merge_shards(store, keep_shards=args.keep_shards)
    except (WorkdirBusy, StoreError) as exc:
        raise UsageError(str(exc)) from exc
    for key, (n_shards, n_rows) in result.items():
        say(f"{key}: merged {n_shards} shard(s), {n_rows} rows now stored")
    if not result:
        say(f"no shard stores under {Path(args.workdir) / 'shards'}")
    return EXIT_OK
