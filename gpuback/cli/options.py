"""How the ``gpuback`` commands declare their options: types that the parser checks
(``Numbers``, the one rule for every integer and real option), and help lines that state
what an option accepts and its default."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, cast

from ..core.checks import is_integer, is_real

JSON_HELP = "stdout is one JSON document, the report; every other line goes to stderr"


@dataclasses.dataclass(frozen=True)
class Numbers:
    """The integers (``kind`` int; never a bool) or the finite reals (``kind`` float; an int
    is one) from ``low`` to ``high``, each bound included unless it is ``*_open``; None: no
    bound. ``value in numbers`` tests a value, ``str(numbers)`` says what is accepted."""

    kind: type[int] | type[float]
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if not (is_integer(value) if self.kind is int else is_real(value)):
            return False
        number = cast(float, value)  # an integer (never converted) or a finite real
        low, high = self.low, self.high
        return ((low is None or number > low or (number == low and not self.low_open)) and
                (high is None or number < high or (number == high and not self.high_open)))

    def __str__(self) -> str:
        """"an integer >= 1", "a finite number > 0", "a number in (0, 1]"."""
        if self.low is not None and self.high is not None:
            what = "an integer" if self.kind is int else "a number"  # finite: it is bounded
            return (f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {self.high:g}"
        return what


class NumberOption:
    """An argparse ``type=``: the option's text as one of ``numbers`` (with ``auto``, the word
    ``auto`` too); ``allowed`` says what is accepted (the help line shows it; argparse
    prefixes an error with the option's name)."""

    def __init__(self, numbers: Numbers, auto: bool = False) -> None:
        self.numbers, self.auto = numbers, auto
        self.allowed = ("'auto' or " if auto else "") + str(numbers)

    def __call__(self, text: str) -> int | float | str:
        if self.auto and text == "auto":
            return text
        try:
            value: int | float | None = self.numbers.kind(text)
        except ValueError:
            value = None
        if value is None or value not in self.numbers:
            raise argparse.ArgumentTypeError(f"expected {self.allowed}, got {text!r}")
        return value


POSITIVE_INT = NumberOption(Numbers(int, low=1))
NON_NEGATIVE_INT = NumberOption(Numbers(int, low=0))
FRACTION = NumberOption(Numbers(float, low=0, high=1, low_open=True, high_open=True))
DENSITY = NumberOption(Numbers(float, low=0, high=1, low_open=True))
MOMENTUM = NumberOption(Numbers(float, low=0, high=1, high_open=True))
PROBABILITY = MOMENTUM  # a dropout probability: [0, 1) too
POSITIVE = NumberOption(Numbers(float, low=0, low_open=True))
NON_NEGATIVE = NumberOption(Numbers(float, low=0))
SCALE = NumberOption(Numbers(float, low=0, low_open=True), auto=True)


def show_value(value: Any) -> str:
    """A default as the help and the command-line reference show it."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_option(parser: argparse.ArgumentParser, flag: str, text: str, default: Any = None,
               shown: str | None = None, sentinel: bool = False, **kwargs: Any) -> None:
    """Add option ``flag`` whose help is ``text``, then what it accepts (``choices`` or the
    ``type``'s ``allowed``) and its default (``shown``, else the default itself).
    ``sentinel``: the parser's default is None (train: to tell given from defaulted)."""
    allowed = kwargs.get("choices")
    extra = (f"one of {', '.join(map(str, allowed))}" if allowed else
             getattr(kwargs.get("type"), "allowed", None))
    help_text = text + (f"; {extra}" if extra else "")
    if shown is not None or default is not None:
        help_text += f" (default: {shown if shown is not None else show_value(default)})"
    parser.add_argument(flag, default=None if sentinel else default, help=help_text, **kwargs)


def add_json_flag(parser: argparse.ArgumentParser, what: str = JSON_HELP) -> None:
    """``--json``: stdout is one JSON document (``what`` says which)."""
    parser.add_argument("--json", action="store_true", help=f"{what} (default: off)")


def add_out_file(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out FILE`` (``what`` it is; stdout by default) and ``--overwrite``."""
    add_option(parser, "--out", what, metavar="FILE", shown="stdout")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (default: off)")


__all__ = ["DENSITY", "FRACTION", "JSON_HELP", "MOMENTUM", "NON_NEGATIVE", "NON_NEGATIVE_INT",
           "POSITIVE", "POSITIVE_INT", "SCALE", "NumberOption", "Numbers", "add_json_flag",
           "add_option", "add_out_file", "show_value"]
