"""``run EXPERIMENT.toml``: extract + train (one or more runs) + report from one file.

The file uses the command line's own option names; each table becomes one command::

    workdir = "runs/mine"            # top level: the one workdir of every step

    [extract]                        # the flags of `extract` (without --)
    corpus = "mine"
    layout = "csv"
    features = ["opensmile:eGeMAPSv02"]

    [[train]]                        # one table per `train` run (the flags of `train`)
    task = "classify:emotion"
    head = "logreg"

    report = true                    # default: write the report after the runs

Each table is turned into the argument list of its command and parsed by that command's own
parser, so names, types and choices are checked exactly as on the command line; an unknown key
names itself and the valid ones. Every table is checked before anything runs. Relative paths
(``workdir``, ``corpus``, ``labels``, a ``recipe`` file, a feature spec's local model folder)
are resolved against the folder of the TOML file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import EXIT_CLIPS_FAILED, EXIT_OK, UsageError, say

TOP_KEYS = ("workdir", "extract", "train", "report")
PATH_KEYS = ("workdir", "corpus", "labels")
"""Options whose relative values are always paths (resolved against the TOML file)."""
PATH_IF_PRESENT = ("recipe",)
"""Options that are a path when one exists there (else a name, e.g. a recipe's)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run an experiment file: extract + train + report (TOML)",
        description="Runs the steps of one TOML experiment file in order: [extract] (the flags of "
                    "`extract`), each [[train]] table (the flags of `train`), then `report` "
                    "(unless report = false). Keys are the command line's option names "
                    "(run-name or run_name); `workdir` is given once at the top. Relative paths "
                    "are resolved against the file's folder. Every table is checked before "
                    "anything runs. See README, 'An experiment file'.")
    p.add_argument("experiment", metavar="EXPERIMENT.toml", help="the experiment file")
    p.add_argument("--dry-run", action="store_true",
                   help="check the file and print the commands it runs, run nothing")
    p.set_defaults(func=run)


def _load(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if not path.is_file():
        raise UsageError(f"experiment file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from cli.main import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the command line has no sub-commands")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Key -> action: every long flag of a sub-command, as ``run-name`` and ``run_name``."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--workdir"):
                out[flag[2:]] = action
                out[flag[2:].replace("-", "_")] = action
    return out


def _resolve(key: str, value: Any, base: Path) -> Any:
    def one(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if key in PATH_KEYS:
            return str(base / v) if not Path(v).is_absolute() else v
        if key in PATH_IF_PRESENT and (base / v).exists():
            return str(base / v)
        if key == "features":  # a local model folder: ssl:models/tiny
            kind, sep, arg = v.partition(":")
            if sep and arg and not Path(arg).is_absolute() and (base / arg).exists():
                return f"{kind}:{base / arg}"
        return v
    return [one(v) for v in value] if isinstance(value, list) else one(value)


def _argv(where: str, table: Any, parser: argparse.ArgumentParser, base: Path) -> list[str]:
    """The argument list of one table (without the command and --workdir)."""
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of options, got {table!r}")
    options = _options(parser)
    argv: list[str] = []
    for key, value in table.items():
        if key == "workdir":
            raise UsageError(f"{where}: `workdir` is set once, at the top of the file")
        if key not in options:
            valid = sorted({a.option_strings[-1][2:] for a in options.values()})
            raise UsageError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        action = options[key]
        flag = next(f for f in action.option_strings if f.startswith("--"))
        value = _resolve(key, value, base)
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise UsageError(f"{where}: {key} is a switch: write {key} = true or false")
            argv += [flag] if value else []
        elif isinstance(value, dict):  # --net = {pooling = "last"}: repeated KEY=VALUE
            if not isinstance(action, argparse._AppendAction):
                raise UsageError(f"{where}: {key} takes a value, not a table")
            for k, v in value.items():
                argv += [flag, f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
        elif isinstance(value, list):
            if action.nargs in ("+", "*"):
                argv += [flag, *map(str, value)]
            elif isinstance(action, argparse._AppendAction):
                for v in value:
                    argv += [flag, str(v)]
            else:  # a comma list on the command line: poolings = ["mean", "std"]
                argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


def _parse(parser: argparse.ArgumentParser, command: str, argv: list[str], where: str
           ) -> argparse.Namespace:
    """Parse with the command's own parser; its complaint becomes a UsageError naming the
    table (argparse would print the usage of `command` and exit)."""
    def refuse(message: str) -> None:
        raise UsageError(f"{where}: {message} (the keys are the flags of `{command}`; see "
                         f"`python run_pipeline.py {command} --help`)")
    saved = parser.error
    parser.error = refuse  # type: ignore[method-assign]
    try:
        return parser.parse_args(argv)
    finally:
        parser.error = saved  # type: ignore[method-assign]


def plan(path: Path) -> list[tuple[str, list[str], argparse.Namespace]]:
    """(command, argument list, parsed arguments) of every step of an experiment file.

    Raises:
        UsageError: an unknown key (named, with the valid ones), a bad value, a missing table.
    """
    doc = _load(path)
    base = path.resolve().parent
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} at the top; valid keys: "
                         f"{', '.join(TOP_KEYS)}")
    if "workdir" not in doc or not isinstance(doc["workdir"], str):
        raise UsageError(f'{path}: the top of the file needs workdir = "FOLDER"')
    workdir = _resolve("workdir", doc["workdir"], base)
    parsers = _subparsers()
    steps: list[tuple[str, list[str], str]] = []
    extract_features: list[str] = []
    if "extract" in doc:
        argv = _argv(f"{path} [extract]", doc["extract"], parsers["extract"], base)
        steps.append(("extract", argv, f"{path} [extract]"))
        feats = _resolve("features", doc["extract"].get("features", []), base)
        extract_features = feats if isinstance(feats, list) else [feats]
    trains = doc.get("train", [])
    trains = [trains] if isinstance(trains, dict) else trains
    if not isinstance(trains, list):
        raise UsageError(f"{path}: train must be a table ([train]) or tables ([[train]])")
    for i, table in enumerate(trains, 1):
        where = f"{path} [[train]] #{i}"
        argv = _argv(where, table, parsers["train"], base)
        if isinstance(table, dict) and "features" not in table and "recipe" not in table:
            if len(extract_features) != 1:
                raise UsageError(f"{where} needs features = [...] (the [extract] table stores "
                                 f"{extract_features or 'none'})")
            argv += ["--features", extract_features[0]]
        steps.append(("train", argv, where))
    report = doc.get("report", True)
    if not isinstance(report, bool):
        raise UsageError(f"{path}: report = true or false, got {report!r}")
    if report:
        steps.append(("report", [], f"{path} report"))
    if not steps:
        raise UsageError(f"{path} has no [extract], [[train]] or report step")
    out = []
    for command, argv, where in steps:
        full = [*argv, "--workdir", workdir]
        out.append((command, full, _parse(parsers[command], command, full, where)))
    return out


def run(args: argparse.Namespace) -> int:
    import shlex

    path = Path(args.experiment)
    steps = plan(path)
    worst = EXIT_OK
    for command, argv, parsed in steps:
        say(f"== {' '.join(shlex.quote(a) for a in ['python', 'run_pipeline.py', command, *argv])}")
        if args.dry_run:
            continue
        rc = int(parsed.func(parsed) or 0)
        if rc == EXIT_CLIPS_FAILED:  # finished, some clips failed (listed): the rest goes on
            worst = rc
        elif rc != EXIT_OK:
            return rc
    return worst
