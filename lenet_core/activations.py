"""Every layer's output for a batch, by name, for any architecture LeNet builds."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from .model import LeNet, ModelConfig, num_parameters


@torch.inference_mode()
def activations(model: LeNet, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
    """Push `x` (N, C, H, W) float through the model and return each layer's
    output on the CPU, in order: conv1, conv1_act, conv1_pool, ..., output."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    h = x.to(device)
    for name, layer in model.net.named_children():
        h = layer(h)
        out[name] = h.detach().cpu()
    model.train(was_training)
    return out


def conv_stages(model: LeNet, layer: int) -> dict[str, str]:
    """Names of the pre-activation, post-activation and pooled outputs of conv `layer` (1-based)."""
    return {"pre-activation": f"conv{layer}", "post-activation": f"conv{layer}_act", "pooled": f"conv{layer}_pool"}


def conv_filters(model: LeNet, layer: int) -> torch.Tensor:
    """Weights of conv `layer` (1-based): (out_channels, in_channels, k, k) on the CPU."""
    return getattr(model.net, f"conv{layer}").weight.detach().cpu()


@torch.inference_mode()
def predict_proba(model: LeNet, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes) on the CPU for float inputs (N, 1, 28, 28)."""
    was_training = model.training
    model.eval()
    p = torch.softmax(model(x.to(next(model.parameters()).device)), dim=1).cpu()
    model.train(was_training)
    return p


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


def layer_summary(config_or_model: ModelConfig | LeNet, batch_size: int = 1) -> list[LayerRow]:
    """Each layer's name, type, output shape (with the batch) and parameters, found by pushing a
    zero batch through the network, as the chapter's layer_summary does."""
    model = config_or_model if isinstance(config_or_model, LeNet) else LeNet(config_or_model)
    x = torch.zeros(batch_size, model.config.in_channels, model.config.image_size, model.config.image_size)
    rows = []
    with torch.no_grad():
        for name, layer in model.net.named_children():
            x = layer(x)
            rows.append(LayerRow(name, type(layer).__name__, tuple(x.shape), num_parameters(layer)))
    return rows


def format_summary(rows: list[LayerRow]) -> str:
    lines = [f"{'layer':<12} {'type':<10} {'output shape':<18} {'params':>8}"]
    lines += [f"{r.name:<12} {r.kind:<10} {str(r.output_shape):<18} {r.parameters:>8,}" for r in rows]
    lines.append(f"{'total':<12} {'':<10} {'':<18} {sum(r.parameters for r in rows):>8,}")
    return "\n".join(lines)
