"""The terminal shows what the user asked for: libraries' warnings go to a log file unless -v, and
every argument of every command says what it is in --help."""
import argparse
import json
import warnings
from pathlib import Path

import pytest

from ttsopt import cli
from ttsopt.cli import list as list_command


@pytest.fixture
def warning_command(monkeypatch, tmp_path):
    """`ttsopt list`, made to raise a library's kind of warning before it prints its table."""
    monkeypatch.setenv("TTSOPT_LOG_DIR", str(tmp_path / "logs"))
    real = list_command.run

    def warns_then_lists(args):
        warnings.warn("LoRACompatibleLinear is deprecated", FutureWarning, stacklevel=1)
        return real(args)

    monkeypatch.setattr(list_command, "run", warns_then_lists)
    return tmp_path / "logs" / "list.log"


def test_a_library_warning_goes_to_the_log_file_not_the_terminal(warning_command, capsys):
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert "deprecated" not in err and "deprecated" not in out and "fast-t3" in out
    assert "FutureWarning: LoRACompatibleLinear is deprecated" in warning_command.read_text()


def test_verbose_shows_the_warning_and_writes_no_log(warning_command, capsys):
    with pytest.warns(FutureWarning, match="LoRACompatibleLinear"):
        assert cli.main(["list", "-v"]) == 0
    assert not warning_command.exists()


def test_a_command_with_nothing_to_report_leaves_no_log_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TTSOPT_LOG_DIR", str(tmp_path / "logs"))
    assert cli.main(["list"]) == 0
    assert not (tmp_path / "logs").exists()


def test_a_suites_warnings_are_logged_in_its_results_folder():
    args = cli.build_parser().parse_args(["run", "--out", "results/x", "--variants", "bf16"])
    assert cli.log_file(args) == Path("results/x/logs/ttsopt.log")
    config = json.dumps({"out_dir": "results/x", "run_id": "warmup"})
    args = cli.build_parser().parse_args(["process", config])
    assert cli.log_file(args) == Path("results/x/logs/warmup.process.log")


def test_warnings_are_shown_as_before_once_the_command_ends(warning_command, capsys):
    cli.main(["list"])
    with pytest.warns(UserWarning, match="after"):
        warnings.warn("after", UserWarning, stacklevel=1)


def test_every_argument_of_every_command_has_help():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [f"{name} {action.dest}" for name, command in commands.items() for action in command._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == [], missing
