"""MkDocs hook: the command-line reference, written from ``gpuback``'s argparse parser.

``docs/reference/cli.md`` holds the marker ``<!-- cli-options -->``; at build time it
becomes, for every command, its summary, its usage line and a table of its options with
their defaults, read from the parser ``gpuback --help`` prints. Nothing of it is written by
hand, so it cannot drift from the code (``tests/docs/test_reference.py`` checks it too).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

MARKER = "<!-- cli-options -->"
DEFAULT = re.compile(r"^(?P<what>.*?)\s*\(default: (?P<default>.*)\)$", re.S)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, Any]]:
    """Each command's name -> (its one-line help, its parser), in ``--help``'s order."""
    sub = next(a for a in parser._actions  # noqa: SLF001
               if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}  # noqa: SLF001
    return {name: (helps.get(name, ""), p) for name, p in sub.choices.items()}


def _cell(text: str) -> str:
    """``text`` as one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        if action.option_strings:
            flag = ", ".join(action.option_strings)
            metavar = action.metavar or (None if action.nargs == 0 else action.dest.upper())
            if action.choices is not None and action.metavar is None:
                metavar = None
            shown = f"{flag} {metavar}" if metavar else flag
        else:
            shown = action.metavar or action.dest.upper()
        text = (action.help or "") % {**vars(action), "prog": parser.prog}
        found = DEFAULT.match(" ".join(text.split()))
        what, default = (found["what"], found["default"]) if found else (text, "")
        rows.append(f"| `{shown}` | {_cell(default)} | {_cell(what)} |")
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().strip()
    return usage.removeprefix("usage: ")


def _command_section(name: str, summary: str, parser: argparse.ArgumentParser,
                     level: int = 2) -> list[str]:
    lines = [f"{'#' * level} `gpuback {name}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    lines += ["```text", _usage(parser), "```", ""]
    rows = _option_rows(parser)
    if rows:
        lines += ["| option | default | what it does and what it accepts |", "|---|---|---|",
                  *rows, ""]
    nested = [a for a in parser._actions  # noqa: SLF001
              if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    if nested:
        for shape, (text, shape_parser) in _subcommands(parser).items():
            lines += _command_section(f"{name} {shape}", text, shape_parser, level + 1)
    return lines


def cli_markdown() -> str:
    """The reference of every ``gpuback`` command, as Markdown."""
    from gpuback.cli.app import build_parser  # the docs build imports gpuback

    parser = build_parser()
    lines: list[str] = []
    for name, (summary, command) in _subcommands(parser).items():
        lines += _command_section(name, summary, command)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs' hook: fill the marker of the page that has one."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())
