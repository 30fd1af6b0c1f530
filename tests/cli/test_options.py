"""``gpuback.cli.options``: ``Numbers``, the one rule for every integer and real option of the
command (and the epochs of ``history.jsonl``), and the argparse types built on it."""

from __future__ import annotations

import argparse
import math

import pytest

from gpuback.cli import options
from gpuback.cli.options import NumberOption, Numbers


@pytest.mark.parametrize(("numbers", "text"), [
    (Numbers(int, low=1), "an integer >= 1"),
    (Numbers(int, low=0), "an integer >= 0"),
    (Numbers(int), "an integer"),
    (Numbers(int, low=2, high=5), "an integer in [2, 5]"),
    (Numbers(float, low=0, low_open=True), "a finite number > 0"),
    (Numbers(float, low=0), "a finite number >= 0"),
    (Numbers(float, high=1, high_open=True), "a finite number < 1"),
    (Numbers(float), "a finite number"),
    (Numbers(float, low=0, high=1, low_open=True, high_open=True), "a number in (0, 1)"),
    (Numbers(float, low=0, high=1, low_open=True), "a number in (0, 1]"),
    (Numbers(float, low=0, high=1, high_open=True), "a number in [0, 1)"),
    (Numbers(float, low=0.5, high=2.5), "a number in [0.5, 2.5]"),
])
def test_numbers_say_what_they_hold(numbers: Numbers, text: str) -> None:
    assert str(numbers) == text


def test_integers_are_ints_and_never_bools() -> None:
    at_least_one = Numbers(int, low=1)
    assert 1 in at_least_one and 10**400 in at_least_one  # no float conversion on the way
    for value in (0, -1, True, 1.0, "1", None, [1]):
        assert value not in at_least_one, value


def test_reals_are_finite_and_take_ints() -> None:
    fraction = Numbers(float, low=0, high=1, low_open=True, high_open=True)
    assert 0.5 in fraction and 1e-300 in fraction
    for value in (0, 1, 0.0, 1.0, math.nan, math.inf, -0.5, True, "0.5"):
        assert value not in fraction, value
    assert 3 in Numbers(float, low=0) and math.inf not in Numbers(float, low=0)
    assert 1.0 in Numbers(float, low=0, high=1) and 0 in Numbers(float, low=0, high=1)


@pytest.mark.parametrize(("option", "text", "value"), [
    (options.POSITIVE_INT, "3", 3),
    (options.POSITIVE_INT, " 7 ", 7),
    (options.NON_NEGATIVE_INT, "0", 0),
    (options.FRACTION, "0.25", 0.25),
    (options.DENSITY, "1", 1.0),
    (options.MOMENTUM, "0", 0.0),
    (options.POSITIVE, "1e-9", 1e-9),
    (options.NON_NEGATIVE, "0", 0.0),
    (options.SCALE, "auto", "auto"),
    (options.SCALE, "255", 255.0),
])
def test_an_option_type_converts_what_it_accepts(option: NumberOption, text: str,
                                                 value: object) -> None:
    converted = option(text)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(("option", "text"), [
    (options.POSITIVE_INT, "0"), (options.POSITIVE_INT, "1.5"), (options.POSITIVE_INT, "x"),
    (options.NON_NEGATIVE_INT, "-1"), (options.FRACTION, "1"), (options.FRACTION, "nan"),
    (options.DENSITY, "0"), (options.MOMENTUM, "1"), (options.POSITIVE, "inf"),
    (options.POSITIVE, "0"), (options.NON_NEGATIVE, "-0.1"), (options.SCALE, "big"),
    (options.SCALE, "0"), (NumberOption(Numbers(int, low=1)), "auto"),
])
def test_an_option_type_refuses_the_rest_saying_what_it_accepts(option: NumberOption,
                                                                text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        option(text)
    assert str(refused.value) == f"expected {option.allowed}, got {text!r}"


def test_the_help_line_shows_what_an_option_accepts_and_its_default() -> None:
    parser = argparse.ArgumentParser()
    options.add_option(parser, "--batch", "samples per step", 32, type=options.POSITIVE_INT)
    options.add_option(parser, "--mode", "how", "full", choices=["full", "direction"])
    options.add_option(parser, "--hidden", "sizes", [128, 64], nargs="+", sentinel=True)
    helps = {a.dest: a.help for a in parser._actions}  # noqa: SLF001
    assert helps["batch"] == "samples per step; an integer >= 1 (default: 32)"
    assert helps["mode"] == "how; one of full, direction (default: full)"
    assert helps["hidden"] == "sizes (default: 128 64)"
    assert parser.parse_args([]).hidden is None  # sentinel: the parser's default is None
