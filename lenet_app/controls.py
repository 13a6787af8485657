"""The Train page's controls, made from the setting declarations (lenet_core.settings): one widget
per setting, labelled, explained and checked as declared. The controls' values live in session
state under "train.<setting>" and are read back into one TrainConfig.

Number boxes have no minimum or maximum of their own: a value out of bounds reaches the page,
which says so under the box and keeps Start off, rather than the browser quietly keeping the
last good value."""
from __future__ import annotations

import streamlit as st

from lenet_core.model import MAX_CONV_LAYERS, PRESETS, ModelConfig, nearest_preset
from lenet_core.runs import RunInfo
from lenet_core.settings import ConfigError, declared, in_words
from lenet_core.train import TrainConfig

KEY = "train."
KEEP = "session"  # every control keeps its value across page switches
LR_VALUES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
EXTRA = {"conv_channels": (6, 16, 32), "dense_widths": (120, 84, 64)}  # a layer's size when it is added
CHOICE_LABELS = {"avg": "average", "max": "max", "sgd": "SGD", "momentum": "SGD + momentum 0.9", "adam": "Adam",
                 "fashion-mnist": "Fashion-MNIST", "mnist": "MNIST digits"}
PRESET_LABELS = {"classic": "the chapter's LeNet-5", "modern": "ReLU + max pooling (exercise 1)"}


def key(name: str) -> str:
    return KEY + name


def values_of(config: TrainConfig) -> dict:
    """Control values that show `config`."""
    values = {}
    for obj in (config.model, config):
        for name in declared(type(obj)):
            value = getattr(obj, name)
            if isinstance(value, tuple):
                values[f"{name}.n"] = len(value)
                for i, default in enumerate(EXTRA[name], 1):
                    values[f"{name}.{i}"] = value[i - 1] if i <= len(value) else default
            else:
                values[name] = value
    return values


def init(config: TrainConfig) -> None:
    """Give every control a value once per session (the browser's latest run's settings, say)."""
    for name, value in values_of(config).items():
        st.session_state.setdefault(key(name), value)


def set_to(config: TrainConfig, only_model: bool = False) -> None:
    """Show `config` in the controls (a preset, a scenario, a run continued from). For callbacks."""
    model_names = set(declared(ModelConfig))
    for name, value in values_of(config).items():
        if not only_model or name.split(".")[0] in model_names:
            st.session_state[key(name)] = value


def read() -> tuple[TrainConfig | None, ConfigError | None]:
    """The TrainConfig the controls describe, or the first setting that is wrong."""
    state = st.session_state

    def value(name):
        meta, kind = declared(ModelConfig).get(name) or declared(TrainConfig)[name]
        if kind.startswith("tuple"):
            return tuple(state.get(key(f"{name}.{i}")) for i in range(1, int(state.get(key(f"{name}.n"), 0)) + 1))
        return state.get(key(name))

    try:
        model = ModelConfig(**{n: value(n) for n, (m, _) in declared(ModelConfig).items() if m.cli})
        config = TrainConfig(model, **{n: value(n) for n in declared(TrainConfig)})
        config.validate()
    except ConfigError as e:
        return None, e
    except (TypeError, ValueError) as e:
        return None, ConfigError("settings", str(e))
    return config, None


def problem_under(problem: ConfigError | None, *names: str) -> None:
    """The message of a wrong setting, right under its control."""
    if problem is not None and problem.setting in names:
        st.error(problem.message, icon=":material/error:")


def widget(cls, name: str, container=None, disabled: bool = False, label: str | None = None) -> None:
    """The control of one declared setting."""
    meta, kind = declared(cls)[name]
    box = container or st
    common = dict(label=label or meta.label, help=meta.help, key=key(name), disabled=disabled, persist_state=KEEP)
    current = st.session_state.get(key(name))
    if name in ("lr", "batch_size"):
        options = sorted(set(LR_VALUES if name == "lr" else BATCH_SIZES) | ({current} if current else set()))
        box.select_slider(options=options, format_func=lambda v: f"{v:g}", **common)
    elif name == "kernel_size":
        box.slider(min_value=int(meta.low), max_value=int(meta.high), **common)
    elif meta.choices:
        box.selectbox(options=list(meta.choices), format_func=lambda v: CHOICE_LABELS.get(v, str(v)), **common)
    else:
        box.number_input(step=1, **common)


def layer_list(name: str, disabled: bool = False) -> None:
    """A list setting: how many layers (a slider), then each layer's size (a box per layer)."""
    meta, _ = declared(ModelConfig)[name]
    lo, hi = meta.items
    st.slider(f"{meta.label.split()[0]} layers", lo, hi, key=key(f"{name}.n"), disabled=disabled, persist_state=KEEP,
              help=meta.help)
    count = int(st.session_state.get(key(f"{name}.n"), 0))
    cols = st.columns(MAX_CONV_LAYERS)
    prefix = "conv" if name == "conv_channels" else "fc"
    for i in range(1, count + 1):
        cols[i - 1].number_input(f"{prefix}{i}", step=1, key=key(f"{name}.{i}"), disabled=disabled,
                                 persist_state=KEEP, help=f"{'Feature maps' if prefix == 'conv' else 'Units'} of "
                                                          f"{prefix}{i} ({meta.low:g} to {meta.high:g}).")


def preset_note(model: ModelConfig | None) -> str:
    """Which preset the architecture controls match, or how they differ from the nearest."""
    if model is None:
        return ""
    best = nearest_preset(model)
    differs = [meta.label.lower() for meta, _ in in_words(model, PRESETS[best], only_cli=True).values()]
    # "Your next run", not the run on show: beside a classic run training, "Matches modern" read
    # as a wrong description of that run.
    if not differs:
        return f"Your next run: **{best}**, {PRESET_LABELS[best]}."
    return f"Your next run: **{best}** with another {', '.join(differs)}."


def apply_preset(name: str) -> None:
    set_to(TrainConfig(model=PRESETS[name]), only_model=True)


def apply_run(info: RunInfo) -> None:
    """Continuing a run: its architecture and data set, and a few more epochs than it has."""
    set_to(info.config.replace(epochs=min(info.epochs_done + 5, 200)))


def layer_rows(model: ModelConfig) -> list[dict]:
    from lenet_core.activations import layer_summary

    rows = [{"layer": r.name, "output": "×".join(map(str, r.output_shape[1:])), "params": r.parameters}
            for r in layer_summary(model)]
    return rows + [{"layer": "total", "output": "", "params": sum(r["params"] for r in rows)}]


def architecture(config: TrainConfig | None, problem: ConfigError | None, fixed: bool) -> None:
    """The architecture controls, a preset as an action, and the layer table."""
    st.subheader(":material/account_tree: Architecture", divider="gray")
    if fixed:
        st.caption("Fixed by the run you continue from (see *Start from*).")
    with st.container(horizontal=True):
        for name in PRESETS:
            st.button(name, key=f"train.preset.{name}", on_click=apply_preset, args=(name,), disabled=fixed,
                      help=f"Set the architecture to {name}: {PRESET_LABELS[name]}.")
    if config is not None:
        st.caption(preset_note(config.model))
    c1, c2 = st.columns(2)
    widget(ModelConfig, "activation", c1, fixed)
    widget(ModelConfig, "pooling", c2, fixed)
    widget(ModelConfig, "kernel_size", c1, fixed)
    widget(ModelConfig, "padding", c2, fixed)
    problem_under(problem, "kernel_size", "padding")
    layer_list("conv_channels", fixed)
    problem_under(problem, "conv_channels")
    layer_list("dense_widths", fixed)
    problem_under(problem, "dense_widths")
    widget(ModelConfig, "init", disabled=fixed)
    problem_under(problem, "activation", "pooling", "init", "settings")
    if config is not None:
        rows = layer_rows(config.model)
        st.markdown(f"**Layers** · {rows[-1]['params']:,} parameters")
        st.dataframe(rows, hide_index=True, height=35 * len(rows) + 38, column_config={
            "layer": st.column_config.TextColumn(width=95), "output": st.column_config.TextColumn(width=100),
            "params": st.column_config.NumberColumn(format="localized", width=75)})


def training(problem: ConfigError | None, fixed: bool, done_epochs: int = 0) -> None:
    st.subheader(":material/tune: Training", divider="gray")
    widget(TrainConfig, "dataset", disabled=fixed)
    c1, c2 = st.columns(2)
    widget(TrainConfig, "optimizer", c1)
    widget(TrainConfig, "epochs", c2, label=f"Epochs (in all; {done_epochs} done)" if fixed else None)
    problem_under(problem, "epochs", "optimizer", "dataset")
    widget(TrainConfig, "lr")
    widget(TrainConfig, "batch_size")
    problem_under(problem, "lr", "batch_size")
    c1, c2 = st.columns(2)
    widget(TrainConfig, "seed", c1)
    widget(TrainConfig, "device", c2)
    problem_under(problem, "seed", "device", "source")
