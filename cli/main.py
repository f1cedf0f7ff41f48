"""The command line: ``python run_pipeline.py COMMAND --help``."""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Sequence

from cli.common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, quiet_libraries, setup_logging

# sub-command -> module in cli/ with add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "demo": "cli.cmd_demo",
    "extract": "cli.cmd_extract",
    "train": "cli.cmd_train",
    "finetune": "cli.cmd_finetune",
    "list": "cli.cmd_store",
    "export": "cli.cmd_store",
    "verify": "cli.cmd_store",
    "merge": "cli.cmd_store",
    "report": "cli.cmd_report",
    "probe": "cli.cmd_probe",
    "analyze": "cli.cmd_analyze",
    "permutation": "cli.cmd_permutation",
    "bench": "cli.cmd_bench",
    "recipes": "cli.cmd_recipes",
    "predict": "cli.cmd_predict",
    "compare": "cli.cmd_compare",
    "run": "cli.cmd_run",
}

log = logging.getLogger("cli")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given ``argv`` naming a known command, only that command's module is
    imported and its sub-parser built (``list`` or ``report`` never import torch); without
    ``argv``, or for ``--help`` or an unknown command, every command is there.

    Args:
        argv: the arguments about to be parsed, or None for the whole parser.
    """
    parser = argparse.ArgumentParser(
        prog="run_pipeline.py",
        description="Extract SSL / openSMILE features of a vocal-emotion corpus once into an HDF5 "
                    "store, then train light heads on them many times.",
        epilog="Exit codes: 0 success, 2 usage or configuration error, 3 finished but some clips "
               "failed (listed; everything else is stored).")
    parser.add_argument("-v", "--verbose", action="count", default=1,
                        help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version of vocal-probe and of its main libraries, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = invoked_module(argv)
    for module in dict.fromkeys(COMMANDS.values()):
        if wanted is None or module == wanted:
            importlib.import_module(module).add_parser(sub)
    return parser


def invoked_module(argv: Sequence[str] | None) -> str | None:
    """The cli module of the command ``argv`` runs (its first word that is not a global
    option), or None when that is no known command or the whole parser is wanted."""
    if argv is None:
        return None
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return COMMANDS.get(arg)
    return None


ROOT = Path(__file__).resolve().parents[1]
VERSIONED_LIBRARIES = ("torch", "transformers", "opensmile", "h5py", "numpy", "scikit-learn")


def project_version() -> str:
    """The version in pyproject.toml of this checkout, else that of the installed package."""
    from importlib import metadata

    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    return metadata.version("vocal-probe")


def version_text() -> str:
    """``vocal-probe 0.1.0 (Python 3.11.7; torch 2.x, ...)``: read from package metadata,
    without importing the libraries."""
    import platform
    from importlib import metadata

    libs = []
    for name in VERSIONED_LIBRARIES:
        try:
            libs.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            libs.append(f"{name} not installed")
    return f"vocal-probe {project_version()} (Python {platform.python_version()}; {', '.join(libs)})"


class _Version(argparse.Action):
    """``--version``: one unwrapped line on stdout, exit 0."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        print(version_text())
        parser.exit(0)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM and SIGINT: stop a running extraction cleanly, then unwind."""
    from extract.run import request_stop

    request_stop()  # the exception below can be swallowed inside native callbacks
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    verbosity = 0 if args.quiet else args.verbose
    quiet_libraries(verbosity)
    setup_logging(verbosity)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        rc = int(args.func(args) or 0)
    except UsageError as exc:
        _discard_unfinished()
        print(f"error: {exc}{pick_set_hint(exc, argv)}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _discard_unfinished(keep_files=True)
        print("interrupted: finished rows were flushed to the store; rerun the same command to "
              "continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  # known failures become messages, others stay loud
        _discard_unfinished()
        message = explain(exc, getattr(args, "workdir", None))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return rc


def _discard_unfinished(*, keep_files: bool = False) -> None:
    """A failed command leaves no empty or half-written run folder (heads.rundir)."""
    rundir = sys.modules.get("heads.rundir")  # not imported: no run folder was made
    if rundir is not None:
        rundir.discard_unfinished(keep_files=keep_files)


def pick_set_hint(exc: BaseException, argv: Sequence[str]) -> str:
    """For an ambiguous ``--features`` value: this very command once per candidate set, with
    the value replaced by the set's key (empty when the error is another one)."""
    import shlex

    store_mod = sys.modules.get("extract.store")
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if store_mod is not None and isinstance(cause, store_mod.AmbiguousSet):
            break
        cause = cause.__cause__ or cause.__context__
    if cause is None or cause.spec not in argv:  # type: ignore[attr-defined]
        return ""
    lines = [" ".join(shlex.quote(a) for a in
                      ["python", "run_pipeline.py", *[key if a == cause.spec else a for a in argv]])
             for key in cause.keys]  # type: ignore[attr-defined]
    return "\nRun one of:\n  " + "\n  ".join(lines)


def explain(exc: BaseException, workdir: str | None = None) -> str | None:
    """The message for a failure a user can fix (a damaged store, a busy or read-only
    workdir, a full disk); None for a bug, which keeps its traceback."""
    import errno

    store_mod = sys.modules.get("extract.store")
    lock_mod = sys.modules.get("extract.lock")
    if store_mod is not None and isinstance(exc, store_mod.StoreError):
        return str(exc)
    if lock_mod is not None and isinstance(exc, lock_mod.WorkdirBusy):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = exc.filename or workdir or "the output folder"
        return (f"cannot write {where}: {exc.strerror}. This command writes into its --workdir "
                f"({workdir}); make it writable, or copy it to a writable place "
                f"(cp -r {workdir} NEWDIR) and pass --workdir NEWDIR")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"disk full while writing {exc.filename or workdir}: {exc.strerror}. Stored rows "
                f"are safe; free space and rerun the same command")
    return None


if __name__ == "__main__":
    sys.exit(main())
