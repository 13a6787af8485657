"""`lenet` (or `python -m lenet_core`): train, resume, list, summarise and evaluate from a terminal.

Every run is a run folder (runs.py), the same the app shows: `train --out runs/NAME` writes it as it
trains, so a run killed mid-way is resumed with `resume runs/NAME`."""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .model import PRESETS, ModelConfig, preset
from .settings import ConfigError, declared, flag
from .train import Callback, TrainConfig

EXIT_USAGE = 2
RUN_FILES = ("config.json", "run.json", "status.json", "control.json", "claim.json", "steps.csv", "epochs.jsonl",
             "live.json", "checkpoint.pt", "metrics.json", "probes.pt")


class UsageError(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None


def add_setting_flags(p: argparse.ArgumentParser, cls, title: str):
    """One flag per declared setting of `cls`, with its help and choices; None when not given."""
    g = p.add_argument_group(title)
    for name, (meta, kind) in declared(cls).items():
        if not meta.cli:
            continue
        kw = {"help": meta.help.replace("**", "").replace("%", "%%"), "default": None}
        if meta.choices:
            kw["choices"] = meta.choices
        if kind.startswith("tuple"):
            kw.update(type=_int_list, metavar="N,N")
        elif kind in ("int", "float"):
            kw.update(type=int if kind == "int" else float, metavar=meta.short.upper())
        g.add_argument(flag(name), dest=name, **kw)


def add_model_flags(p: argparse.ArgumentParser):
    p.add_argument("--preset", default="classic", choices=sorted(PRESETS),
                   help="starting point for the architecture (default: classic, the chapter's)")
    add_setting_flags(p, ModelConfig, "architecture (defaults come from --preset)")


def model_config(args) -> ModelConfig:
    changes = {k: getattr(args, k) for k in declared(ModelConfig) if getattr(args, k, None) is not None}
    cfg = preset(args.preset).replace(**changes)
    cfg.validate()
    return cfg


def train_config(args) -> TrainConfig:
    changes = {k: getattr(args, k) for k in declared(TrainConfig) if getattr(args, k, None) is not None}
    config = TrainConfig(model=model_config(args)).replace(**changes)
    config.validate()
    return config


class ConsoleProgress(Callback):
    """A progress bar on stderr and one line per epoch on stdout."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.interactive = stream, stream.isatty()
        self.last = 0.0

    def on_fit_start(self, trainer, state):
        self.total, self.first, self.t0 = trainer.total_steps, state.step, time.perf_counter()

    def on_steps(self, first_step, losses, epoch):
        now, step = time.perf_counter(), first_step + len(losses) - 1
        if now - self.last < (0.1 if self.interactive else 5.0):
            return
        self.last = now
        frac, done = step / self.total, (step - self.first) / max(self.total - self.first, 1)
        eta = (now - self.t0) / done * (1 - done) if done else 0
        line = (f"epoch {epoch} [{'#' * int(30 * frac):<30}] {100 * frac:5.1f}%  loss {losses[-1]:.4f}  "
                f"eta {eta:4.0f}s")
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def on_epoch_end(self, m, state, model):
        if self.interactive:
            self.stream.write("\r" + " " * 80 + "\r")
        print_epoch(m)


def print_epoch(m) -> None:
    print(f"epoch {m.epoch:2d}  train loss {m.train_loss:.4f}  train acc {m.train_acc:.4f}  "
          f"val loss {m.val_loss:.4f}  val acc {m.val_acc:.4f}  {m.samples_per_s:7.0f} samples/s  "
          f"{m.epoch_time:5.1f}s", flush=True)


def cmd_summary(args):
    from .activations import format_summary, layer_summary

    print(format_summary(layer_summary(model_config(args))))
    return 0


def prepare_out(path: str, overwrite: bool) -> Path:
    """Before any training: the run folder can be written, and holds no run unless --overwrite."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path} is a file; give a folder for the run")
    if out.is_dir() and any((out / f).exists() for f in ("checkpoint.pt", "run.json")):
        if not overwrite:
            raise UsageError(f"--out {path} already holds a run; pass --overwrite to replace it, or choose another folder")
        for name in RUN_FILES:  # only the run's own files: never a folder the user pointed at by mistake
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write the run to {path}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def signals_stop(stop: threading.Event):
    """While training here: Ctrl-C or SIGTERM stops the run at the next step (it is then saved as
    'stopped'); a second Ctrl-C quits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step; the run so far is kept (Ctrl-C again to quit at once)",
              file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def follow(run, stop: threading.Event) -> None:
    """Print a run trained elsewhere (another executor) as its folder grows, until it ends;
    a stop here asks it to stop."""
    printed, asked = 0, False
    while True:
        epochs = run.epochs()
        for m in epochs[printed:]:
            print_epoch(m)
        printed = len(epochs)
        if stop.is_set() and not asked:
            run.request(stop=True)
            asked = True
        if not run.info().live:
            return
        time.sleep(0.5)


def train_folder(run, args) -> int:
    """Train (or carry on) `run` here or on the executor asked for; report; exit code."""
    from .worker import train_run

    stop = threading.Event()
    with signals_stop(stop):
        if args.executor == "ray":
            from .ray_executor import RayExecutor

            executor = RayExecutor(address=args.ray_address,
                                   data_dir=Path(args.data_dir).resolve() if args.data_dir else None)
            try:
                print(f"submitted to Ray ({executor.describe()})", flush=True)
                executor.submit(run)
                follow(run, stop)
            finally:
                executor.shutdown()
        elif train_run(run.path, data_dir=args.data_dir, callbacks=[ConsoleProgress()], stop_event=stop,
                       executor="cli") == "busy":
            raise UsageError(f"{run.path} is being trained by another process right now")
    info = run.info()
    print(info.message)
    print(f"saved run to {run.path}")
    if info.test_accuracy is not None:
        print(f"test accuracy {info.test_accuracy:.4f}")
    if args.json:
        epochs = run.epochs()
        print(json.dumps({"path": str(run.path), "status": info.status, "test_accuracy": info.test_accuracy,
                          "test_loss": info.final.get("test_loss"), "epochs": info.epochs_done,
                          "train_time_s": round(sum(m.epoch_time for m in epochs), 2),
                          "samples_per_s": round(sum(m.samples_per_s for m in epochs) / max(len(epochs), 1)),
                          "per_class_accuracy": info.final.get("per_class_accuracy", {})}))
    return 0 if info.status == "finished" else 1


def cmd_train(args):
    from .runs import Run, runs_root
    from .train import device_label, resolve_device
    from .worker import dataset

    config = train_config(args)
    data = dataset(config.dataset, args.data_dir)  # missing data: one clear error before a folder is made
    out = prepare_out(args.out, args.overwrite) if args.out else None
    run = Run.create(config, runs_root(), path=out, name=args.name)
    where = "Ray" if args.executor == "ray" else device_label(resolve_device(config.device))
    print(f"training {run.info().name} on {config.dataset} ({len(data.train_images)} images) on {where}; "
          f"run folder {run.path}", flush=True)
    return train_folder(run, args)


def cmd_resume(args):
    from .runs import RESUMABLE, Run

    run = Run(args.run_dir)
    if not run.exists():
        raise UsageError(f"{args.run_dir} is not a run folder")
    info = run.info()
    if info.status not in RESUMABLE:
        raise UsageError(f"{args.run_dir} is {info.status}; only a stopped, interrupted or failed run can be resumed")
    print(f"resuming {info.name} from epoch {info.epochs_done} of {info.config.epochs}", flush=True)
    run.requeue()
    return train_folder(run, args)


def cmd_runs(args):
    from .runs import list_runs, runs_root

    infos = list_runs(args.root or runs_root())
    for i in infos:
        acc = f"{i.test_accuracy:.4f}" if i.test_accuracy is not None else "-"
        print(f"{i.path}  {i.status:<11} {i.epochs_done:>3}/{i.config.epochs:<3} acc {acc:<6}  {i.name}")
    if not infos:
        print(f"no runs in {args.root or runs_root()}")
    if args.json:
        print(json.dumps([i.to_dict() for i in infos]))
    return 0


def cmd_evaluate(args):
    from .checkpoint import ForeignTorchFile, load_checkpoint
    from .runs import Run
    from .train import evaluate, resolve_device
    from .worker import dataset

    path = Path(args.checkpoint)
    try:
        ckpt = Run(path).load_checkpoint() if path.is_dir() else load_checkpoint(path)
    except ForeignTorchFile as e:  # most often a state dict saved in a notebook: say how to bring it in
        raise UsageError(f"{e}; if it holds a network's weights (torch.save(model.state_dict(), ...)), bring it in "
                         f"with `lenet import {args.checkpoint} --dataset NAME`, then evaluate the run folder") from None
    data = dataset(args.dataset or ckpt.dataset, args.data_dir)
    result = evaluate(ckpt.model.to(resolve_device(args.device)), data.test_images, data.test_labels)
    print(f"{args.checkpoint}: {ckpt.dataset} model, evaluated on {data.name} test ({result['count']} images)")
    for name, acc in zip(data.classes, result["per_class_accuracy"]):
        print(f"  {name:<12} {acc:.4f}")
    print(f"test accuracy {result['accuracy']:.4f}  test loss {result['loss']:.4f}")
    if args.json:
        print(json.dumps({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                          "per_class_accuracy": dict(zip(data.classes, result["per_class_accuracy"])),
                          "count": result["count"]}))
    return 0


def cmd_import(args):
    from .imports import SCALINGS, Architecture, check, import_run, read_file
    from .runs import from_checkpoint, runs_root
    from .worker import dataset

    t0 = time.perf_counter()
    found = read_file(args.file, args.file)
    if not isinstance(found, Architecture):  # a LeNet Lab checkpoint: kept as it is, like an upload
        run = from_checkpoint(found, runs_root(), name=args.name or Path(args.file).stem)
        print(f"{args.file} is a LeNet Lab checkpoint; saved run to {run.path}")
        if args.json:
            print(json.dumps({"run": str(run.path), "test_accuracy": found.metrics.get("test_accuracy")}))
        return 0
    data = dataset(args.dataset, args.data_dir)
    print(f"{args.file}: {found.layout}, read as")
    for line in found.describe():
        print(f"  {line}")
    given = {"activation": args.activation, "pooling": args.pool, "scaling": args.input_scaling}
    result = check(found, data, **given)
    asked = [k for k, v in given.items() if v is None]
    print(f"check on {result.best.count:,} {data.name} test images"
          + (f" ({', '.join(asked)} not in the file: every combination tried, the best taken)" if asked else "") + ":")
    for t in result.trials:
        print(f"  {t.label():<48} {t.accuracy:6.1%}  loss {t.loss:.3f}" + ("   <- taken" if t is result.best else ""))
    if doubt := result.doubt():
        print(f"note: {doubt}")
    run, test = import_run(found, data, result.best, args.file, runs_root(), name=args.name, check_result=result)
    seconds = time.perf_counter() - t0
    print(f"test accuracy {test['accuracy']:.4f} on {test['count']:,} test images ({result.best.label()}); "
          f"imported in {seconds:.2f}s")
    print(f"saved run to {run.path}")
    if args.json:
        print(json.dumps({"run": str(run.path), "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                          "count": test["count"], "activation": result.best.activation,
                          "pooling": result.best.pooling, "scaling": result.best.scaling,
                          "input": SCALINGS[result.best.scaling], "guessed": asked,
                          "check": [t.to_dict() for t in result.trials], "seconds": round(seconds, 3)}))
    return 0


def _executor_flags(p):
    p.add_argument("--executor", default="here", choices=("here", "ray"),
                   help="train in this process (default), or on Ray (LENET_RAY_ADDRESS or --ray-address)")
    p.add_argument("--ray-address", default=None, help="a Ray cluster to join, e.g. auto or ray://host:10001 "
                                                       "(default: $LENET_RAY_ADDRESS, else a local Ray)")
    p.add_argument("--data-dir", help="folder with fashion-mnist/ and mnist/ (default: $LENET_DATA_DIR, cache, download)")
    p.add_argument("--json", action="store_true", help="print final metrics as JSON on the last line")


def build_parser() -> Parser:
    p = Parser(prog="lenet", description="LeNet Lab's engine: train, resume, list, summarise and evaluate "
                                         "LeNet-5 variants. Runs are folders under runs/ (or $LENET_RUNS_DIR).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("summary", help="print the layer table")
    add_model_flags(s)
    s.set_defaults(func=cmd_summary)

    t = sub.add_parser("train", help="train a model into a run folder")
    add_model_flags(t)
    add_setting_flags(t, TrainConfig, "training (defaults: the chapter's)")
    t.add_argument("--out", metavar="RUN_DIR", help="the run folder (default: a new folder under the runs root)")
    t.add_argument("--name", help="the run's name (default: what it is, e.g. 'classic · lr 0.3')")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in RUN_DIR")
    _executor_flags(t)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("resume", help="carry a stopped or interrupted run on to its planned epochs")
    r.add_argument("run_dir", metavar="RUN_DIR")
    _executor_flags(r)
    r.set_defaults(func=cmd_resume)

    ls = sub.add_parser("runs", help="list the run folders, newest first")
    ls.add_argument("--root", help="the runs root (default: $LENET_RUNS_DIR or runs/)")
    ls.add_argument("--json", action="store_true", help="print the list as JSON on the last line")
    ls.set_defaults(func=cmd_runs)

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint or run folder")
    e.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR")
    e.add_argument("--dataset", choices=("fashion-mnist", "mnist"), help="default: the one it was trained on")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.add_argument("--data-dir")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    from .imports import SCALING_HELP
    from .model import ACTIVATIONS, POOLINGS

    i = sub.add_parser("import", help="bring in a LeNet trained elsewhere (a plain PyTorch state dict) as a run",
                       description="Reads the architecture from the weights (the chapter's net.N.*, an "
                                   "nn.Sequential's N.*, or named layers such as conv1 ... fc3, alone or under "
                                   "state_dict, model_state_dict or model). What the weights cannot say is given "
                                   "by the flags below, or tried on 1,000 test images and the best taken.")
    i.add_argument("file", metavar="FILE", help="saved with torch.save(model.state_dict(), FILE)")
    i.add_argument("--dataset", required=True, choices=("fashion-mnist", "mnist"), help="what it was trained on")
    i.add_argument("--name", help="the run's name (default: the file's name)")
    i.add_argument("--activation", choices=tuple(ACTIVATIONS), help="default: tried")
    i.add_argument("--pool", choices=tuple(POOLINGS), help="default: tried")
    i.add_argument("--input-scaling", choices=("unit", "symmetric", "standardized"),
                   help=f"how its images were scaled; default: tried. {SCALING_HELP}")
    i.add_argument("--data-dir")
    i.add_argument("--json", action="store_true", help="print the run folder and test accuracy as JSON on the last line")
    i.set_defaults(func=cmd_import)
    return p


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataUnavailableError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
    except ConfigError as e:
        print(f"error: bad setting {e}", file=sys.stderr)
    except (CheckpointError, DataUnavailableError) as e:
        # For missing data the first line is the error; the rest says where we looked and what to do.
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    return EXIT_USAGE
