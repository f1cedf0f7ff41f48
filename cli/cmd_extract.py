"""``extract``: compute feature sets of a corpus into the workdir's store (resumable)."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from cli.common import (EXIT_CLIPS_FAILED, EXIT_OK, Progress, UsageError, add_corpus_flags,
                        add_ssl_storage, add_workdir, say, ssl_storage)
from extract.devices import DEVICES

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract", help="extract feature sets of a corpus into the workdir's HDF5 store",
        description="Compute feature sets into WORKDIR/features/ (one file per set). Rerunning computes only what "
                    "is missing; a killed run loses no stored row. Clips that fail are recorded "
                    "with the reason and listed; the rest is stored (exit code 3).")
    p.add_argument("--corpus", required=True, metavar="ROOT", help="corpus root folder")
    add_corpus_flags(p, layout_required=True)
    p.add_argument("--text-column", metavar="COL",
                   help="label column holding each clip's transcript; it becomes the column `text` "
                        "(the iemocap layout fills `text` itself)")
    p.add_argument("--group-column", metavar="COL",
                   help="csv: the column naming each clip's speaker/subject (default: the first of "
                        "group, speaker, speaker_id, subject); it is the group, not a label")
    add_workdir(p)
    p.add_argument("--features", nargs="+", metavar="SPEC",
                   help="feature specs: opensmile:ComParE_2016, opensmile:eGeMAPSv02, "
                        "ssl:<hub id or local folder>, logmel:128 (required unless --split is "
                        "given: then only the split is written)")
    g = p.add_argument_group(
        "split", "Train/Val/Test for a corpus without a split column; every later command of the "
                 "workdir (train, probe, permutation, finetune, report) uses it")
    g.add_argument("--split", choices=["auto", "corpus"],
                   help="auto: a speaker/group-disjoint, label-stratified split, written to "
                        "WORKDIR/split.csv and printed (replaces the corpus's own split); corpus: "
                        "the corpus's own split column (drops an automatic split). Default: keep "
                        "what the workdir has")
    g.add_argument("--split-seed", type=int, metavar="N",
                   help="seed of --split auto (default: 0)")
    g.add_argument("--split-fractions", metavar="TRAIN,VAL,TEST",
                   help="shares of the clips for --split auto (default: 0.7,0.15,0.15)")
    g.add_argument("--split-stratify", metavar="COL|none",
                   help="label column whose classes (or quartiles, for a numeric column) each "
                        "split keeps in proportion (default: the first label column)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), metavar="N",
                   help="processes for openSMILE / log-mel and for audio decoding (default: all cores)")
    p.add_argument("--level", default="functionals", choices=["functionals", "lld"],
                   help="openSMILE level: functionals (one vector per clip) or lld (frame sequences)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where SSL models run (auto: CUDA when available)")
    add_ssl_storage(p)
    p.add_argument("--shard", metavar="K/N",
                   help="process only shard K of N (0-based) into WORKDIR/shards/K-of-N; combine with "
                        "`merge`. Under torchrun, RANK/WORLD_SIZE set it automatically")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process (plus --workers); ray: GPU/CPU actors on a Ray cluster, "
                        "results gathered into shard stores and merged (needs `pip install .[ray]`)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster address (default: start a local one; 'auto' joins a running one)")
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="model actors for --engine ray (default: one per GPU, or 2 on CPU-only clusters)")
    p.add_argument("--flush-rows", type=int, default=256, metavar="N",
                   help="rows per crash-safe journal part (a kill loses at most the unflushed rows; "
                        "parts are also flushed every 30 s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace):
    from extract.base import ExtractOptions

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    return ExtractOptions(**ssl_storage(args), device=args.device, level=args.level,
                          workers=args.workers)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` -> (K, N); falls back to torchrun's RANK / WORLD_SIZE when set."""
    if text is None:
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ["RANK"]) if world > 1 else 0
        except KeyError:
            raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but RANK is not: "
                             f"run under torchrun (which sets both), set RANK too, or unset "
                             f"WORLD_SIZE and use --shard K/N") from None
        except ValueError:
            raise UsageError(f"RANK and WORLD_SIZE must be integers, got RANK="
                             f"{os.environ.get('RANK')!r} WORLD_SIZE="
                             f"{os.environ.get('WORLD_SIZE')!r}") from None
        if world <= 1:
            return None
        if not 0 <= rank < world:
            raise UsageError(f"RANK must be in 0..WORLD_SIZE-1, got RANK={rank} WORLD_SIZE={world}")
        return rank, world
    try:
        k, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like K/N (e.g. 0/8), got {text!r}") from None
    if not 0 <= k < n:
        raise UsageError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _torchrun_device() -> None:
    """Under torchrun: one GPU per process (LOCAL_RANK), when there are GPUs."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None:
        return
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(local_rank) % torch.cuda.device_count())


def _torchrun_merge(workdir: Path) -> None:
    """Under torchrun: wait for every rank, then rank 0 merges the shard stores."""
    import torch.distributed as dist

    from extract.lock import WorkdirLock
    from extract.merge import merge_shards
    from extract.store import FeatureStore

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    if dist.get_rank() == 0:
        with WorkdirLock(workdir, purpose="merge"):
            result = merge_shards(FeatureStore(workdir))
        for key, (n_shards, n_rows) in result.items():
            say(f"{key}: merged {n_shards} shard(s), {n_rows} rows now stored")
    dist.barrier()
    dist.destroy_process_group()


def _console_listener(*, progress: bool):
    """An :class:`extract.job.ExtractListener` that prints what the extraction reports and
    draws one progress bar per feature set."""
    from extract.job import ExtractListener

    class ConsoleListener(ExtractListener):
        def __init__(self) -> None:
            self.bar: Progress | None = None

        def note(self, text: str) -> None:
            say(f"note: {text}")

        def shard(self, k: int, n: int, n_clips: int, n_total: int, store_dir: Path) -> None:
            say(f"shard {k}/{n}: {n_clips} of {n_total} clips -> {store_dir}")

        def split_written(self, split, path: Path) -> None:
            say(f"automatic split written to {path} ({split.describe()}):")
            for line in split.table().rename_axis(None).to_string().splitlines():
                say(f"  {line}")

        def set_started(self, spec: str, n_clips: int, audio_seconds: float) -> None:
            self.bar = Progress(n_clips, audio_seconds, spec, enabled=progress and n_clips > 0)

        def clips_done(self, spec: str, n_clips: int, audio_seconds: float) -> None:
            if self.bar is not None:
                self.bar(n_clips, audio_seconds)

        def set_finished(self, spec: str, s) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if s is None:
                return
            say(f"{s.key}: {s.total} clips, {s.reused} reused, {s.computed} computed, "
                f"{len(s.failed)} failed"
                + (f", {len(s.kept)} audio missing (stored rows kept)" if s.kept else "")
                + f", {s.audio_seconds:.1f} audio-s in {s.seconds:.1f} s "
                f"({s.audio_s_per_s:.1f} audio-s/s)")
            for cid, w in sorted(s.warnings.items())[:20]:
                say(f"  warning {cid}: {'; '.join(w)}")

    return ConsoleListener()


def job_from_args(args: argparse.Namespace, shard: tuple[int, int] | None, options):
    """The :class:`extract.job.ExtractJob` of the ``extract`` flags (``options``: their
    :class:`extract.base.ExtractOptions`)."""
    from extract.job import ExtractJob

    return ExtractJob(
        corpus=args.corpus, layout=args.layout, workdir=args.workdir,
        features=tuple(args.features or ()), labels=args.labels, table=args.table,
        column=args.column, text_column=args.text_column, group_column=args.group_column,
        split=args.split, split_seed=args.split_seed, split_fractions=args.split_fractions,
        split_stratify=args.split_stratify, options=options, shard=shard,
        engine=args.engine, ray_address=args.ray_address, ray_actors=args.ray_actors,
        flush_rows=args.flush_rows)


def run(args: argparse.Namespace) -> int:
    from extract.job import ExtractJobError, extract_workdir

    options = _options(args)
    shard = parse_shard(args.shard)
    job = job_from_args(args, shard, options)
    under_torchrun = args.shard is None and shard is not None
    if under_torchrun:
        _torchrun_device()
    try:
        result = extract_workdir(job, listener=_console_listener(progress=not args.no_progress))
    except ExtractJobError as exc:
        raise UsageError(str(exc)) from exc
    if not job.features:
        return EXIT_OK
    if under_torchrun:
        _torchrun_merge(Path(args.workdir))
    return _report_failures(result.failed, result.kept)


def _report_failures(failed_any: dict[str, str], kept_any: dict[str, str] | None = None) -> int:
    if kept_any:
        say(f"{len(kept_any)} clip(s): audio missing, stored row kept (restore the audio; "
            f"nothing is recomputed for them until it can be read):")
        for what, reason in kept_any.items():
            say(f"  {what}: {reason}")
    if failed_any:
        say(f"{len(failed_any)} clip(s) failed (recorded in the store; see `verify`):")
        for what, reason in failed_any.items():
            say(f"  {what}: {reason}")
        return EXIT_CLIPS_FAILED
    return EXIT_CLIPS_FAILED if kept_any else EXIT_OK
