"""`lenet` (or `python -m lenet_core`): train, resume, list, summarise, evaluate and export from a terminal;
change a training run's learning rate as it trains (`set`), and show how one unit's value is made (`explain`).

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
from .train import Callback, TrainConfig, plateau_note

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
        self.epochs = []

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
        self.epochs.append(m)
        if note := plateau_note(self.epochs, model.config.num_classes):
            print(f"          {note}", flush=True)


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
    if info.status == "failed":  # e.g. a disk that filled: one line, and no "saved" that would not be true
        raise UsageError(info.message)
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
                          "per_class_accuracy": info.final.get("per_class_accuracy", {}),
                          "changes": info.changes}))
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
    if args.from_scratch:
        run.restart()
        print(f"training {info.name} again from the start ({info.config.epochs} epochs)", flush=True)
        return train_folder(run, args)
    for line in run.check():  # what resuming will leave out or mend, before it does
        print(f"note: {line}", file=sys.stderr, flush=True)
    ckpt = run.resume_point()  # lost or damaged weights: one line saying what to do, nothing changed
    done = ckpt.training.epoch if ckpt is not None and ckpt.training else len(ckpt.epochs) if ckpt else 0
    print(f"resuming {info.name} from epoch {done} of {info.config.epochs}", flush=True)
    run.requeue()
    return train_folder(run, args)


def cmd_runs(args):
    from .runs import list_runs, runs_root, unreadable_runs

    root = Path(args.root or runs_root())
    infos = list_runs(root)
    for _, why in unreadable_runs(root, infos):  # a run this version cannot read: said, not hidden
        print(f"note: skipped {why}", file=sys.stderr)
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


def cmd_export(args):
    from .export import export

    source = Path(args.source)
    out = Path(args.out) if args.out else Path(f"{source.stem if source.is_file() else source.resolve().name}.onnx")
    written = export(source, out)
    print(f"wrote {written} ({written.stat().st_size:,} bytes): class probabilities and the first conv layers' maps; "
          "open it in Netron or run it with onnxruntime")
    return 0


def find_run(text: str):
    """A run folder by path, or by id under the runs root; UsageError when neither is one."""
    from .runs import Run, runs_root

    for path in (Path(text), runs_root() / text):
        if Run(path).exists():
            return Run(path)
    raise UsageError(f"{text} is not a run folder (nor a run id under {runs_root()})")


def cmd_set(args):
    from .runs import Run

    run: Run = find_run(args.run)
    values = {k: getattr(args, k) for k in ("lr", "momentum") if getattr(args, k) is not None}
    if not values:
        raise UsageError("give a setting to change, e.g. --lr 0.9")
    info = run.info()
    if info.owner is not None:
        raise UsageError(f"{info.name} belongs to a browser of the app ({info.owner_name or 'no name'}); "
                         "change it from its panel on the Train page")
    try:
        values = run.change_settings(**values)
    except ConfigError as e:
        raise UsageError(f"cannot change {info.name}: {e.message if e.setting == 'run' else e}") from None
    said = ", ".join(f"{k} {v:g}" for k, v in values.items())
    print(f"asked {info.name} ({run.path}) to use {said} from its next step"
          + (" (it is paused: it takes it when it carries on)" if info.status == "paused" else ""))
    return 0


def _position(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.split(","))
        return r, c
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not ROW,COL (two whole numbers, e.g. 3,4)") from None


def _grid(rows) -> list[str]:
    return [" ".join(f"{v:7.3f}" for v in row) for row in rows]


def print_explanation(e: dict) -> None:
    if e["kind"] == "conv":
        top, left = e["window_origin"]
        k = e["kernel_size"]
        print(f"{e['layer']} channel {e['channel']} at row {e['at'][0]}, col {e['at'][1]}: a {k}x{k} kernel over "
              f"{e['input']} rows {top} to {top + k - 1}, cols {left} to {left + k - 1}"
              + (f" (padding {e['padding']}: outside the map counts as 0)" if e["padding"] else ""))
        for ch, (w, kern, prod, total) in enumerate(zip(e["window"], e["kernel"], e["products"], e["channel_sums"])):
            print(f"\n  input channel {ch}: window | kernel | products (sum {total:.4f})")
            for a, b, c in zip(_grid(w), _grid(kern), _grid(prod)):
                print(f"  {a}  |  {b}  |  {c}")
        print(f"\nsum of products {e['sum']:.6f} + bias {e['bias']:.6f} = pre-activation {e['pre_activation']:.6f}")
        print(f"{e['activation']} {e['formula']} -> value {e['value']:.6f}")
    elif e["kind"] == "pool":
        print(f"{e['layer']} channel {e['channel']} at row {e['at'][0]}, col {e['at'][1]}: the {e['pooling']} of "
              f"{e['input']}'s 2x2 window at rows {e['window_origin'][0]}-{e['window_origin'][0] + 1}, cols "
              f"{e['window_origin'][1]}-{e['window_origin'][1] + 1}")
        for row in _grid(e["window"]):
            print(f"  {row}")
        print(f"{'average' if e['pooling'] == 'avg' else 'max'} -> value {e['value']:.6f}")
    else:
        print(f"{e['layer']} unit {e['unit']}: {e['inputs']} inputs from {e['input']}; the largest contributions:")
        for c in e["largest"]:
            where = f" (map {c['map_position'][0]}, row {c['map_position'][1]}, col {c['map_position'][2]})" \
                if "map_position" in c else ""
            print(f"  input {c['index']:>4}{where}: {c['input']:9.4f} x weight {c['weight']:8.4f} = {c['product']:9.4f}")
        print(f"sum of all {e['inputs']} products {e['sum']:.6f} + bias {e['bias']:.6f} = "
              f"pre-activation {e['pre_activation']:.6f}")
        print(f"{e['activation']} -> value {e['value']:.6f}")


def cmd_explain(args):
    from .checkpoint import load_checkpoint
    from .explain import ExplainError, explain
    from .runs import Run
    from .train import as_input
    from .worker import dataset

    path = Path(args.source)
    if not path.exists():
        raise UsageError(f"{args.source} is neither a run folder nor a checkpoint file")
    ckpt = Run(path).load_checkpoint() if path.is_dir() else load_checkpoint(path)
    data = dataset(ckpt.dataset, args.data_dir)
    if not 0 <= args.image < len(data.test_images):
        raise UsageError(f"--image must be 0 to {len(data.test_images) - 1} (the {ckpt.dataset} test set), "
                         f"got {args.image}")
    x = as_input(data.test_images[args.image:args.image + 1])
    try:
        e = explain(ckpt.model.eval(), x, args.layer, args.channel, args.at)
    except ExplainError as err:
        raise UsageError(str(err)) from None
    label = data.classes[int(data.test_labels[args.image])]
    print(f"test image {args.image} (labelled {label}) through {path}")
    print_explanation(e)
    if args.json:
        print(json.dumps({"image": args.image, **e}))
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
    r.add_argument("--from-scratch", action="store_true",
                   help="train it again from its first step, with its settings (when its weights are lost)")
    _executor_flags(r)
    r.set_defaults(func=cmd_resume)

    ls = sub.add_parser("runs", help="list the run folders, newest first")
    ls.add_argument("--root", help="the runs root (default: $LENET_RUNS_DIR or runs/)")
    ls.add_argument("--json", action="store_true", help="print the list as JSON on the last line")
    ls.set_defaults(func=cmd_runs)

    st = sub.add_parser("set", help="change a training run's learning rate (or momentum) from its next step")
    st.add_argument("run", metavar="RUN", help="a run folder, or a run id under the runs root")
    st.add_argument("--lr", type=float, help="the new learning rate")
    st.add_argument("--momentum", type=float, help="the new momentum (runs with the momentum optimizer)")
    st.set_defaults(func=cmd_set)

    x = sub.add_parser("explain", help="how one value of a layer is computed, for a test image")
    x.add_argument("source", metavar="RUN_OR_CHECKPOINT")
    x.add_argument("--image", type=int, required=True, metavar="N", help="the test image's index")
    x.add_argument("--layer", default="conv1", help="conv1, conv2, conv1_pool, fc1, output, ... (default conv1)")
    x.add_argument("--channel", type=int, default=0, metavar="C", help="the map's channel, or a dense unit's index")
    x.add_argument("--at", type=_position, metavar="ROW,COL", help="the position in the map (conv and pooling)")
    x.add_argument("--data-dir")
    x.add_argument("--json", action="store_true", help="print the computation as JSON on the last line")
    x.set_defaults(func=cmd_explain)

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint or run folder")
    e.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR")
    e.add_argument("--dataset", choices=("fashion-mnist", "mnist"), help="default: the one it was trained on")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.add_argument("--data-dir")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="write a run's or checkpoint's model as ONNX (probabilities and conv maps)")
    x.add_argument("source", metavar="RUN_OR_CHECKPOINT")
    x.add_argument("--out", metavar="FILE", help="where to write it (default: NAME.onnx in this folder)")
    x.set_defaults(func=cmd_export)

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
    from .export import ExportError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
    except ConfigError as e:
        print(f"error: bad setting {e}", file=sys.stderr)
    except (CheckpointError, DataUnavailableError, ExportError) as e:
        # For missing data the first line is the error; the rest says where we looked and what to do.
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except OSError as e:  # a disk that is full or gone: what happened, not a traceback
        print(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
    return EXIT_USAGE
