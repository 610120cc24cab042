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


# ---------------------------------------------------------------------------------------------
# MisGANConfig's declarations and what is made from them


def _train_args(*argv: str) -> argparse.Namespace:
    from misgan_core import cli

    return cli._parser().parse_args(["train", "--out", "r", *argv])


def test_train_takes_every_cli_option_at_its_config_default() -> None:
    from misgan_core import MisGANConfig

    args = _train_args()
    shown = [d for d in options.declarations(MisGANConfig) if CLI in d.option.shows]
    assert len(shown) > 20
    assert {d.name: getattr(args, d.name) for d in shown} == {d.name: d.default for d in shown}
    data = MisGANConfig().data
    assert options.from_namespace(MisGANConfig, args, data=data) == MisGANConfig()
    changed = options.from_namespace(MisGANConfig, _train_args("--lr", "3e-4", "--no-mask-critic", "--imputer",
                                                               "--mask-model", "self-masking"), data=data)
    assert (changed.lr, changed.mask_critic, changed.imputer, changed.mask_model) == (3e-4, False, True,
                                                                                      "self-masking")


def test_every_field_is_reachable_or_marked_internal() -> None:
    """Each field says where a user sets it, and says it truly: a CLI field is an argument of `train`, a page
    field a widget of the Train page's form; one on neither names why."""
    from misgan_core import MisGANConfig, cli

    assert options.unreachable(MisGANConfig) == []
    train = next(a for a in cli._parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    dests = {a.dest for a in train._actions}
    page = {f.name for f in options.form(MisGANConfig)}
    for f in dataclasses.fields(MisGANConfig):
        declared = f.metadata[options.OPTION]
        if f.name == "data":  # DataSpec's own arguments and the page's data picker
            assert {"dataset", "mask", "missing_rate"} <= dests
            continue
        assert (f.name in dests) == (CLI in declared.shows), f.name
        assert (f.name in page) == (PAGE in declared.shows), f.name
        assert declared.shows or declared.internal, f.name


def test_a_new_option_declared_once_reaches_train_help_and_config_json(monkeypatch, capsys, tmp_path) -> None:
    """A scratch option added to a copy of the config: train --help lists it, the page's form has its widget,
    `train` hands it to the config, and config.json's checks know its type."""
    from misgan_core import MisGANConfig, cli
    from misgan_core.runs import CheckpointError

    @dataclass
    class Scratch(MisGANConfig):
        scratch_knob: float = option(0.25, label="Scratch knob", low=0, help="a knob only this test turns",
                                     paper="0.5 (nowhere)")

    monkeypatch.setattr(cli, "MisGANConfig", Scratch)
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--scratch-knob SCRATCH_KNOB a knob only this test turns (default: 0.25; paper: 0.5 (nowhere))" in text
    args = cli._parser().parse_args(["train", "--out", "r", "--scratch-knob", "0.75"])
    assert options.from_namespace(Scratch, args, data=Scratch().data).scratch_knob == 0.75
    assert "train-scratch-knob" in {f.key for f in options.form(Scratch)}
    with pytest.raises(ValueError, match="scratch_knob must be a finite non-negative number; got -1"):
        Scratch(scratch_knob=-1).validate()
    raw = {**Scratch().to_dict(), "scratch_knob": "high"}
    with pytest.raises(CheckpointError, match="config field 'scratch_knob' holds 'high', not a number"):
        Scratch.from_dict(raw)
    assert Scratch.from_dict({**raw, "scratch_knob": 2}).scratch_knob == 2


def test_a_config_json_of_the_wrong_type_is_a_one_line_error_naming_the_field(tmp_path, capsys) -> None:
    import json

    from misgan_core import MisGANConfig
    from misgan_core.cli import main

    run = tmp_path / "r"
    run.mkdir()
    for field, value in (("lr", "fast"), ("imputer", 1), ("temperature", [3]), ("steps", 2.5)):
        raw = {**MisGANConfig().to_dict(), field: value}
        (run / "config.json").write_text(json.dumps(raw))
        assert main(["resume", str(run), "--steps", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"config field {field!r} holds {value!r}" in err, err
        assert json.loads((run / "config.json").read_text()) == raw  # left as it was


def test_docs_options_md_is_what_the_declarations_give() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "options_docs.py"), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr + " (regenerate: python bench/options_docs.py)"
    text = (root / "docs" / "options.md").read_text()
    assert "| `alpha` | auto: by mask model: independent 0.2, self-masking 1" in text
    assert "| 0.2 (section 2) |" in text


def test_the_train_page_draws_a_new_option_and_shows_what_auto_decides(tmp_path, monkeypatch) -> None:
    """The Train page's form is the declarations': a scratch option shows as a widget keyed train-<field>, its
    value reaches the config the page would start; options left empty show as MisGANConfig.resolved decides."""
    from pathlib import Path

    import torch
    from streamlit.testing.v1 import AppTest

    import misgan_core
    from misgan_core import MisGANConfig
    from workbench import state

    seen: list[MisGANConfig] = []

    @dataclass
    class Scratch(MisGANConfig):
        scratch_knob: float = option(0.25, label="Scratch knob", low=0, help="a knob only this test turns")

        def validate(self) -> None:
            seen.append(self)
            super().validate()

    monkeypatch.setenv("MISGAN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(state, "_THREADS", torch.get_num_threads())
    monkeypatch.setattr(misgan_core, "MisGANConfig", Scratch)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "workbench" / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    knob = at.number_input(key="train-scratch-knob")
    assert knob.label == "Scratch knob" and knob.value == 0.25
    knob.set_value(0.75).run()
    assert seen[-1].scratch_knob == 0.75 and seen[-1].alpha is None
    caption = next(c.value for c in at.caption if c.value.startswith("Left empty"))
    assert "alpha (Gm's share of L_x) 0.2" in caption and "Mask temperature lambda 0.66" in caption
    at.selectbox(key="train-mask-model").set_value("self-masking").run()
    caption = next(c.value for c in at.caption if c.value.startswith("Left empty"))
    assert "alpha (Gm's share of L_x) 1" in caption and "Mask temperature lambda 3" in caption
    at.number_input(key="train-alpha").set_value(0.2).run()  # asked for, it is kept
    assert seen[-1].alpha == 0.2 and seen[-1].mask_model == "self-masking"
