"""Any LeNet as one ONNX graph: the class probabilities and the post-activation maps of its first two
conv layers, for the browser's live Draw canvas (onnxruntime-web), Netron or Python's onnxruntime.

Outputs, by name: "probs" (1, classes), "conv1" (1, C1, H1, W1) and, where the model has a second
conv layer, "conv2". The input is "image", (1, 1, 28, 28) floats in [0, 1], ink = 1, as
preprocess.digit_from_rgba makes it."""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, atomic_write, load_checkpoint
from .model import LeNet

# onnxruntime-web 1.30 (the browser's runtime) reads IR versions up to 13; onnx 1.23 writes 14 by
# default, which the browser refuses. 10 is what opset 18 needs and every runtime since 1.16 reads.
IR_VERSION = 10
OPSET = 18
INPUT = "image"


class ExportError(ValueError):
    """A model that could not be made into ONNX, or a file that could not be written; says why."""


class _WithMaps(nn.Module):
    """The model's forward pass, also returning what its first two conv layers' activations give."""

    def __init__(self, model: LeNet):
        super().__init__()
        self.net = model.net
        self.keep = [f"conv{i}_act" for i in range(1, min(2, len(model.config.conv_channels)) + 1)]

    def forward(self, x):
        maps = []
        for name, layer in self.net.named_children():
            x = layer(x)
            if name in self.keep:
                maps.append(x)
        return (torch.softmax(x, dim=1), *maps)


def output_names(model: LeNet) -> list[str]:
    return ["probs"] + [f"conv{i}" for i in range(1, min(2, len(model.config.conv_channels)) + 1)]


def onnx_bytes(model: LeNet, properties: dict[str, str] | None = None) -> bytes:
    """The model as an ONNX file's bytes (the model itself is left as it was); `properties` go into
    the file's metadata (Netron shows them)."""
    import onnx

    cpu = LeNet(model.config)
    cpu.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    wrapper = _WithMaps(cpu.eval())
    x = torch.zeros(1, 1, model.config.image_size, model.config.image_size)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's
            torch.onnx.export(wrapper, (x,), buf, input_names=[INPUT], output_names=output_names(model),
                              opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    except Exception as e:  # the exporter raises many kinds; the user gets one line
        raise ExportError(f"the model could not be exported to ONNX: {type(e).__name__}: {e}") from None
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    proto.producer_name = "LeNet Lab"
    proto.doc_string = (f"LeNet Lab model {model.config.to_dict()}; input {INPUT!r} (1, 1, 28, 28) in [0, 1], "
                        f"outputs {', '.join(output_names(model))}")
    for key, value in (properties or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def checkpoint_file(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        if not (path / "checkpoint.pt").exists():
            raise CheckpointError(f"{path} has no checkpoint.pt: is it a run folder with a trained model?")
        return path / "checkpoint.pt"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: give a run folder or a checkpoint file")
    return path


def checkpoint_sha256(source: str | Path) -> str:
    """The checkpoint's SHA-256, which an exported file keeps in its metadata: which weights it holds."""
    try:
        return hashlib.sha256(checkpoint_file(source).read_bytes()).hexdigest()
    except OSError as e:
        raise CheckpointError(f"could not read {source}: {e.strerror or e}") from None


def load_model(source: str | Path) -> LeNet:
    """The model of a run folder or a checkpoint file; CheckpointError says what is wrong with it."""
    from .runs import Run

    path = checkpoint_file(source)
    return Run(path.parent).load_checkpoint().model if Path(source).is_dir() else load_checkpoint(path).model


def source_bytes(source: str | Path) -> bytes:
    """The ONNX file of a run folder's or checkpoint's model, naming the checkpoint in its metadata."""
    digest = checkpoint_sha256(source)
    return onnx_bytes(load_model(source), {"checkpoint_sha256": digest})


def export(source: str | Path, out: str | Path) -> Path:
    """Write the ONNX file of a run folder's or checkpoint's model to `out`, atomically."""
    data = source_bytes(source)
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name such as {out / 'model.onnx'}")
    try:
        atomic_write(out, lambda f: f.write(data))
    except OSError as e:
        raise ExportError(f"could not write {out}: {e.strerror or e}") from None
    return out
