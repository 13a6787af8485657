"""The server as an operator meets it: SIGTERM saves what trains as stopped; after kill -9 a run
that was training is interrupted with its finished epochs kept, and after a restart Resume carries
it on in the same folder. Runs still queued are taken up again by the next start."""
import json
import os
import re
import signal
import time

from playwright.sync_api import expect

from browser import screenshot, start_app, wait_for_app
from lenet_app.session import COOKIE, owner_of
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import TrainConfig
from waiting import wait_for

TOKEN = "a-browser-of-the-test"
CONFIG = TrainConfig(model=preset("modern").replace(conv_channels=(32, 32)), dataset="mnist", batch_size=8,
                     epochs=20, lr=0.05)


def env_for(app_env, tmp_path):
    return {**app_env, "LENET_RUNS_DIR": str(tmp_path / "runs")}


def trainer_gone(run) -> bool:
    claim = run.path / "claim.json"
    if not claim.exists():
        return True
    pid = json.loads(claim.read_text())["pid"]
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def test_sigterm_stops_and_saves_what_trains_and_leaves_the_queue_for_next_time(app_env, tmp_path):
    env = env_for(app_env, tmp_path)
    training = Run.create(CONFIG, tmp_path / "runs", owner=owner_of(TOKEN))
    time.sleep(0.01)
    waiting = Run.create(CONFIG.replace(seed=1), tmp_path / "runs", owner=owner_of(TOKEN))
    server = start_app(env)  # its start takes up the queue, oldest first
    try:
        wait_for(lambda: training.info().status == "running" and training.info().steps_done > 5)
        assert waiting.info().status == "queued"
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(40)
    finally:
        server.stop()
    info = training.info()
    assert info.status == "stopped" and "server shut down" in info.message
    assert training.load_checkpoint().training.step == info.steps_done
    assert waiting.info().status == "queued"
    assert trainer_gone(training)

    server = start_app(env)  # the next start trains what waited
    try:
        wait_for(lambda: waiting.info().status in ("running", "finished"))
    finally:
        server.stop()


def test_kill_9_interrupts_a_run_and_resume_after_a_restart_carries_it_on(app_env, tmp_path, chromium):
    env = env_for(app_env, tmp_path)
    run = Run.create(CONFIG, tmp_path / "runs", owner=owner_of(TOKEN), name="kill me")
    server = start_app(env)
    try:
        wait_for(lambda: run.info().epochs_done >= 2, 120)
        server.proc.kill()
        server.proc.wait(10)
    finally:
        server.stop()
    wait_for(lambda: trainer_gone(run), 10)  # the worker follows its server
    info = run.info()
    assert info.status == "interrupted" and info.epochs_done >= 2 and "Resume" in info.message
    kept = info.epochs_done

    server = start_app(env)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": COOKIE, "value": TOKEN, "url": server.url}])
    try:
        page = context.new_page()
        page.goto(f"{server.url}/train")
        wait_for_app(page)
        expect(page.get_by_role("heading", name="kill me · interrupted")).to_be_visible()
        expect(page.get_by_text(re.compile(rf"Its last finished epoch \({kept}\) is kept"))).to_be_visible()
        screenshot(page, "train-interrupted")
        page.get_by_role("button", name="Resume", exact=True).click()
        expect(page.get_by_role("heading", name=re.compile(r"kill me · (training|finished)"))).to_be_visible(
            timeout=30_000)
        wait_for(lambda: run.info().status == "finished", 180)
    finally:
        context.close()
        server.stop()
    info = run.info()
    assert info.epochs_done == 20 and [m.epoch for m in run.epochs()] == list(range(1, 21))
    steps, _ = run.steps()
    assert steps.tolist() == list(range(1, info.steps_done + 1))  # the curve goes on, with no gap or repeat
