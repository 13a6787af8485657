"""The Home page (AppTest): what LeNet Lab is, the device, local data sets, pages, shipped models."""
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import lenet_app.state as state
import lenet_core.data as data_module
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", {})
    monkeypatch.setattr(data_module, "_download", lambda name: pytest.fail(f"Home must never download ({name})"))
    st.cache_resource.clear()
    yield tmp_path / "data"
    st.cache_resource.clear()


def open_home() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "LeNet Lab"
    return at


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_home_says_what_it_is_and_links_every_page(env):
    at = open_home()
    assert "LeNet-5" in markdown(at) and "Dive into Deep Learning" in markdown(at)
    links = {link.proto.page for link in at.get("page_link")}
    assert links == {"train", "draw", "activations", "evaluate"}


def test_home_shows_device_data_sets_and_shipped_models(env):
    synthetic_idx(env / "mnist", n_train=16, n_test=16)
    at = open_home()
    text = markdown(at)
    assert f"Training runs on **{state.device_info()}**." in text
    assert f"**MNIST digits**: ready  \n`{env / 'mnist'}`" in text
    assert "**Fashion-MNIST**: missing here; downloaded on first use, or put its files in " \
           "`DIR/fashion-mnist/` and set `LENET_DATA_DIR=DIR`" in text
    shipped = state.shipped_models()
    assert shipped, "models/ should ship at least one model"
    for entry in shipped.values():
        acc = entry.metrics.get("test_accuracy")
        assert f"**{entry.name}**: {entry.note}" in text and (acc is None or f"**{acc:.1%}** test accuracy" in text)


def test_home_names_the_gpu_when_there_is_one(env, monkeypatch):
    monkeypatch.setattr(state, "device_label", lambda device: "GPU (NVIDIA Test Card)")
    at = open_home()
    assert "Training runs on **GPU (NVIDIA Test Card)**." in markdown(at)
    assert not any("No CUDA GPU" in c.value for c in at.caption)


def test_home_without_shipped_models_points_to_train(env, monkeypatch, tmp_path):
    monkeypatch.setattr(state, "MODELS_DIR", tmp_path / "no_models")
    at = open_home()
    assert "No shipped models were found" in at.warning[0].value


def test_home_mentions_saved_run_folders(env, monkeypatch, tmp_path):
    from lenet_core.checkpoint import load_checkpoint, save_run

    at = open_home()
    assert not any("Saved runs" in c.value for c in at.caption)  # none saved yet
    runs = tmp_path / "runs"
    save_run(runs / "before-class", load_checkpoint(Path(__file__).resolve().parents[1] / "models" / "digits"
                                                    / "checkpoint.pt"))
    monkeypatch.setenv("LENET_RUNS_DIR", str(runs))
    at = open_home()
    caption = next(c.value for c in at.caption if "Saved runs" in c.value)
    assert "before-class (MNIST digits, 97.9%)" in caption and str(runs) in caption
    assert "saved run" not in caption  # the caption already says they are saved runs



def test_home_maps_the_chapters_exercises_to_pages(env):
    at = open_home()
    text = markdown(at)
    assert "The chapter's exercises, here" in text
    for words in ("max pooling instead of average pooling, ReLU instead of sigmoid", "**modern** preset",
                  "kernel size, channels, conv and dense layers", "pullovers and coats", "**Compare two inputs**"):
        assert words in text
    labels = [(link.proto.label, link.proto.page) for link in at.get("page_link")]
    assert ("Train", "train") in labels and ("Activations", "activations") in labels
