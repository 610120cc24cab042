"""Every option declared once (misgan_core/options.py): the declaration on a config field makes the command
line's argument, the Train page's widget, config.json's check, --misgan-set's parsing and the docs' row."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from misgan_core import options
from misgan_core.options import BOTH, CLI, NOWHERE, PAGE, OptionError, option


@dataclass
class Toy:
    """A config of every kind of field the declarations support."""

    rate: float = option(0.5, help="a rate", label="Rate", low=0, high=1, open_high=True, paper="0.2 (eq. 7)")
    steps: int = option(10, help="how many", low=1, shows=(CLI,))
    mode: str = option("a", help="which", choices=("a", "b"), choice_labels={"a": "A mode"})
    on: bool = option(False, help="switch it on")
    kept: bool = option(True, help="switch it off with --no-kept", shows=(CLI,))
    lam: float | None = option(None, help="a lambda", auto="by the mode", low=0, open_low=True)
    pair: list[float] = option(default_factory=lambda: [0.5, 0.9], help="two numbers", shows=(CLI,))
    quiet: int = option(3, help="not for users", shows=NOWHERE, internal="set by the sweep")


def _parser(config_class: type = Toy) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, config_class)
    return parser


def test_the_command_line_takes_every_cli_field_at_its_default_and_gives_the_config_back() -> None:
    args = _parser().parse_args([])
    assert options.from_namespace(Toy, args) == Toy()
    args = _parser().parse_args(["--rate", "0.25", "--steps", "3", "--mode", "b", "--on", "--no-kept", "--lam",
                                 "2", "--pair", "0", "0.99"])
    assert options.from_namespace(Toy, args) == Toy(0.25, 3, "b", True, False, 2.0, [0.0, 0.99])
    text = _parser().format_help()
    assert "--quiet" not in text and "(default: 0.5; paper: 0.2 (eq. 7))" in text
    assert "default: by the mode" in text
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "c"])


def test_the_form_has_the_page_fields_with_their_keys_defaults_and_bounds() -> None:
    spec = {f.name: f for f in options.form(Toy, starting={"on": True})}
    assert list(spec) == ["rate", "mode", "on", "lam"]  # steps, kept, pair: CLI only; quiet: internal
    assert spec["rate"].key == "train-rate" and spec["rate"].kind == "number" and spec["rate"].label == "Rate"
    assert spec["rate"].kwargs == {"min_value": 0.0, "max_value": 1.0} and "Paper: 0.2 (eq. 7)." in spec["rate"].help
    assert spec["mode"].kind == "select" and spec["mode"].choices == {"a": "A mode", "b": "b"}
    assert spec["on"].kind == "checkbox" and spec["on"].value is True  # the page's starting value
    assert spec["lam"].value is None and spec["lam"].placeholder == "auto: by the mode"
    config = options.from_form(Toy, {"rate": 1 / 4, "mode": "b", "on": True, "lam": None}, steps=4)
    assert config == Toy(rate=0.25, steps=4, mode="b", on=True)


def test_checks_name_the_field_and_what_it_takes() -> None:
    assert options.problems(Toy()) == []
    bad = Toy(rate=1.0, steps=0, mode="c", on=1, lam=0.0, pair=["x"])  # type: ignore[arg-type]
    assert options.problems(bad) == [
        "rate must be a number in [0, 1); got 1.0", "steps must be at least 1; got 0",
        "mode must be one of a, b; got 'c'", "on must be a bool (true or false); got 1",
        "lam must be a finite positive number; got 0.0", "pair must be a list of numbers; got ['x']"]
    assert options.problems(Toy(rate=float("nan"))) == ["rate must be a number in [0, 1); got nan"]
    assert options.json_problems(Toy, {"rate": "0.5", "lam": None, "steps": 2.0, "on": True}) == [
        "config field 'rate' holds '0.5', not a number", "config field 'steps' holds 2.0, not a whole number"]


def test_assignments_parse_by_type_and_refuse_with_one_line() -> None:
    parsed = options.parse_assignments(Toy, ["rate=0.25", "mode=b", "on=true", "lam=none", "pair=0,0.9",
                                             "quiet=4"], flag="--set")
    assert parsed == {"rate": 0.25, "mode": "b", "on": True, "lam": None, "pair": [0.0, 0.9], "quiet": 4}
    for item, message in (("bogus=1", "unknown option 'bogus' in --set"), ("on=3", "not a bool"),
                          ("mode=c", "mode must be one of a, b"), ("steps=0", "steps must be at least 1"),
                          ("rate", "expects name=value"), ("steps=1.5", "not a whole number")):
        with pytest.raises(OptionError, match=message):
            options.parse_assignments(Toy, [item], flag="--set")
    with pytest.raises(OptionError, match="unknown option 'steps'"):
        options.parse_assignments(Toy, ["steps=3"], flag="--set", exclude=("steps",))
    with pytest.raises(OptionError, match="mode must be one of"):
        options.check_assignments(Toy, {"mode": "z"}, flag="--set")


def test_a_field_without_a_declaration_or_a_place_is_found() -> None:
    @dataclass
    class Undeclared(Toy):
        plain: int = 3

    with pytest.raises(TypeError, match="Undeclared.plain has no declaration"):
        options.declarations(Undeclared)
    assert options.unreachable(Undeclared) == ["plain"]
    assert options.unreachable(Toy) == []
    with pytest.raises(TypeError, match="says why"):
        option(1, help="hidden", shows=NOWHERE)
    with pytest.raises(TypeError, match="needs a help"):
        option(1, help="")
    assert set(BOTH) == {CLI, PAGE}


def test_the_docs_table_has_a_row_per_field() -> None:
    text = options.markdown(Toy, "Toy options", "Made by a test.")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [f.name for f in dataclasses.fields(Toy)]
    assert "| `rate` | `0.5` | 0.2 (eq. 7) | `--rate`; page: Rate (Hyper-parameters) |" in text
    assert "`--no-kept`" in text and "internal: set by the sweep" in text and "auto: by the mode" in text
