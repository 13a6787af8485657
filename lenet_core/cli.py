"""`python -m lenet_core {train,summary,evaluate}`: the engine from a terminal."""
from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from .model import ACTIVATIONS, INITS, PADDINGS, POOLINGS, PRESETS, ConfigError, format_summary, layer_summary, preset
from .train import DEVICES, OPTIMIZERS, Callback, TrainConfig

EXIT_USAGE = 2


class UsageError(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    return values


def add_model_flags(p: argparse.ArgumentParser):
    g = p.add_argument_group("architecture (defaults come from --preset)")
    g.add_argument("--preset", default="classic", choices=sorted(PRESETS), help="starting point (default: classic, the chapter's)")
    g.add_argument("--activation", choices=sorted(ACTIVATIONS))
    g.add_argument("--pooling", choices=sorted(POOLINGS))
    g.add_argument("--kernel-size", type=int, metavar="K")
    g.add_argument("--conv-channels", type=_int_list, metavar="C1,C2", help="channels per conv layer; 1 to 3 layers, e.g. 6,16")
    g.add_argument("--dense-widths", type=_int_list, metavar="W1,W2", help="widths of hidden dense layers, e.g. 120,84 ('' for none)")
    g.add_argument("--init", choices=INITS)
    g.add_argument("--padding", choices=PADDINGS)


def model_config(args):
    changes = {k: getattr(args, k) for k in ("activation", "pooling", "kernel_size", "conv_channels",
                                             "dense_widths", "init", "padding") if getattr(args, k) is not None}
    cfg = preset(args.preset).replace(**changes)
    cfg.validate()
    return cfg


class ConsoleProgress(Callback):
    """A progress bar on stderr and one line per epoch on stdout."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.interactive = stream, stream.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0

    def on_fit_start(self, trainer, total_steps):
        self.total, self.t0 = total_steps, time.perf_counter()

    def on_step(self, e):
        now = time.perf_counter()
        if now - self.last < (0.1 if self.interactive else 5.0) and e.batch != e.batches:
            return
        self.last = now
        frac = e.step / self.total
        bar = "#" * int(30 * frac)
        eta = (now - self.t0) / frac * (1 - frac) if frac else 0
        line = f"epoch {e.epoch} [{bar:<30}] {100 * frac:5.1f}%  loss {e.loss:.4f}  eta {eta:4.0f}s"
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def on_epoch_end(self, m):
        if self.interactive:
            self.stream.write("\r" + " " * 80 + "\r")
        print(f"epoch {m.epoch:2d}  train loss {m.train_loss:.4f}  train acc {m.train_acc:.4f}  "
              f"val loss {m.val_loss:.4f}  val acc {m.val_acc:.4f}  {m.samples_per_s:7.0f} samples/s  "
              f"{m.epoch_time:5.1f}s", flush=True)


def cmd_summary(args):
    print(format_summary(layer_summary(model_config(args))))


def check_run_dir(path: str, overwrite: bool) -> Path:
    """Before any training: the run folder can be written, and holds no run unless --overwrite."""
    from .checkpoint import holds_run

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path} is a file; give a folder for the run")
    if out.is_dir() and not overwrite and holds_run(out):
        raise UsageError(f"--out {path} already holds a run; pass --overwrite to replace it, or choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write the run to {path}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def ctrl_c_stops(control):
    """While training: the first Ctrl-C stops the run at the next step (it is then evaluated and
    saved as 'stopped'), a second one quits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        if control.stop_event.is_set():
            raise KeyboardInterrupt
        control.stop()
        print("\nstopping after this step; the run so far is kept (Ctrl-C again to quit at once)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train(args):
    from .checkpoint import Checkpoint, save_run
    from .data import load_dataset
    from .train import Trainer, build_model, device_label, evaluate

    config = TrainConfig(model=model_config(args), dataset=args.dataset, lr=args.lr, batch_size=args.batch_size,
                         epochs=args.epochs, optimizer=args.optimizer, seed=args.seed, device=args.device)
    config.validate()
    data = load_dataset(args.dataset, args.data_dir)
    out = check_run_dir(args.out, args.overwrite) if args.out else None
    model = build_model(config)
    trainer = Trainer(config, [ConsoleProgress()])
    print(f"training {args.preset}-based LeNet on {args.dataset} ({len(data.train_images)} images) "
          f"on {device_label(trainer.device)}", flush=True)
    with ctrl_c_stops(trainer.control):
        result = trainer.fit(model, data)
    final = evaluate(model, data.test_images, data.test_labels)
    metrics = {"status": result.status, "test_accuracy": final["accuracy"], "test_loss": final["loss"],
               "epochs": len(result.epochs), "train_time_s": round(sum(m.epoch_time for m in result.epochs), 2),
               "samples_per_s": round(sum(m.samples_per_s for m in result.epochs) / max(len(result.epochs), 1)),
               "per_class_accuracy": dict(zip(data.classes, final["per_class_accuracy"]))}
    print(result.message)
    if out is not None:
        ckpt = Checkpoint(config, model, data.name, data.classes, metrics, result.epochs, result.steps)
        try:
            save_run(out, ckpt, result.status)
        except OSError as e:
            raise UsageError(f"the run trained but could not be saved to {args.out}: {e.strerror or e}") from None
        print(f"saved run to {args.out}")
    print(f"test accuracy {final['accuracy']:.4f}")
    if args.json:
        print(json.dumps(metrics))
    return 0 if result.status == "finished" else 1


def cmd_evaluate(args):
    from .checkpoint import load_run
    from .data import load_dataset
    from .train import evaluate, resolve_device

    ckpt = load_run(args.checkpoint)
    data = load_dataset(args.dataset or ckpt.dataset, args.data_dir)
    model = ckpt.model.to(resolve_device(args.device))
    result = evaluate(model, data.test_images, data.test_labels)
    print(f"{args.checkpoint}: {ckpt.dataset} model, evaluated on {data.name} test ({result['count']} images)")
    for name, acc in zip(data.classes, result["per_class_accuracy"]):
        print(f"  {name:<12} {acc:.4f}")
    print(f"test accuracy {result['accuracy']:.4f}  test loss {result['loss']:.4f}")
    if args.json:
        print(json.dumps({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                          "per_class_accuracy": dict(zip(data.classes, result["per_class_accuracy"])),
                          "count": result["count"]}))
    return 0


def build_parser() -> Parser:
    p = Parser(prog="python -m lenet_core", description="LeNet Lab's engine: train, summarise and evaluate LeNet-5 variants.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("summary", help="print the layer table")
    add_model_flags(s)
    s.set_defaults(func=cmd_summary)

    t = sub.add_parser("train", help="train a model")
    add_model_flags(t)
    t.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument("--data-dir", help="folder with fashion-mnist/ and mnist/ (default: $LENET_DATA_DIR, cache, download)")
    t.add_argument("--out", metavar="RUN_DIR", help="save settings, metrics and checkpoint here")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in RUN_DIR")
    t.add_argument("--json", action="store_true", help="print final metrics as JSON on the last line")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint or run directory")
    e.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR")
    e.add_argument("--dataset", choices=["fashion-mnist", "mnist"], help="default: the one it was trained on")
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument("--data-dir")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)
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
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
    except DataUnavailableError as e:
        # The first line is the error; the rest says where we looked and what to do.
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    return EXIT_USAGE
