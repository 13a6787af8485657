"""A run folder with one damaged file, resumed from the command line and shown on the Train page:
what can be read is kept, the damaged file is named with what is wrong, and the record that results
has each finished epoch exactly once and the steps that match the run's step count."""
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lenet_app.session import owner_of
from lenet_core.cli import main
from lenet_core.model import ModelConfig
from lenet_core.runs import Run
from lenet_core.train import Callback, TrainConfig
from lenet_core.worker import train_run
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"
CONFIG = TrainConfig(model=ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(32,)),
                     dataset="mnist", lr=0.05, batch_size=32, epochs=3, optimizer="momentum", device="cpu")
STEPS_PER_EPOCH = 8  # 256 training images in batches of 32


class StopAfter(Callback):
    def __init__(self, epoch: int, stop: threading.Event):
        self.epoch, self.stop = epoch, stop

    def on_epoch_end(self, metrics, state, model):
        if state.epoch == self.epoch:
            self.stop.set()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    synthetic_idx(root / "mnist", n_train=256, n_test=128)
    return root


@pytest.fixture(scope="module")
def stopped_run(data_dir, tmp_path_factory):
    """A run of 3 epochs stopped after its second: the template each test damages a copy of."""
    run = Run.create(CONFIG, path=tmp_path_factory.mktemp("template") / "run", owner=owner_of("browser-a"))
    stop = threading.Event()
    assert train_run(run.path, data_dir=data_dir, callbacks=[StopAfter(2, stop)], stop_event=stop) == "stopped"
    assert [m.epoch for m in run.epochs()] == [1, 2] and run.info().steps_done == 2 * STEPS_PER_EPOCH
    return run.path


@pytest.fixture
def run(stopped_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path))
    shutil.copytree(stopped_run, tmp_path / "run")
    return Run(tmp_path / "run")


def resume(capsys, run, data_dir, *extra) -> tuple[int, str, str]:
    code = main(["resume", str(run.path), "--data-dir", str(data_dir), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_whole_record(run: Run) -> None:
    """Each of the 3 epochs once, in order, and one row per step up to the run's step count."""
    assert [m.epoch for m in Run(run.path).epochs()] == [1, 2, 3]
    epochs_file = [json.loads(line)["epoch"] for line in (run.path / "epochs.jsonl").read_text().splitlines()]
    assert epochs_file == [1, 2, 3]
    steps, losses = Run(run.path).steps()
    assert steps.tolist() == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert Run(run.path).info().steps_done == 3 * STEPS_PER_EPOCH and Run(run.path).info().status == "finished"


def insert_garbage(path: Path, after_line: int = 1) -> None:
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:after_line] + [b"\xff\xfe\x00\x9cgarbage"] + lines[after_line:]))


@pytest.mark.parametrize("name", ["epochs.jsonl", "steps.csv", "health.jsonl"])
def test_garbage_bytes_in_a_record_are_skipped_and_named(capsys, run, data_dir, name):
    lines = (run.path / name).read_text().splitlines()
    insert_garbage(run.path / name, after_line=2)
    garbage_line = min(len(lines), 2) + 1  # counted as an editor counts, the header of steps.csv too
    assert any(line.startswith(f"{name}: 1 line unreadable") for line in Run(run.path).check())
    code, out, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert f"note: {name}: 1 line unreadable, skipped (line {garbage_line}: not" in err
    assert "Traceback" not in out + err
    assert_whole_record(run)
    assert Run(run.path).check() == []  # the resumed run wrote its record afresh, without the garbage


def test_an_epoch_row_with_a_field_from_another_version_is_kept(capsys, run, data_dir):
    rows = [json.loads(line) for line in (run.path / "epochs.jsonl").read_text().splitlines()]
    rows[0]["learning_rate"] = 0.05  # a field a newer version might add
    (run.path / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [m.epoch for m in run.epochs()] == [1, 2] and run.check() == []
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)


def test_an_epoch_row_of_the_wrong_type_is_put_back_from_the_checkpoint(capsys, run, data_dir):
    rows = [json.loads(line) for line in (run.path / "epochs.jsonl").read_text().splitlines()]
    good = rows[0]["val_acc"]
    rows[0]["val_acc"] = "ninety percent"
    (run.path / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [m.epoch for m in run.epochs()] == [2]
    assert "epochs.jsonl: 1 line unreadable, skipped (line 1: val_acc is 'ninety percent', not a number)" in run.check()
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)
    assert Run(run.path).epochs()[0].val_acc == good
    assert "epochs.jsonl: epoch 1 put back from checkpoint.pt" in Run(run.path).info().repaired


def test_a_truncated_epochs_file_loses_no_epoch(capsys, run, data_dir):
    path = run.path / "epochs.jsonl"
    path.write_bytes(path.read_bytes()[:25])  # cut inside its first line
    assert run.epochs() == []
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)
    assert "epochs.jsonl: epochs 1, 2 put back from checkpoint.pt" in Run(run.path).info().repaired


def test_steps_written_twice_are_kept_once(capsys, run, data_dir):
    with open(run.path / "steps.csv", "a") as f:
        f.write("".join(f"{s},9.0\n" for s in range(1, 6)))  # a restarted trainer's rows, again
    steps, losses = run.steps()
    assert steps.tolist() == list(range(1, 2 * STEPS_PER_EPOCH + 1)) and losses[0] == 9.0
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)


def test_a_probes_file_with_a_text_version_is_set_aside(capsys, run, data_dir):
    probes = torch.load(run.path / "probes.pt", weights_only=True)
    probes["version"] = "1"
    torch.save(probes, run.path / "probes.pt")
    assert any(line.startswith("probes.pt:") and "format version is '1'" in line for line in run.check())
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)
    assert (run.path / "probes.damaged.pt").exists()
    from lenet_core.probes import load_probes

    assert load_probes(run.path / "probes.pt")["epochs"] == [2, 3]  # recorded again from where it resumed
    assert any(r.startswith("probes.pt:") for r in Run(run.path).info().repaired)


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_lost_weights_refuse_with_one_line_then_train_again_from_scratch(capsys, run, data_dir, damage):
    if damage == "missing":
        (run.path / "checkpoint.pt").unlink()
    else:
        (run.path / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    code, out, err = resume(capsys, run, data_dir)
    assert code == 2 and "Traceback" not in out + err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "--from-scratch" in error_lines[0]
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before  # nothing changed

    code, out, err = resume(capsys, run, data_dir, "--from-scratch")
    assert code == 0, err
    assert_whole_record(run)


@pytest.mark.parametrize("name", ["status.json", "config.json", "live.json", "control.json"])
def test_a_damaged_json_file_is_named_and_the_run_carries_on(capsys, run, data_dir, name):
    (run.path / name).write_bytes(b"\x00\xff{not json")
    info = run.info()  # never raises: the settings come from the checkpoint, the status says what happened
    assert info.config == CONFIG
    assert any(line.startswith(f"{name}: damaged, not JSON") for line in Run(run.path).check())
    if name == "live.json":
        assert len(Run(run.path).live()["epochs"]) == 2  # made again from the record
    code, _, err = resume(capsys, run, data_dir)
    assert code == 0, err
    assert_whole_record(run)


def _wrong_type(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["train_loss"] = [1, 2]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


DAMAGE = {  # what is done to the run, and what the Train page then says about it
    "garbage": (lambda run: insert_garbage(run.path / "epochs.jsonl", after_line=1),
                "epochs.jsonl: 1 line unreadable, skipped (line 2: not JSON)"),
    "truncated": (lambda run: (run.path / "steps.csv").write_bytes((run.path / "steps.csv").read_bytes()[:30]),
                  None),  # a cut-short last line is what a kill leaves: nothing to warn about, the rest kept
    "wrong type": (lambda run: _wrong_type(run.path / "epochs.jsonl"),
                   "epochs.jsonl: 1 line unreadable, skipped (line 2: train_loss is [1, 2], not a number)"),
    "missing": (lambda run: (run.path / "checkpoint.pt").unlink(),
                "checkpoint.pt: missing: the weights of its finished epochs are gone"),
    "probes": (lambda run: (run.path / "probes.pt").write_bytes(b"\x00" * 100),
               "probes.pt: is not a LeNet Lab probes file: it is not a file written by torch.save"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_the_train_page_shows_a_damaged_run_with_its_message(run, data_dir, monkeypatch, kind):
    damage, said = DAMAGE[kind]
    damage(run)
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "browser-a"
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception, at.exception
    warnings = "\n".join(w.value for w in at.warning).replace("\\", "")  # as the page shows it, unescaped
    if said is None:
        assert "damaged" not in warnings
        whole = (run.path / "steps.csv").read_bytes().count(b"\n") - 1  # lines after the header, not the cut one
        assert whole >= 1 and Run(run.path).steps()[0].tolist() == list(range(1, whole + 1))  # what was whole is kept
    else:
        assert "Some of this run's files are damaged" in warnings and said in warnings, warnings
    assert run.info().name in "\n".join(h.value for h in at.subheader)  # the run is on show, not hidden


@pytest.mark.parametrize("page", ["views/evaluate.py", "views/activations.py", "views/draw.py"])
def test_pages_that_open_a_model_name_a_run_whose_weights_are_damaged(run, data_dir, monkeypatch, page):
    (run.path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "browser-a"
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    warnings = "\n".join(w.value for w in at.warning).replace("\\", "")
    assert f"Not offered, its weights cannot be opened: **{run.info().name}** (checkpoint.pt is not a LeNet Lab " \
           "checkpoint: it is not a file written by torch.save" in warnings


def test_the_class_page_names_damaged_runs(run, data_dir, monkeypatch):
    insert_garbage(run.path / "steps.csv", after_line=4)
    (run.path.parent / "unreadable").mkdir()
    for name in ("config.json", "run.json"):
        (run.path.parent / "unreadable" / name).write_text("{")
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LENET_LECTURER_TOKEN", "a-long-enough-lecturer-token")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "lecturer"
    at.run()
    at.switch_page("views/classroom.py").run()
    at.text_input[0].input("a-long-enough-lecturer-token")
    at.button[0].click().run()
    assert not at.exception, at.exception
    warnings = "\n".join(w.value for w in at.warning).replace("\\", "")
    assert "steps.csv: 1 line unreadable, skipped (line 5: not 'step,loss')" in warnings
    assert "unreadable: is a run folder this version cannot read: its config.json is damaged, not JSON" in warnings


def test_names_written_by_another_process_are_read_as_plain_bounded_text(run):
    meta = json.loads((run.path / "run.json").read_text())
    meta["name"] = "a\nname\x1b[31m with control characters " + "x" * 10_000
    (run.path / "run.json").write_text(json.dumps(meta))
    name = run.info().name
    assert name.startswith("a name [31m with control characters xx") and len(name) == 80
    run.rename("\t\n")
    assert run.info().name == name  # an empty name is no name: the old one stays
