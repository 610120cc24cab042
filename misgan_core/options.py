"""Every option declared once: a config dataclass's fields carry their declaration, and this module makes from it
the command line's arguments, the Train page's form, config.json's checks, `--misgan-set`'s parsing and the docs'
option table.

A field is declared with `option(...)` in place of `dataclasses.field(...)`:

    @dataclass
    class Config:
        lr: float = option(1e-4, label="Learning rate", help="Adam's step size.", paper="1e-4 (appendix D)",
                           low=0, section="hyper")

Its type is the field's annotation (bool, int, float, str, a list of them, or any of these or None); its
default is the field's default, written nowhere else. `shows` says where a user sets it: on the command line
(CLI), on the Train page (PAGE) or both; a field that is on neither names why (`internal="..."`), and
`unreachable` lists those that do neither (a test keeps it empty). A field whose type is itself a dataclass
(MisGANConfig.data, a DataSpec) has generators of its own and is skipped here.

Dataclass metadata with a generator of our own, not pydantic: the config stays a plain dataclass (built
positionally, copied with `dataclasses.replace`, no dependency beyond the standard library), config.json is
checked strictly (pydantic's lax mode would turn "3" into 3 where a run folder's file is wrong), and the five
generators below need the declaration's UI parts (label, section, where it shows) that a validation library
does not model anyway.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import OptionError  # also for values given by name: --misgan-set NAME=VALUE, a sweep's options

CLI = "cli"
PAGE = "page"
BOTH = (CLI, PAGE)
NOWHERE: tuple[str, ...] = ()
OPTION = "option"  # the metadata key a declaration sits under
SECTIONS = {"main": "Model and training", "hyper": "Hyper-parameters (defaults are the paper's)"}


@dataclass(frozen=True)
class Option:
    """How one config field shows to users. The type and default are the field's own."""

    help: str                                  # what it does: one or two sentences, the rule not a measurement
    label: str = ""                            # the page's label and the docs' name (default: the field's name)
    shows: tuple[str, ...] = BOTH              # CLI, PAGE, both, or NOWHERE with `internal`
    internal: str = ""                         # why a field is on neither the command line nor the page
    paper: str = ""                            # the paper's value and where it gives it, e.g. "0.66 (section 5)"
    choices: tuple[Any, ...] = ()              # the values it takes (a str or int field)
    choice_labels: Mapping[Any, str] = dataclasses.field(default_factory=dict)  # the page's words for them
    low: float | None = None                   # bounds of a number (inclusive unless open_low / open_high)
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    range_words: str = ""                      # the bounds in words for the message, e.g. "a decay in [0, 1)"
    auto: str = ""                             # a None default: what it is decided to when the run is made
    flag: str = ""                             # the CLI flag: default --field-name (--no-field-name for a bool
                                               # that defaults to True)
    metavar: str | None = None                 # the CLI's name for its value, e.g. LAMBDA
    section: str = "hyper"                     # the page's section: a key of SECTIONS
    widget: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # extra page widget arguments:
                                               # step, format, min_value / max_value where the page's range is
                                               # narrower than the bounds, horizontal (a radio)

    def __post_init__(self) -> None:
        if not self.help:
            raise TypeError("an option needs a help text")
        if not set(self.shows) <= {CLI, PAGE}:
            raise TypeError(f"shows takes {CLI!r} and {PAGE!r}; got {self.shows!r}")
        if not self.shows and not self.internal:
            raise TypeError("an option on neither the command line nor the page says why (internal='...')")
        if self.section not in SECTIONS:
            raise TypeError(f"section must be one of {', '.join(SECTIONS)}; got {self.section!r}")


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           **declaration: Any) -> Any:
    """A dataclass field that carries its declaration (the keyword arguments of Option)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={OPTION: Option(**declaration)})


# ---------------------------------------------------------------------------------------------
# Reading the declarations


@dataclass(frozen=True)
class ValueType:
    """A field's type, from its annotation: bool, int, float or str, a list of one, each maybe None."""

    base: type
    optional: bool = False
    is_list: bool = False

    def words(self) -> str:
        name = {bool: "bool (true or false)", int: "whole number", float: "number", str: "string"}[self.base]
        name = f"list of {name}s" if self.is_list else name
        return f"{name} or null" if self.optional else name

    def fits(self, value: Any) -> bool:
        """Whether a JSON value is of this type (strictly: 1 is not a bool, True is not a number)."""
        if value is None:
            return self.optional
        if self.is_list:
            return isinstance(value, (list, tuple)) and all(_fits_base(v, self.base) for v in value)
        return _fits_base(value, self.base)

    def parse(self, text: str) -> Any:
        """A value from the command line's text (as `--misgan-set name=value` gives it)."""
        if self.optional and text.strip().lower() in ("none", "null", "auto", ""):
            return None
        if self.is_list:
            return [self._parse_one(t) for t in text.replace(",", " ").split()]
        return self._parse_one(text)

    def _parse_one(self, text: str) -> Any:
        word = text.strip()
        if self.base is bool:
            if word.lower() in ("true", "yes", "on", "1"):
                return True
            if word.lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError(word)
        return self.base(word)


def _fits_base(value: Any, base: type) -> bool:
    if isinstance(value, bool):
        return base is bool
    if base is float:
        return isinstance(value, (int, float))
    return isinstance(value, base)


@dataclass(frozen=True)
class Declared:
    """One field with its declaration: name, type, default, and the Option."""

    name: str
    type: ValueType
    default: Any
    option: Option

    @property
    def label(self) -> str:
        return self.option.label or self.name

    @property
    def flag(self) -> str:
        if self.option.flag:
            return self.option.flag
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.type.base is bool and self.default is True else f"--{dashed}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this option, in one clause; None when it fits."""
        if not self.type.fits(value):
            return f"{self.name} must be a {self.type.words()}; got {value!r}"
        if value is None:
            return None
        o = self.option
        if o.choices and value not in o.choices:
            return f"{self.name.replace('_', ' ')} must be one of {', '.join(map(str, o.choices))}; got {value!r}"
        if self.type.base in (int, float) and not self.type.is_list and not _within(value, o):
            return f"{self.name} must be {self.range_words()}; got {value}"
        return None

    def range_words(self) -> str:
        o = self.option
        if o.range_words:
            return o.range_words
        if self.type.base is int and o.high is None and o.low is not None:
            return "0 or more" if o.low == 0 else f"at least {o.low:g}"
        if o.low is not None and o.high is None and o.low == 0:
            return f"a finite {'positive' if o.open_low else 'non-negative'} number"
        if o.low is None and o.high is None:
            return "a finite number"
        return f"a number in {'(' if o.open_low else '['}{o.low:g}, {o.high:g}{')' if o.open_high else ']'}"


def _within(value: float, o: Option) -> bool:
    if not math.isfinite(value):
        return False
    if o.low is not None and (value < o.low or (o.open_low and value == o.low)):
        return False
    return o.high is None or not (value > o.high or (o.open_high and value == o.high))


def _value_type(annotation: Any) -> ValueType | None:
    """The ValueType of an annotation; None for a nested dataclass (it has generators of its own)."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"an option's type is one type or it and None; got {annotation}")
        annotation = args[0]
    if typing.get_origin(annotation) in (list, tuple):
        (item, *_) = typing.get_args(annotation)
        return ValueType(item, optional, is_list=True)
    if dataclasses.is_dataclass(annotation):
        return None
    if annotation not in (bool, int, float, str):
        raise TypeError(f"an option is a bool, int, float or str (or a list of one); got {annotation}")
    return ValueType(annotation, optional)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"option {f.name!r} needs a default")


def declarations(config_class: type) -> list[Declared]:
    """The declared fields of a config dataclass, in field order (nested dataclass fields left out). Raises
    TypeError for a field with no declaration: every field is declared."""
    hints = typing.get_type_hints(config_class)
    found = []
    for f in dataclasses.fields(config_class):
        if OPTION not in f.metadata:
            raise TypeError(f"{config_class.__name__}.{f.name} has no declaration: write it with options.option()")
        value_type = _value_type(hints[f.name])
        if value_type is not None:
            found.append(Declared(f.name, value_type, _default(f), f.metadata[OPTION]))
    return found


def unreachable(config_class: type) -> list[str]:
    """Fields a user can set from neither the command line nor the Train page and not marked internal."""
    return [f.name for f in dataclasses.fields(config_class)
            if OPTION not in f.metadata or not (f.metadata[OPTION].shows or f.metadata[OPTION].internal)]


# ---------------------------------------------------------------------------------------------
# Checks: config.json and values built in Python


def problems(config: Any) -> list[str]:
    """Every declared field of a config whose value does not fit its type, choices or bounds, one clause each."""
    found = []
    for d in declarations(type(config)):
        problem = d.problem(getattr(config, d.name))
        if problem:
            found.append(problem)
    return found


def json_problems(config_class: type, raw: Mapping[str, Any]) -> list[str]:
    """config.json's entries whose value is not of its field's type (only the type: the config's own checks
    judge the values once it is built)."""
    return [f"config field {d.name!r} holds {raw[d.name]!r}, not a {d.type.words()}"
            for d in declarations(config_class) if d.name in raw and not d.type.fits(raw[d.name])]


def parse_assignments(config_class: type, items: Iterable[str], flag: str, kind: str = "option",
                      exclude: Sequence[str] = ()) -> dict[str, Any]:
    """`name=value` texts (e.g. --misgan-set's) as {field: value}, each value parsed by its field's type and
    checked against its declaration. Raises OptionError naming the first that does not fit."""
    known = {d.name: d for d in declarations(config_class) if d.name not in exclude}
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise OptionError(f"{flag} expects name=value; got {item!r}")
        if name not in known:
            raise OptionError(f"unknown {kind} {name!r} in {flag}; choose from {', '.join(sorted(known))}")
        declared = known[name]
        try:
            value = declared.type.parse(text)
        except ValueError:
            raise OptionError(f"{flag} {item}: {name} takes a {declared.type.words()}, and {text!r} is not "
                              f"a {declared.type.words()}") from None
        problem = declared.problem(value)
        if problem:
            raise OptionError(f"{flag} {item}: {problem}")
        values[name] = value
    return values


def check_assignments(config_class: type, values: Mapping[str, Any], flag: str, kind: str = "option",
                      exclude: Sequence[str] = ()) -> None:
    """Values given in Python for the fields of a config (e.g. a sweep's MisGAN options): known names, each of
    its field's type, choices and bounds. Raises OptionError naming the first that does not fit."""
    known = {d.name: d for d in declarations(config_class) if d.name not in exclude}
    for name, value in values.items():
        if name not in known:
            raise OptionError(f"unknown {kind} {name!r} in {flag}; choose from {', '.join(sorted(known))}")
        problem = known[name].problem(value)
        if problem:
            raise OptionError(f"{flag} {name}={value!r}: {problem}")


# ---------------------------------------------------------------------------------------------
# The command line


def _cli_help(d: Declared) -> str:
    o = d.option
    if d.type.base is bool and not d.type.optional:
        default = ""
    elif d.default is None:
        default = f"default: {o.auto}" if o.auto else "default: not set"
    else:
        default = f"default: {_shown(d.default)}"
    paper = f"paper: {o.paper}" if o.paper else ""
    tail = "; ".join(part for part in (default, paper) if part)
    return (o.help + (f" ({tail})" if tail else "")).replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_class: type) -> None:
    """The command-line arguments of every field shown on the CLI, in field order; each argument's dest is its
    field's name, so that `from_namespace` reads them back."""
    for d in declarations(config_class):
        if CLI not in d.option.shows:
            continue
        kwargs: dict[str, Any] = {"dest": d.name, "help": _cli_help(d)}
        if d.type.base is bool and not d.type.is_list:
            if d.type.optional:
                kwargs.update(action=argparse.BooleanOptionalAction, default=d.default)
            else:
                kwargs.update(action="store_false" if d.default is True else "store_true")
        else:
            kwargs.update(type=d.type.base, default=d.default)
            if d.type.is_list:
                kwargs["nargs"] = len(d.default) if d.default else "+"
            if d.option.choices:
                kwargs["choices"] = list(d.option.choices)
            if d.option.metavar:
                kwargs["metavar"] = d.option.metavar
        parser.add_argument(d.flag, **kwargs)


def from_namespace(config_class: type, args: argparse.Namespace, **others: Any) -> Any:
    """The config the parsed command line describes: every CLI field from `args`, the rest at its default or
    from `others` (e.g. data=DataSpec.from_args(args))."""
    values = {d.name: getattr(args, d.name) for d in declarations(config_class) if CLI in d.option.shows}
    return config_class(**values, **others)


# ---------------------------------------------------------------------------------------------
# The Train page's form


@dataclass(frozen=True)
class FormField:
    """One widget of the Train page, as the page draws it: `kind` is checkbox, select, radio or number."""

    name: str
    key: str
    kind: str
    label: str
    value: Any                          # the starting value (None: the number field starts empty, 'auto')
    help: str
    section: str
    choices: dict[Any, str] = dataclasses.field(default_factory=dict)  # value -> the words shown
    placeholder: str | None = None
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)   # min_value, max_value, step, format, ...


def form(config_class: type, key_prefix: str = "train", starting: Mapping[str, Any] | None = None) -> list[FormField]:
    """The page's widgets for every field shown on the page, in field order. Each widget's key is
    `{key_prefix}-{field-name}`; `starting` replaces a default as the widget's first value (the page may start
    from a longer run than the library's default)."""
    starting = dict(starting or {})
    out = []
    for d in declarations(config_class):
        if PAGE not in d.option.shows:
            continue
        o = d.option
        value = starting.get(d.name, d.default)
        help_text = o.help + (f" Paper: {o.paper}." if o.paper else "")
        common = {"name": d.name, "key": f"{key_prefix}-{d.name.replace('_', '-')}", "label": d.label,
                  "value": value, "help": help_text, "section": o.section}
        if d.type.is_list:
            raise TypeError(f"{d.name}: the page has no widget for a list; show it on the CLI only")
        if d.type.base is bool and d.type.optional:  # left unset: decided when the run is made
            choices = {None: f"auto ({o.auto})" if o.auto else "auto", True: "yes", False: "no"}
            out.append(FormField(kind="select", choices=choices, **common))
        elif d.type.base is bool:
            out.append(FormField(kind="checkbox", **common))
        elif o.choices:
            labels = {c: o.choice_labels.get(c, str(c)) for c in o.choices}
            kind = "radio" if o.widget.get("horizontal") else "select"
            out.append(FormField(kind=kind, choices=labels, kwargs=dict(o.widget), **common))
        elif d.type.base in (int, float):
            cast = d.type.base
            kwargs: dict[str, Any] = {}
            if o.low is not None:
                kwargs["min_value"] = cast(o.low)
            if o.high is not None:
                kwargs["max_value"] = cast(o.high)
            kwargs.update(o.widget)
            kwargs = {k: cast(v) if k in ("min_value", "max_value", "step") else v for k, v in kwargs.items()}
            placeholder = f"auto: {o.auto}" if d.type.optional and o.auto else None
            out.append(FormField(kind="number", placeholder=placeholder, kwargs=kwargs, **common))
        else:
            out.append(FormField(kind="text", **common))
    return out


def from_form(config_class: type, values: Mapping[str, Any], **others: Any) -> Any:
    """The config the page's widgets describe: {field: widget value}, numbers cast to their field's type (a
    number widget gives a float for an int field's 3.0), the rest at its default or from `others`."""
    typed = {}
    for d in declarations(config_class):
        if d.name in values:
            value = values[d.name]
            if value is not None and d.type.base in (int, float) and not d.type.is_list:
                value = d.type.base(value)
            typed[d.name] = value
    return config_class(**typed, **others)


# ---------------------------------------------------------------------------------------------
# The docs' table


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return " ".join(map(_shown, value))
    return "none" if value is None else str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown(config_class: type, title: str, intro: str) -> str:
    """The option table of a config class, as docs/options.md holds it: a row per field, in field order (a
    nested dataclass field gets its help only: its options have a table of their own)."""
    lines = [f"# {title}", "", intro, "",
             "| option | default | paper | where | what it does |", "|---|---|---|---|---|"]
    declared = {d.name: d for d in declarations(config_class)}
    for f in dataclasses.fields(config_class):
        o = f.metadata[OPTION]
        if f.name not in declared:
            where = [w for w, shown in (("its own flags (`train --help`)", CLI in o.shows),
                                        ("page: its own section", PAGE in o.shows)) if shown]
            row = [f"`{f.name}`", "", o.paper, "; ".join(where), o.help]
        else:
            d = declared[f.name]
            where = []
            if CLI in o.shows:
                where.append(f"`{d.flag}`")
            if PAGE in o.shows:
                where.append(f"page: {o.label or f.name} ({SECTIONS[o.section].split(' (')[0]})")
            if not o.shows:
                where.append(f"internal: {o.internal}")
            default = f"auto: {o.auto}" if d.default is None and o.auto else f"`{_shown(d.default)}`"
            choices = f" One of {', '.join(f'`{c}`' for c in o.choices)}." if o.choices else ""
            row = [f"`{f.name}`", default, o.paper, "; ".join(where), o.help + choices]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"
