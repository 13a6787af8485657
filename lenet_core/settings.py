"""One declaration per setting: its label, help, bounds and command-line flag, kept on the
dataclass field it describes. The Train page's controls, the CLI's flags, the runs table's
labels and the checks of a loaded checkpoint are all made from these declarations."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting (or combination of settings) that cannot make a working run."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class Setting:
    """What a user is told about one setting, and which values it accepts.

    `low`/`high` bound a number, or each item of a list (whose length `items` bounds);
    `choices` lists the accepted values of a text or a number."""

    label: str                          # a control's label: "Kernel size"
    short: str                          # in run names and the runs table: "kernel"
    help: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    items: tuple[int, int] | None = None  # (fewest, most) entries of a list setting
    cli: bool = True                      # offered as a --flag


def setting(default, label: str, help: str, short: str | None = None, **bounds) -> dataclasses.Field:
    """A dataclass field that carries its Setting."""
    meta = Setting(label=label, short=short or label.lower(), help=help, **bounds)
    return dataclasses.field(default=default, metadata={"setting": meta})


def declared(cls) -> dict[str, tuple[Setting, type]]:
    """name -> (Setting, the field's type name) for every declared field of a settings dataclass."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    return {f.name: (f.metadata["setting"], hints[f.name]) for f in dataclasses.fields(cls) if "setting" in f.metadata}


def value_text(value) -> str:
    """A setting's value as run names, the runs table and the CLI show it: "0.3", "6,16", "none"."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def in_words(obj, ref=None, *, skip=(), only_cli: bool = False) -> dict[str, tuple[Setting, str]]:
    """name -> (its declaration, its value as text) for each declared setting of `obj`, a settings
    dataclass; with `ref`, only those whose value differs from `ref`'s. The one walk from settings
    to text: run names, the runs table, the controls' preset note and the CLI use it."""
    return {name: (meta, value_text(getattr(obj, name))) for name, (meta, _) in declared(type(obj)).items()
            if name not in skip and (meta.cli or not only_cli)
            and (ref is None or getattr(obj, name) != getattr(ref, name))}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(value, kind: str, name: str):
    # JSON and widgets give ints as ints; a bool, a text or a float for an int setting is a damaged value.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a number, got {type(value).__name__} {value!r:.40}")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(name, f"must be a whole number, got {value!r}")
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    return value


def _in_bounds(value, meta: Setting, name: str, what: str = "") -> None:
    what = what or meta.label
    if meta.low is not None and value < meta.low or meta.high is not None and value > meta.high:
        show = (lambda v: f"{v:,}") if isinstance(value, int) else (lambda v: f"{v:g}")
        raise ConfigError(name, f"{what} must be {show(meta.low)} to {show(meta.high)}, got {show(value)}")


def coerce(cls, name: str, value):
    """`value` as the declared type of `cls.name`, or ConfigError saying what is wrong with it."""
    meta, kind = declared(cls)[name]
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(name, f"must be text, got {type(value).__name__}")
        if meta.choices and value not in meta.choices:
            raise ConfigError(name, f"'{value:.40}' is not one of {', '.join(map(str, meta.choices))}")
        return value
    if kind.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"must be a list of whole numbers, got {type(value).__name__}")
        lo, hi = meta.items
        if not lo <= len(value) <= hi:
            raise ConfigError(name, f"needs {lo} to {hi} entries, got {len(value)}")
        return tuple(_number(v, "int", name) for v in value)
    value = _number(value, kind, name)
    if meta.choices and value not in meta.choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(map(str, meta.choices))}")
    return value


def check_bounds(obj) -> None:
    """Raise ConfigError for the first declared setting of `obj` outside its bounds."""
    for name, (meta, kind) in declared(type(obj)).items():
        value = coerce(type(obj), name, getattr(obj, name))
        if kind.startswith("tuple"):
            for i, v in enumerate(value, 1):
                _in_bounds(v, meta, name, f"{meta.label} entry {i}")
        elif kind in ("int", "float"):
            _in_bounds(value, meta, name)


def from_dict(cls, d, what: str):
    """An instance of the settings dataclass `cls` from a plain dict (JSON, a checkpoint), every
    field checked for its type first; unknown keys are refused."""
    if not isinstance(d, dict):
        raise ConfigError(what, f"must be a mapping of settings, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known, key=str)
    if unknown:
        raise ConfigError(str(unknown[0])[:40], f"is not a {what}")
    values = {}
    for name, value in d.items():
        values[name] = coerce(cls, name, value) if name in declared(cls) else value
    return cls(**values)
