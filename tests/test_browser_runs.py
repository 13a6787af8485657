"""Runs a person can tell apart and act on, in Chromium against the real server: Rename acts on the
run picked, at the first click, and Delete then removes that run and nothing else; two runs with one
name are both selectable; each run keeps its colour whatever else is overlaid; the model chosen by
"Pullovers vs coats" is the one Activations and Evaluate show; the lecturer's Class page shows the
progress of runs in progress, and a student reads that the lecturer stopped theirs.

The runs are written on disk as a trainer leaves them (no training here), for the browser whose
cookie the test sets."""
import json
import math
import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect

from browser import SCREENSHOT_DIR, screenshot, wait_for_app
from lenet_app.runs import PALETTE
from lenet_app.session import COOKIE, owner_of
from lenet_core.model import preset
from lenet_core.loss_curve import LossCurve
from lenet_core.processes import this_process
from lenet_core.runs import Run
from lenet_core.train import EpochMetrics, TrainConfig

expect.set_options(timeout=30_000)  # pages that load models on a busy 2-core machine take seconds

# The overlay chart's traces as plotly.js drew them: (name, colour, shown in the legend).
OVERLAY_TRACES = """() => {
    const el = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')].pop();
    return el ? el.data.map(t => [t.name, t.line.color, t.showlegend !== false]) : [];
}"""


# The rows of a dataframe's accessible table (the grid itself is drawn on a canvas).
GRID_ROWS = """el => [...el.querySelectorAll('tbody tr, tr')].map(tr => [...tr.querySelectorAll('td')]
    .map(td => td.textContent)).filter(r => r.length)"""


def write_run(root, token, name, config=None, epochs=3, speed=1.0, status="finished", created=None, **meta):
    """A run folder as a trainer leaves it: curve, epochs, status (live ones claimed by this process)."""
    config = config or TrainConfig(epochs=10)
    run = Run.create(config, root, owner=owner_of(token), owner_name="", name=name)
    if created is not None or meta:
        data = run.meta() | ({"created": created} if created is not None else {}) | meta
        (run.path / "run.json").write_text(json.dumps(data))
    steps = np.arange(1, epochs * 469 + 1)
    losses = 0.4 + 1.9 * np.exp(-steps * speed / 900) + np.random.default_rng(len(name)).normal(0, 0.06, len(steps))
    metrics = [EpochMetrics(epoch=e, train_loss=float(losses[e * 469 - 1]), train_acc=0.5, val_loss=0.6,
                            val_acc=min(0.95, 0.55 + 0.3 * (1 - math.exp(-e * speed / 2))), samples_per_s=900.0,
                            epoch_time=60.0) for e in range(1, epochs + 1)]
    for m in metrics:
        run.append_epoch(m)
    run.write_live({"curve": LossCurve.of(steps, losses).to_dict(), "epochs": [m.to_dict() for m in metrics]})
    done = {"epochs_done": epochs, "steps_done": len(steps), "total_steps": config.epochs * 469}
    if status == "running":
        (run.path / "claim.json").write_text(json.dumps(this_process()))
        run.set_status("running", "Training.", samples_per_s=900.0, train_seconds=60.0 * epochs, **done)
    else:
        run.set_status(status, "Finished.", final={"test_accuracy": metrics[-1].val_acc - 0.01}, ended=time.time(),
                       **done)
    return run


def browser_for(chromium, url, token, width=1400, height=1000):
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_cookies([{"name": COOKIE, "value": token, "url": url}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return context, page


def open_train(page, url):
    page.goto(f"{url}/train")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Your runs")).to_be_visible()
    wait_for_app(page)


def run_picker(page):
    return page.get_by_role("combobox", name="Run", exact=True)


def pick_run(page, label):
    run_picker(page).scroll_into_view_if_needed()
    run_picker(page).click()
    page.get_by_role("option", name=label, exact=True).click()
    wait_for_app(page)
    expect(run_picker(page)).to_have_value(label)


def pill(page, label):
    return page.get_by_test_id("stButtonGroup").get_by_role("button", name=label, exact=True)


def overlay_traces(page, expected=None, timeout_s=10):
    """The overlay's traces, once they are `expected` (a set of (name, colour)) if given: plotly.js
    redraws after the script run ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.wait_for_timeout(300)
        traces = page.evaluate(OVERLAY_TRACES)
        if expected is None or {(n, c) for n, c, _ in traces} == expected or time.monotonic() > deadline:
            return traces


@pytest.fixture
def runs_dir(app_env):
    from pathlib import Path

    return Path(app_env["LENET_RUNS_DIR"])


def test_rename_works_at_the_first_click_and_delete_then_removes_that_run_only(app_server, chromium, runs_dir):
    token = "rename-browser"
    alpha, beta, gamma = (write_run(runs_dir, token, n, created=time.time() + i) for i, n in
                          enumerate(("alpha", "beta", "gamma")))
    context, page = browser_for(chromium, app_server.url, token)
    try:
        open_train(page, app_server.url)
        pick_run(page, "beta")
        page.get_by_role("button", name="Rename or delete").click()
        box = page.get_by_label("New name")
        expect(box).to_have_value("beta")
        box.fill("beta, renamed")
        page.get_by_role("button", name="Rename", exact=True).click()  # once
        wait_for_app(page)
        deadline = time.monotonic() + 10
        while Run(beta.path).meta()["name"] != "beta, renamed":
            assert time.monotonic() < deadline, Run(beta.path).meta()["name"]
            page.wait_for_timeout(100)
        # The picker still holds the renamed run, under its new name.
        expect(run_picker(page)).to_have_value("beta, renamed")
        assert [Run(r.path).meta()["name"] for r in (alpha, gamma)] == ["alpha", "gamma"]

        delete = page.get_by_role("button", name="Delete this run")
        if not delete.is_visible():
            page.get_by_role("button", name="Rename or delete").click()
        delete.click()
        wait_for_app(page)
        deadline = time.monotonic() + 10
        while beta.path.exists():
            assert time.monotonic() < deadline
            page.wait_for_timeout(100)
        assert alpha.path.exists() and gamma.path.exists()  # nothing else went
        expect(pill(page, "beta, renamed")).to_have_count(0)
        expect(pill(page, "alpha")).to_be_visible()
    finally:
        context.close()


def test_two_runs_with_one_name_are_both_selectable_and_each_keeps_its_colour(app_server, chromium, runs_dir):
    token = "twins-browser"
    t0 = time.time() - 3600
    # Two runs named alike (as runs were before names were made unique, or two from the command line),
    # and a third; colours as the app gives them.
    older = write_run(runs_dir, token, "classic", created=t0, colour=0)
    newer = write_run(runs_dir, token, "classic", created=t0 + 60, speed=1.6, colour=1)
    other = write_run(runs_dir, token, "modern", created=t0 + 120, speed=2.5, colour=2)
    labels = {r.id: f"classic ({time.strftime('%d %b %H:%M:%S', time.localtime(r.meta()['created']))})"
              for r in (older, newer)}
    context, page = browser_for(chromium, app_server.url, token)
    try:
        open_train(page, app_server.url)
        for label in labels.values():
            expect(pill(page, label)).to_be_visible()
        traces = overlay_traces(page)
        colours = {name: colour for name, colour, _ in traces}
        assert colours == {labels[older.id]: "#1f77b4", labels[newer.id]: "#ff7f0e", "modern": "#2ca02c"}

        pill(page, labels[older.id]).click()  # deselect one of the twins: only it goes
        wait_for_app(page)
        traces = overlay_traces(page, {(labels[newer.id], "#ff7f0e"), ("modern", "#2ca02c")})
        assert {n for n, _, _ in traces} == {labels[newer.id], "modern"}
        assert all(colours[n] == c for n, c, _ in traces)  # the others keep their colours
        pill(page, "modern").click()
        wait_for_app(page)
        want = {(labels[newer.id], "#ff7f0e")}
        assert {(n, c) for n, c, _ in overlay_traces(page, want)} == want
        pill(page, labels[older.id]).click()
        wait_for_app(page)
        want = {(labels[newer.id], "#ff7f0e"), (labels[older.id], "#1f77b4")}
        assert {(n, c) for n, c, _ in overlay_traces(page, want)} == want

        # Both twins can be picked, and the picker says which is which.
        for run in (older, newer):
            pick_run(page, labels[run.id])
    finally:
        context.close()


def test_train_with_eight_runs_overlaid_at_projector_widths(app_server, chromium, runs_dir):
    token = "eight-browser"
    t0 = time.time() - 7200
    names = ["classic", "modern", "modern · kernel 3 (exercise 2)", "modern · kernel 7 (exercise 2)",
             "classic · lr 0.3", "modern · adam", "classic · conv 12,32", "modern · epochs 20"]
    for i, name in enumerate(names):
        write_run(runs_dir, token, name, TrainConfig(epochs=3 + i % 4), epochs=3 + i % 4, speed=0.6 + 0.35 * i, created=t0 + 60 * i, colour=i)
    for width in (1280, 1024):
        context, page = browser_for(chromium, app_server.url, token, width=width, height=1300)
        try:
            open_train(page, app_server.url)
            want = {(name, PALETTE[i]) for i, name in enumerate(names)}
            page.get_by_text("Overlay", exact=True).scroll_into_view_if_needed()
            assert {(n, c) for n, c, _ in overlay_traces(page, want, timeout_s=20)} == want
            # The table, the pills and the overlay: the page from "Your runs" down.
            page.get_by_role("heading", name="Your runs").evaluate("el => el.scrollIntoView()")
            page.wait_for_timeout(800)
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / f"train-eight-runs-{width}.png"))
        finally:
            context.close()


def test_pullovers_vs_coats_sets_the_model_that_activations_and_evaluate_show(app_server, browser_page):
    page = browser_page
    page.goto(app_server.url)
    wait_for_app(page)
    page.get_by_role("button", name="Pullovers vs coats").click()
    page.wait_for_url(re.compile(r"/activations$"))
    wait_for_app(page)
    model = page.get_by_role("combobox", name="Model")
    expect(model).to_have_value(re.compile(r"^Fashion classic"))
    for link in ("Evaluate", "Draw", "Activations"):
        page.get_by_role("link", name=link, exact=True).first.click()
        page.wait_for_url(re.compile(f"/{link.lower()}$"))
        wait_for_app(page)
        expect(model).to_have_value(re.compile(r"^Fashion classic"))
    assert model.count() == 1


def test_the_class_page_shows_progress_and_a_student_reads_the_lecturers_stop(app_env, start_server, chromium,
                                                                                 tmp_path):
    env = {**app_env, "LENET_RUNS_DIR": str(tmp_path / "runs"), "LENET_LECTURER_TOKEN": "lecturer-secret-of-the-room",
           # No free-space floor this disk can meet: the pool, which takes queued runs from the folder,
           # starts none, so the queued run stays waiting for the lecturer to stop it.
           "LENET_MIN_FREE_MB": str(10**9)}
    root = tmp_path / "runs"
    server = start_server(env)
    t0 = time.time() - 3600
    students = {"ada-b": "Ada Lovelace", "grace-b": "Grace Hopper", "alan-b": "Alan Turing"}
    for token, person in students.items():
        (root / ".people").mkdir(parents=True, exist_ok=True)
        (root / ".people" / f"{owner_of(token)}.json").write_text(json.dumps({"name": person}))
    runs = [
        ("ada-b", "classic (exercise 1)", preset("classic"), "finished"),
        ("ada-b", "modern (exercise 1)", preset("modern"), "finished"),
        ("ada-b", "modern · kernel 3 (exercise 2)", preset("modern").replace(kernel_size=3), "finished"),
        ("ada-b", "modern · kernel 7 (exercise 2)", preset("modern").replace(kernel_size=7), "running"),
        ("grace-b", "classic · lr 0.3 · batch 64", preset("classic"), "finished"),
        ("grace-b", "modern · adam · lr 0.001", preset("modern"), "finished"),
        ("grace-b", "classic · epochs 20", preset("classic"), "running"),
        ("alan-b", "classic", preset("classic"), "finished"),
        ("alan-b", "modern · conv 32,64 · dense 256,84", preset("modern"), "finished"),
    ]
    for i, (token, name, model, status) in enumerate(runs):
        write_run(root, token, name, TrainConfig(model=model, epochs=10), epochs=5 if status == "running" else 10,
                  speed=0.7 + 0.2 * i, status=status, created=t0 + 60 * i)
    queued = Run.create(TrainConfig(model=preset("modern")), root, owner=owner_of("alan-b"),
                        name="modern (waiting in the queue)")  # the tenth; created after the server started

    lecturer, page = browser_for(chromium, server.url, "lecturer-b", width=1280, height=900)
    student, student_page = browser_for(chromium, server.url, "alan-b")
    try:
        page.goto(f"{server.url}/classroom")
        wait_for_app(page)
        page.get_by_label("Lecturer token").fill("lecturer-secret-of-the-room")
        page.get_by_role("button", name="Open the class view").click()
        wait_for_app(page)
        grid = page.get_by_test_id("stDataFrame").first
        expect(grid).to_be_visible()
        # The grid draws on a canvas; its accessible table holds the cells' values.
        deadline = time.monotonic() + 30
        while len(rows := grid.evaluate(GRID_ROWS)) < 10:
            assert time.monotonic() < deadline, rows
            page.wait_for_timeout(200)
        header = ["student", "run", "status", "progress", "epochs", "validation", "test"]
        table = {r[1]: dict(zip(header, r)) for r in rows}
        for name in ("modern · kernel 7 (exercise 2)", "classic · epochs 20"):  # in progress, 5 of 10 epochs
            row = table[name]
            assert row["status"] == "training" and float(row["progress"]) == 0.5 and row["epochs"] == "5 of 10"
            assert re.fullmatch(r"\d\d\.\d%", row["validation"]) and row["test"] == "–"  # not "None"
        assert table["classic (exercise 1)"]["student"] == "Ada Lovelace"
        assert re.fullmatch(r"\d\d\.\d%", table["classic"]["test"])
        for width in (1280, 1024):
            page.set_viewport_size({"width": width, "height": 1400})
            page.wait_for_timeout(800)
            screenshot(page, f"class-ten-runs-{width}")
        page.set_viewport_size({"width": 1280, "height": 900})

        page.get_by_role("combobox", name="Runs to stop").click()
        page.get_by_role("option", name=re.compile(r"modern \(waiting in the queue\)")).click()
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Stop 1 run").click()
        wait_for_app(page)
        deadline = time.monotonic() + 10
        while queued.info().status != "stopped":
            assert time.monotonic() < deadline
            page.wait_for_timeout(100)

        open_train(student_page, server.url)  # the newest run is the one on show
        expect(student_page.get_by_role("heading", name="modern (waiting in the queue) · stopped")).to_be_visible()
        when = time.strftime("%H:%M", time.localtime(queued.control()["stopped_at"]))
        expect(student_page.get_by_text(f"Your lecturer stopped this run at {when}.")).to_be_visible()
        screenshot(student_page, "train-stopped-by-lecturer")
    finally:
        lecturer.close()
        student.close()
