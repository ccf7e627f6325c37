"""``homecare --help`` and every sub-command's help are complete: each option's help and
default shown as written (nothing taken for markup), one summary line per command, the
version from the package, and the gateway's help pointing to the settings reference."""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from homecare.cli import app

runner = CliRunner()


def _commands() -> list[tuple[list[str], Any]]:
    """Every command of the tree (typer's click objects) with the arguments that reach it."""
    out: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        out.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], typer.main.get_command(app))
    return out


def _flat(text: str) -> str:
    """Help text without its white space (line breaks and indentation, also where a long word
    was broken at a hyphen) and box drawing."""
    return "".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


COMMANDS = _commands()


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(path) or "homecare" for path, _ in COMMANDS])
def test_every_option_shows_its_whole_help_and_default(path: list[str], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    for param in command.params:
        help_text = getattr(param, "help", None)
        if help_text:
            assert _flat(help_text) in shown, (
                f"{' '.join(path)} {param.name}: help not shown as written:\n{result.output}")
        default = param.default
        if (param.param_type_name == "option" and not param.is_flag and default is not None
                and param.show_default is not False and param.name != "help"):
            assert re.search(rf"\[default:{re.escape(_flat(str(default)))}\]", shown), (
                f"{' '.join(path)} --{param.name}: default {default!r} not shown:\n"
                f"{result.output}")


def test_the_command_list_has_a_whole_summary_per_command() -> None:
    for path, command in COMMANDS:
        if not hasattr(command, "commands"):
            continue
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0
        lines = result.output.splitlines()
        for name in command.commands:
            rows = [line for line in lines if line.strip(" │").startswith(f"{name} ")]
            assert len(rows) == 1, f"{name} not listed once in:\n{result.output}"
            row = rows[0].strip(" │")
            summary = row[len(name):].strip()
            broken = f"{' '.join(path)} {name}: summary cut or broken: {row!r}\n{result.output}"
            assert summary.endswith("."), broken
            assert not summary.endswith("..."), broken
            after = lines.index(rows[0]) + 1
            following = lines[after].strip(" │") if after < len(lines) else ""
            assert not following or following.split()[0] in command.commands \
                or following.endswith(":") or following.startswith(("╰", "─")), (
                f"{name}: summary runs over to a second line: {following!r}")


def test_version_comes_from_the_package() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"homecare {version('homecare-gateway')}"


def test_gateway_help_points_to_the_settings_reference() -> None:
    result = runner.invoke(app, ["gateway", "--help"])
    shown = _flat(result.output)
    for reference in ("deploy/gateway.example.toml", "README.md", "homecare config check"):
        assert _flat(reference) in shown, result.output
