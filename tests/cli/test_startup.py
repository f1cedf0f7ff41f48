"""Start-up of the command line: a command imports only its own module, so the commands that
need no torch (list, report, recipes, verify, ...) never pay for importing it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, build_parser, invoked_module

ROOT = Path(__file__).resolve().parents[2]


def _subcommands(parser) -> set[str]:
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_whole_parser_has_every_command():
    assert _subcommands(build_parser()) == set(COMMANDS)


@pytest.mark.parametrize("argv, module", [
    (["list", "--workdir", "w"], "cli.cmd_store"),
    (["-v", "-v", "verify", "--workdir", "w"], "cli.cmd_store"),
    (["-q", "report"], "cli.cmd_report"),
    (["--help"], None),
    (["list", "--help"], "cli.cmd_store"),
    (["--version", "list"], None),
    (["no-such-command"], None),
    ([], None),
])
def test_invoked_module(argv, module):
    assert invoked_module(argv) == module


def test_one_command_builds_its_module_only():
    parser = build_parser(["list", "--workdir", "w"])
    assert _subcommands(parser) == {"list", "export", "verify", "merge"}  # one module, four commands
    args = parser.parse_args(["list", "--workdir", "w"])
    assert args.command == "list" and args.workdir == "w"


def test_unknown_command_lists_every_choice(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser(["no-such-command"]).parse_args(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS)


@pytest.mark.parametrize("argv", [["list", "--json"], ["verify"], ["report"],
                                  ["recipes", "slabcnu-lstm"],
                                  ["recipes", "--fidelity", "slabcnu-lstm"],
                                  ["recipes"], ["recipes", "--fidelity"],
                                  ["recipes", "ser-mtl"], ["recipes", "--fidelity", "ser-mtl"]])
def test_light_commands_do_not_import_torch(tmp_path, argv):
    listing = argv[0] == "recipes" and argv[-1] in ("recipes", "--fidelity")  # no NAME, no workdir
    args = argv if listing else argv + ["--workdir", str(tmp_path)]
    code = ("import sys, json\nfrom cli.main import main\n"
            f"rc = main({args!r})\n"
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["torch"] is False, out.stderr[-2000:]
    if argv[0] == "recipes":
        assert last["rc"] == 0, out.stderr[-2000:]
    if argv[-1] == "slabcnu-lstm":  # a train-stage recipe, its head checked by heads.catalog
        assert "slabcnu-lstm" in out.stdout, out.stderr[-2000:]
        if "--fidelity" not in argv:  # a sequence head: its extract command stores frames
            assert "--frames-layers 12" in out.stdout
    if argv[0] == "recipes" and argv[-1] != "slabcnu-lstm":
        # every recipe, or one of the fine-tune stage: FinetuneConfig.check() ran without torch
        assert "ser-mtl" in out.stdout, out.stderr[-2000:]
