"""The CLI feels finished: `--help` on every command describes every option; user errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from sunrise_assets.cli.app import app

runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def _commands(group, path: tuple[str, ...] = ()):
    """(path, command) for every command and sub-group, depth first (typer's vendored click)."""
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*path, name), command
        if hasattr(command, "list_commands"):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))
assert any(len(p) == 2 for p, _ in COMMANDS), "sub-commands (sunrise psg ...) must be listed too"


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"], env=ENV)
    assert result.exit_code == 0, result.output
    for path, command in COMMANDS:
        if len(path) == 1:
            assert path[0] in result.stdout
            assert command.help or command.short_help, f"`sunrise {path[0]}` has no description"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_of_every_command_has_help(path):
    command = dict(COMMANDS)[path]
    result = runner.invoke(app, [*path, "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    assert (command.help or "").strip(), f"`sunrise {' '.join(path)}` has no description"
    for param in command.params:
        if param.name in {"help", "install_completion", "show_completion"}:
            continue
        assert (getattr(param, "help", None) or "").strip(), (
            f"`sunrise {' '.join(path)}`: {param.name} has no help text"
        )
        if param.param_type_name == "option" and not getattr(param, "hidden", False):  # hidden: test-only switches
            assert any(opt in result.stdout for opt in param.opts), f"{param.opts} missing from --help of {path}"


def _sunrise(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from sunrise_assets.cli.app import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV, **(env or {})},
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--nights", "0"], "--nights"),
        (["generate", "--no-such-option"], "No such option"),
        (["refresh", "--from", "platinum"], "--from must be one of"),
        (["forget", "not-a-night", "--yes"], "is not a night key"),
        (["no-such-command"], "No such command"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path):
    proc = _sunrise(*args, env={"SUNRISE_WORKDIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_missing_pseudonym_key_is_a_user_error(tmp_path):
    (tmp_path / "bucket" / "raw").mkdir(parents=True)
    env = {
        "SUNRISE_WORKDIR": str(tmp_path),
        "SUNRISE_PSEUDONYM_KEY": "",
        "SUNRISE_ALLOW_DEMO_KEY": "",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SUNRISE_BUCKET": "",
        "SUNRISE_WAREHOUSE_URL": "",
    }
    proc = _sunrise("register", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "SUNRISE_PSEUDONYM_KEY" in proc.stderr
