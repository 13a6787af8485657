"""How one number of a layer's output is made from the numbers before it: the input window under a
conv kernel, the products, their sum, the bias and the activation; a pooling window and its average
or max; a dense unit's largest contributions. A pure function of (model, input), computed in float64
from the model's own weights, so it can be checked against the model's forward pass."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import activations
from .model import LeNet

ACTIVATION_FORMULAS = {"sigmoid": "1 / (1 + e^-x)", "relu": "max(0, x)", "tanh": "tanh(x)"}
_FUNCTIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


class ExplainError(ValueError):
    """A layer, unit or position the model does not have; the message says what it has."""


def layers(model: LeNet) -> list[str]:
    """The layers whose units can be explained, in order: conv1, conv1_pool, ..., fc1, ..., output."""
    names = [n for n in dict(model.net.named_children()) if n != "flatten" and not n.endswith("_act")]
    return names


def _layer(model: LeNet, name: str) -> str:
    base = name.removesuffix("_act")  # a map after its activation is explained with its conv
    if base not in layers(model):
        raise ExplainError(f"layer {name!r} is not one of {', '.join(layers(model))}")
    return base


def _input_name(model: LeNet, layer: str) -> str:
    names = list(dict(model.net.named_children()))
    i = names.index(layer)
    return names[i - 1] if i else "input"


def _tolist(t: torch.Tensor):
    return t.tolist()


def explain(model: LeNet, x: torch.Tensor, layer: str, unit: int, at: tuple[int, int] | None = None,
            top: int = 10) -> dict:
    """One unit of `layer` for the single input `x` (1, C, H, W): `unit` is the channel of a conv or
    pooling map (with `at` = (row, col) in it) or the index of a dense unit. Every number is a plain
    float or a nested list of them (JSON as it stands)."""
    if x.dim() != 4 or len(x) != 1:
        raise ExplainError(f"explain one input of shape (1, C, H, W), got {tuple(x.shape)}")
    layer = _layer(model, layer)
    acts = activations(model, x)
    acts["input"] = x.detach().cpu()
    source = _input_name(model, layer)
    inp = acts[source][0].double()
    out_shape = tuple(acts[layer].shape[1:])
    if not 0 <= unit < out_shape[0]:
        raise ExplainError(f"{layer} has {out_shape[0]} {'channels' if len(out_shape) == 3 else 'units'} "
                           f"(0 to {out_shape[0] - 1}), not {unit}")
    if len(out_shape) == 3:
        if at is None or len(at) != 2:
            raise ExplainError(f"{layer} is a map: give the position as ROW,COL")
        r, c = at
        if not (0 <= r < out_shape[1] and 0 <= c < out_shape[2]):
            raise ExplainError(f"{layer}'s maps are {out_shape[1]}x{out_shape[2]}: row and column go from 0 to "
                               f"{out_shape[1] - 1} and {out_shape[2] - 1}, not {r},{c}")
    result = {"layer": layer, "unit": unit, "input": source}
    if layer.startswith("conv") and "_" not in layer:
        result.update(_conv(model, layer, inp, unit, (r, c), acts))
    elif layer.endswith("_pool"):
        result.update(_pool(model, inp, unit, (r, c), acts[layer][0, unit, r, c]))
    else:
        result.update(_dense(model, layer, inp, unit, top, acts))
    return result


def _conv(model: LeNet, layer: str, inp: torch.Tensor, unit: int, at: tuple[int, int], acts) -> dict:
    conv = model.net.get_submodule(layer)
    k, p = conv.kernel_size[0], conv.padding[0]
    r, c = at
    padded = F.pad(inp, (p, p, p, p))
    window = padded[:, r:r + k, c:c + k]
    kernel = conv.weight[unit].detach().cpu().double()
    products = window * kernel
    total = products.sum()
    bias = float(conv.bias[unit].detach()) if conv.bias is not None else 0.0
    pre = total + bias
    name = model.config.activation
    value = _FUNCTIONS[name](pre)
    top, left = r - p, c - p  # the window's corner in the input map; outside it is padding (zeros)
    h, w = inp.shape[1:]
    inside = [[0 <= top + i < h and 0 <= left + j < w for j in range(k)] for i in range(k)]
    return {"kind": "conv", "channel": unit, "at": [r, c], "kernel_size": k, "padding": p,
            "window_origin": [top, left], "inside": inside,
            "window": _tolist(window), "kernel": _tolist(kernel), "products": _tolist(products),
            "channel_sums": _tolist(products.sum((1, 2))), "sum": float(total), "bias": bias,
            "pre_activation": float(pre), "activation": name, "formula": ACTIVATION_FORMULAS[name],
            "value": float(value), "model_value": float(acts[f"{layer}_act"][0, unit, r, c])}


def _pool(model: LeNet, inp: torch.Tensor, unit: int, at: tuple[int, int], model_value) -> dict:
    r, c = at
    window = inp[unit, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
    kind = model.config.pooling
    value = window.mean() if kind == "avg" else window.max()
    return {"kind": "pool", "channel": unit, "at": [r, c], "pooling": kind, "window_origin": [2 * r, 2 * c],
            "window": _tolist(window), "value": float(value), "model_value": float(model_value)}


def _dense(model: LeNet, layer: str, inp: torch.Tensor, unit: int, top: int, acts) -> dict:
    dense = model.net.get_submodule(layer)
    weights = dense.weight[unit].detach().cpu().double()
    products = inp * weights
    total = products.sum()
    bias = float(dense.bias[unit].detach())
    pre = total + bias
    order = products.abs().argsort(descending=True)[:top].tolist()
    where = None
    if _input_name(model, layer) == "flatten":  # name each input by its place in the last pooled maps
        shape = acts[list(acts)[list(acts).index("flatten") - 1]].shape[1:]
        where = lambda i: [i // (shape[1] * shape[2]), i // shape[2] % shape[1], i % shape[2]]
    largest = [{"index": i, "input": float(inp[i]), "weight": float(weights[i]), "product": float(products[i]),
                **({"map_position": where(i)} if where else {})} for i in order]
    if layer == "output":  # the logit: the softmax of all ten gives the probabilities
        name, value, model_value = "none (a logit)", pre, acts["output"][0, unit]
    else:
        name = model.config.activation
        value, model_value = _FUNCTIONS[name](pre), acts[f"{layer}_act"][0, unit]
    return {"kind": "dense", "unit": unit, "inputs": len(inp), "largest": largest, "sum": float(total),
            "bias": bias, "pre_activation": float(pre), "activation": name,
            "formula": ACTIVATION_FORMULAS.get(name, "x"), "value": float(value), "model_value": float(model_value)}
