"""The Home page (AppTest): what LeNet Lab is, the device, local data sets, pages, shipped models,
and the chapter's exercises one click each (they start real runs on the local worker pool)."""
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import lenet_app.datasets
import lenet_app.models
import lenet_core.data as data_module
from charts import chart
from lenet_app import server
from lenet_app.session import owner_of
from lenet_core.checkpoint import Checkpoint
from lenet_core.data import FASHION_CLASSES
from lenet_core.model import LeNet, preset
from lenet_core.runs import Run, list_runs
from lenet_core.train import TrainConfig
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"


@pytest.fixture(scope="module", autouse=True)
def worker_pool():
    """The exercises start runs on this process's local pool (lenet_app.server.executor()), started
    by the first click: stopped when the module is done."""
    yield
    server.stop_executor()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", {})
    monkeypatch.setattr(data_module, "_download", lambda name: pytest.fail(f"Home must never download ({name})"))
    st.cache_resource.clear()
    yield tmp_path / "data"
    st.cache_resource.clear()


@pytest.fixture
def pool_env(env, tiny_data_dir, tmp_path, monkeypatch):
    """Data the pool's workers can train on (the same folder for the whole module: workers keep the
    environment they started with) and a runs root of this test's own."""
    monkeypatch.setenv("LENET_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def open_home(token: str = "browser-a") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = token  # one browser (AppTest has no cookies)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "LeNet Lab"
    return at


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_home_says_what_it_is_and_links_every_page(env):
    at = open_home()
    assert "LeNet-5" in markdown(at) and "Dive into Deep Learning" in markdown(at)
    links = {link.proto.page: link.proto.label for link in at.get("page_link")}
    assert links == {"train": "Open Train", "draw": "Open Draw", "activations": "Open Activations",
                     "evaluate": "Open Evaluate"}


def test_home_shows_device_data_sets_and_shipped_models(env):
    synthetic_idx(env / "mnist", n_train=16, n_test=16)
    at = open_home()
    text = markdown(at)
    assert f"Training runs on **{lenet_app.datasets.device_info()}**." in text
    assert f"**MNIST digits**: ready  \n`{env / 'mnist'}`" in text
    assert "**Fashion-MNIST**: missing here; downloaded on first use, or put its files in " \
           "`DIR/fashion-mnist/` and set `LENET_DATA_DIR=DIR`" in text
    shipped = lenet_app.models.shipped_models()
    assert shipped, "models/ should ship at least one model"
    for entry in shipped.values():
        acc = entry.metrics.get("test_accuracy")
        assert f"**{entry.name}**: {entry.note}" in text and (acc is None or f"**{acc:.1%}** test accuracy" in text)
    assert not at.warning


def test_home_names_the_gpu_when_there_is_one(env, monkeypatch):
    monkeypatch.setattr(lenet_app.datasets, "device_label", lambda device: "GPU (NVIDIA Test Card)")
    at = open_home()
    assert "Training runs on **GPU (NVIDIA Test Card)**." in markdown(at)
    assert not any("No CUDA GPU" in c.value for c in at.caption)


def test_home_without_shipped_models_points_to_train(env, monkeypatch, tmp_path):
    monkeypatch.setattr(lenet_app.models, "MODELS_DIR", tmp_path / "no_models")
    at = open_home()
    assert "No shipped models were found" in at.warning[0].value


def test_home_mentions_the_runs_this_browser_is_offered(env, monkeypatch, tmp_path):
    at = open_home()
    assert not any("Your runs" in c.value for c in at.caption)  # none yet
    root = tmp_path / "runs"
    for name, owner in (("before-class", None), ("mine", owner_of("browser-a")), ("theirs", owner_of("browser-b"))):
        config = TrainConfig(dataset="mnist")
        Run.create(config, root, name=name, owner=owner).save_checkpoint(
            Checkpoint(config, LeNet(config.model), "mnist", tuple("0123456789")))
    monkeypatch.setenv("LENET_RUNS_DIR", str(root))
    caption = next(c.value for c in open_home("browser-a").caption if "Your runs" in c.value)
    assert caption == "Your runs, offered on Draw, Activations and Evaluate too: mine, before-class"
    caption = next(c.value for c in open_home("browser-b").caption if "Your runs" in c.value)
    assert caption == "Your runs, offered on Draw, Activations and Evaluate too: theirs, before-class"


def test_home_lists_the_chapters_exercises_with_a_button_each(env):
    at = open_home()
    text = markdown(at)
    assert "The chapter's exercises, one click each" in text
    for words in ("max pooling instead of average pooling, ReLU instead of sigmoid",
                  "kernel size, channels, conv and dense layers", "pullovers and coats"):
        assert words in text
    assert [(b.key, b.label) for b in at.button] == [
        ("home.ex1", "Train classic and modern"), ("home.ex2", "Train a kernel sweep"),
        ("home.ex3", "Pullovers vs coats")]


# -- the exercises ------------------------------------------------------------------

def stop_and_wait(root: Path, timeout: float = 120) -> None:
    """Ask every run under `root` to stop, and wait until each has ended: only a worker ends a run
    (one still in the queue is marked stopped when a worker takes it), so this shows they were handed
    to the pool, not only written down; and the next test has the CPU."""
    for info in list_runs(root):
        Run(info.path).request(stop=True)
    t0 = time.monotonic()
    while any(i.live for i in list_runs(root)):
        assert time.monotonic() - t0 < timeout, [(i.name, i.status) for i in list_runs(root)]
        time.sleep(0.2)
    for info in list_runs(root):
        assert info.status in ("stopped", "finished", "diverged"), (info.name, info.status, info.message)


def overlay(at) -> list[str]:
    """The runs chosen in Train's overlay, as its pills and its chart's legend show them."""
    chosen = at.pills(key="train.overlay").value
    legend = [t["name"] for t in chart(at, "train.overlay_chart")["data"] if t.get("showlegend", True)]
    assert [at.pills(key="train.overlay").format_func(r) for r in chosen] == legend
    return legend


def test_train_classic_and_modern(pool_env):
    at = open_home()
    at.button(key="home.ex1").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"  # switched to the page that shows the answer

    mine = sorted(list_runs(pool_env, owner=owner_of("browser-a")), key=lambda i: i.created)
    assert [i.config.model for i in mine] == [preset("classic"), preset("modern")]
    classic, modern = (i.config for i in mine)
    assert classic.replace(model=modern.model) == modern  # the same seed and training settings
    assert len(list_runs(pool_env)) == 2  # this browser's, nothing for anyone else
    assert overlay(at) == [i.name for i in mine] == ["classic (exercise 1)", "modern (exercise 1)"]
    assert at.session_state["train.current"] == mine[0].id
    assert any(h.value.startswith(f"{mine[0].name} · ") for h in at.subheader)
    # Side by side: both train at the same time (one worker's job, the cores split), not one queued.
    deadline = time.monotonic() + 120
    while any(Run(i.path).info().live for i in mine):
        assert time.monotonic() < deadline, [Run(i.path).status() for i in mine]
        time.sleep(0.2)
    classic, modern = (Run(i.path).info() for i in mine)
    # Both were taken at once, as one job whose two runs share the cores (on these few images classic
    # may end, "did not learn", within a second: how long they overlap says little here; test_pool
    # has the pair training side by side).
    assert abs(modern.started - classic.started) < 2.0
    share = max(1, server.executor().threads // 2)
    assert classic.device == modern.device == f"CPU ({share} thread{'s' * (share != 1)})"


def test_train_a_kernel_sweep(pool_env):
    at = open_home()
    at.button(key="home.ex2").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"
    mine = sorted(list_runs(pool_env, owner=owner_of("browser-a")), key=lambda i: i.created)
    assert [i.config.model for i in mine] == [preset("modern").replace(kernel_size=k) for k in (3, 5, 7)]
    assert overlay(at) == [i.name for i in mine]
    assert [i.name for i in mine] == [f"modern · kernel {k} (exercise 2)" for k in (3, 5, 7)]
    stop_and_wait(pool_env)

    # Again: the new sweep's runs have names of their own, and its overlay shows only them.
    at = open_home()
    at.button(key="home.ex2").click().run()
    again = sorted(list_runs(pool_env, owner=owner_of("browser-a")), key=lambda i: i.created)[3:]
    assert [i.name for i in again] == [f"modern · kernel {k} (exercise 2) #2" for k in (3, 5, 7)]
    assert overlay(at) == [i.name for i in again]
    stop_and_wait(pool_env)


def test_the_sweep_is_refused_when_the_browser_has_too_few_runs_free(pool_env, monkeypatch):
    monkeypatch.setenv("LENET_MAX_LIVE_RUNS", "2")
    at = open_home()
    at.button(key="home.ex2").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "LeNet Lab"  # stays on Home, and says why
    assert [w.value for w in at.warning] == [
        "This starts 3 runs, and you can have 2 waiting or training at once (2 free now). "
        "Stop some on the Train page first."]
    assert list_runs(pool_env) == []
    assert "train.overlay" not in at.session_state

    # One run waiting leaves one place: the pair is refused too, and the message is shown once.
    Run.create(TrainConfig(), pool_env, owner=owner_of("browser-a"))
    at.button(key="home.ex1").click().run()
    assert [w.value for w in at.warning] == [
        "This starts 2 runs, and you can have 2 waiting or training at once (1 free now). "
        "Stop some on the Train page first."]
    assert len(list_runs(pool_env)) == 1
    at.run()
    assert not at.warning


def test_compare_pullovers_and_coats(env):
    for folder in ("mnist", "fashion-mnist"):
        synthetic_idx(env / folder, n_train=16, n_test=100)
    at = open_home()
    at.button(key="home.ex3").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Activations"
    assert at.selectbox(key="model").value == "shipped:fashion-classic"
    assert at.segmented_control(key="act_view").value == "Compare two inputs"
    assert at.selectbox(key="act_a_source").value == at.selectbox(key="act_b_source").value == "Test image"
    assert (at.selectbox(key="act_a_class").value, at.selectbox(key="act_b_class").value) == ("Pullover", "Coat")
    assert at.selectbox(key="act_a_class").options == list(FASHION_CLASSES)
    convs = len(lenet_app.models.shipped_models()["shipped:fashion-classic"].model.config.conv_channels)
    assert len(at.get("plotly_chart")) == 3 * convs  # A, B and A - B for each conv layer
    assert any("a Pullover" in c.value for c in at.caption) and any("a Coat" in c.value for c in at.caption)
