"""README: its command table → the `nba` command tree (Typer/Click's own objects, not help text), and its
list of call reasons → nba.vocab. So neither can drift from the code again."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from nba.vocab import CALL_REASONS
from training.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(nba [^`]*)` \|")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


@cache
def leaf_commands() -> dict[tuple[str, ...], Any]:
    """Every command and subcommand of `nba`, by its path of names: ("models", "list") → the command.

    Built once per process (every test here reads it): Typer builds the tree by reading every command's
    signature, ~20 ms each time, and the parametrized test below asked for it twice per command.
    """
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group: its subcommands
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = command

    walk(typer.main.get_command(app), ())
    return found


def option_names(command: Any) -> list[set[str]]:
    """Each option of `command` as the set of names it answers to (`--quiet`, `-q`; `--promote`, `--no-promote`)."""
    return [
        set(param.opts) | set(param.secondary_opts)
        for param in command.params
        if getattr(param, "param_type_name", "") == "option"
    ]


def documented_rows(commands: dict[tuple[str, ...], Any]) -> dict[tuple[str, ...], str]:
    """The command table's rows: the command's path → its usage cell (between the backticks)."""
    rows: dict[tuple[str, ...], str] = {}
    for line in README.read_text().splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        usage = match.group(1)
        words = usage.split()[1:]
        path = next(
            (tuple(words[:n]) for n in range(len(words), 0, -1) if tuple(words[:n]) in commands), None
        )
        assert path is not None, f"README row names no nba command: {usage}"
        assert path not in rows, f"README has two rows for nba {' '.join(path)}"
        rows[path] = usage
    return rows


def test_every_command_has_one_row_in_the_readme_command_table() -> None:
    commands = leaf_commands()
    assert set(documented_rows(commands)) == set(commands)


@pytest.mark.parametrize("path", sorted(leaf_commands()), ids=" ".join)
def test_the_readme_row_names_exactly_the_command_s_options(path: tuple[str, ...]) -> None:
    command = leaf_commands()[path]
    usage = documented_rows(leaf_commands())[path]
    shown = set(OPTION.findall(usage))
    options = option_names(command)
    missing = [sorted(names) for names in options if not names & shown]
    assert not missing, f"nba {' '.join(path)}: the README does not show {missing}"
    known = set().union(*options) if options else set()
    assert shown <= known, (
        f"nba {' '.join(path)}: the README shows {sorted(shown - known)}, not options of it"
    )


def test_the_readme_lists_every_call_reason() -> None:
    text = README.read_text()
    listed = text.split("**Call reasons** (`call_reason=`):", 1)[1].split(".", 1)[0]  # the first sentence
    assert re.findall(r"`([a-z_]+)`", listed) == list(CALL_REASONS)
