"""Lecture scenarios: named settings a lecturer keeps as TOML files (scenarios/*.toml, or the
folder LENET_SCENARIOS_DIR names), listed on the Train page for one click.

    title = "Exercise 1: a modern LeNet"
    text = "Max pooling and ReLU in place of average pooling and sigmoid."
    preset = "modern"          # the architecture to start from (default: classic)
    lr = 0.1                   # then any setting by its name, e.g. kernel_size, conv_channels,
    epochs = 10                # dense_widths, optimizer, batch_size, dataset, seed

Every setting is checked as a form's would be; a file that is not a sound scenario is reported
with its reason and skipped, never breaks the page."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .model import ModelConfig, preset
from .settings import ConfigError, declared
from .train import TrainConfig

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "scenarios"
MAX_FILES = 100
MAX_BYTES = 20_000


@dataclass(frozen=True)
class Scenario:
    key: str        # the file's stem
    title: str
    text: str
    config: TrainConfig


def scenarios_dir() -> Path:
    return Path(os.environ.get("LENET_SCENARIOS_DIR") or DEFAULT_DIR)


def nesting_depth(text: str) -> int:
    """How deep arrays and inline tables nest in a TOML text (brackets inside strings and comments
    not counted). Checked before the text is parsed: a parser walks nesting by recursion."""
    depth = deepest = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < n and text[i:i + len(quote)] != quote:
                i += 2 if text[i] == "\\" and quote[0] == '"' else 1
            i += len(quote)
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
        i += 1
    return deepest


MAX_DEPTH = 4   # a table header [[x]] is 2 deep, a list of channels 1


def _plain(name: str, value) -> None:
    """A setting's value is a string, a number, a bool or a list of numbers: nothing else is one."""
    if isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return
    raise ValueError(f"{name} is {type(value).__name__ if not isinstance(value, list) else 'a list of non-numbers'}"
                     f"; a setting is a text, a number or a list of numbers")


def parse(text: str, key: str) -> Scenario:
    """A scenario from a TOML text; ValueError saying what is wrong."""
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"nested {depth} deep; a scenario holds settings, at most a list of numbers each")
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"not valid TOML ({e})") from None
    except RecursionError:  # the depth check above should make this unreachable
        raise ValueError("nested too deeply to read") from None
    title, about = d.pop("title", key), d.pop("text", "")
    if not isinstance(title, str) or not isinstance(about, str):
        raise ValueError("title and text must be text")
    base = d.pop("preset", "classic")
    if not isinstance(base, str):
        raise ValueError(f"preset must be the name of a preset (e.g. \"classic\"), not a {type(base).__name__}")
    for name, value in d.items():
        _plain(name, value)
    model_names, train_names = declared(ModelConfig), declared(TrainConfig)
    unknown = sorted(k for k in d if k not in model_names and k not in train_names)
    if unknown:
        raise ValueError(f"'{unknown[0]}' is not a setting (settings: {', '.join([*model_names, *train_names])})")
    try:
        model = ModelConfig.from_dict({**preset(base).to_dict(), **{k: v for k, v in d.items() if k in model_names}})
        config = TrainConfig.from_dict({**TrainConfig().to_dict(), "model": model.to_dict(),
                                        **{k: v for k, v in d.items() if k in train_names}})
        config.validate()
    except ConfigError as e:
        raise ValueError(f"bad setting {e}") from None
    return Scenario(key, title.strip()[:80], about.strip()[:1000], config)


def load_scenarios(folder: str | os.PathLike | None = None) -> tuple[list[Scenario], list[str]]:
    """The scenarios in `folder` sorted by file name, and a message for each file skipped."""
    folder = Path(folder) if folder else scenarios_dir()
    found, problems = [], []
    for path in sorted(folder.glob("*.toml"))[:MAX_FILES] if folder.is_dir() else []:
        try:
            if path.stat().st_size > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES:,} bytes")
            found.append(parse(path.read_text(encoding="utf-8", errors="replace"), path.stem))
        except (OSError, ValueError) as e:
            problems.append(f"{path.name}: {e}")
    return found, problems
