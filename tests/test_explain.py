"""One unit explained: its numbers must be the model's own, for conv layers at any depth, pooling
and dense units; and `lenet explain` prints them (and refuses what the model does not have)."""
import json

import pytest
import torch

from lenet_core import cli
from lenet_core.activations import activations
from lenet_core.explain import ExplainError, explain, layers
from lenet_core.model import LeNet, ModelConfig
from lenet_core.runs import Run
from lenet_core.train import TrainConfig
from lenet_core.worker import train_run
from synthetic import synthetic_idx

NETS = {
    "classic": ModelConfig(),
    "three convs, same padding, relu, max": ModelConfig(activation="relu", pooling="max", conv_channels=(4, 6, 8),
                                                        padding="same", kernel_size=3, dense_widths=(20,)),
    "tanh, kernel 4, no dense": ModelConfig(activation="tanh", kernel_size=4, conv_channels=(3, 5), dense_widths=()),
}


def positions(shape):
    """Corners, edges and the middle of a map (padding shows at the borders)."""
    h, w = shape
    return {(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2), (1, w // 3)}


@pytest.mark.parametrize("name", list(NETS))
def test_every_conv_unit_explained_is_the_models_own_value(name):
    torch.manual_seed(1)
    model = LeNet(NETS[name]).eval()
    for layer in model.net:  # the init leaves biases small; make them count, so a slip in adding them shows
        if hasattr(layer, "bias"):
            torch.nn.init.normal_(layer.bias.data, std=0.3)
    x = torch.rand(1, 1, 28, 28)
    acts = activations(model, x)
    checked = 0
    for i in range(1, len(NETS[name].conv_channels) + 1):
        out = acts[f"conv{i}"][0]
        for ch in {0, out.shape[0] - 1}:
            for r, c in positions(out.shape[1:]):
                e = explain(model, x, f"conv{i}", ch, (r, c))
                products = torch.tensor(e["products"], dtype=torch.float64)
                window, kernel = (torch.tensor(e[k], dtype=torch.float64) for k in ("window", "kernel"))
                assert products.shape == window.shape == kernel.shape
                assert products == pytest.approx(window * kernel, abs=1e-12)
                assert e["sum"] == pytest.approx(float(products.sum()), abs=1e-12)
                assert e["pre_activation"] == pytest.approx(e["sum"] + e["bias"], abs=1e-12)
                assert e["pre_activation"] == pytest.approx(float(out[ch, r, c]), abs=1e-6)
                assert e["value"] == pytest.approx(float(acts[f"conv{i}_act"][0, ch, r, c]), abs=1e-6)
                checked += 1
                pool = acts[f"conv{i}_pool"][0]
                if r // 2 < pool.shape[1] and c // 2 < pool.shape[2]:
                    p = explain(model, x, f"conv{i}_pool", ch, (r // 2, c // 2))
                    assert p["value"] == pytest.approx(float(pool[ch, r // 2, c // 2]), abs=1e-6)
    assert checked >= 12 * len(NETS[name].conv_channels) - 12


def test_a_window_over_the_padding_reads_zeros_there():
    model = LeNet(ModelConfig()).eval()
    x = torch.rand(1, 1, 28, 28) + 0.5  # no zero pixel inside the image
    e = explain(model, x, "conv1", 2, (0, 0))
    assert e["padding"] == 2 and e["window_origin"] == [-2, -2]
    window, inside = torch.tensor(e["window"])[0], torch.tensor(e["inside"])
    assert (window[~inside] == 0).all() and (window[inside] > 0).all() and inside.sum() == 9


def test_dense_units_and_the_output_list_their_largest_contributions():
    torch.manual_seed(0)
    model = LeNet(ModelConfig()).eval()
    x = torch.rand(1, 1, 28, 28)
    acts = activations(model, x)
    for layer, unit in (("fc1", 7), ("fc2", 0), ("output", 3)):
        e = explain(model, x, layer, unit, top=5)
        own = acts[layer if layer == "output" else f"{layer}_act"][0, unit]
        assert e["value"] == pytest.approx(float(own), abs=1e-6)
        sizes = [abs(c["product"]) for c in e["largest"]]
        assert len(sizes) == 5 and sizes == sorted(sizes, reverse=True)
    first = explain(model, x, "fc1", 0)["largest"][0]
    ch, r, c = first["map_position"]  # fc1 reads the flattened conv2_pool maps
    assert first["input"] == pytest.approx(float(acts["conv2_pool"][0, ch, r, c]), abs=1e-7)


def test_what_the_model_does_not_have_is_refused_in_words():
    model = LeNet(ModelConfig())
    x = torch.rand(1, 1, 28, 28)
    assert layers(model) == ["conv1", "conv1_pool", "conv2", "conv2_pool", "fc1", "fc2", "output"]
    for args, said in ((("conv3", 0, (0, 0)), "not one of conv1"), (("conv2", 16, (0, 0)), "0 to 15"),
                       (("conv2", 0, (10, 0)), "10x10"), (("conv1", 0, None), "ROW,COL")):
        with pytest.raises(ExplainError, match=said):
            explain(model, x, *args)


def test_lenet_explain_prints_the_computation_and_its_json(tmp_path, capsys):
    synthetic_idx(tmp_path / "data" / "mnist", n_train=64, n_test=16)
    run = Run.create(TrainConfig(dataset="mnist", epochs=1, batch_size=32, device="cpu"), tmp_path / "runs")
    assert train_run(run.path, data_dir=tmp_path / "data", record=False) in ("finished", "diverged")
    capsys.readouterr()
    args = ["explain", str(run.path), "--image", "3", "--layer", "conv2", "--channel", "5", "--at", "4,6",
            "--data-dir", str(tmp_path / "data")]
    assert cli.main([*args, "--json"]) == 0
    out = capsys.readouterr().out
    e = json.loads(out.strip().splitlines()[-1])
    assert {"window", "kernel", "bias", "sum", "pre_activation", "value"} <= set(e)
    assert len(e["window"]) == 6 and len(e["window"][0]) == 5
    assert "input channel 5: window | kernel | products" in out and f"value {e['value']:.6f}" in out
    model = run.load_checkpoint().model.eval()
    from lenet_core.data import load_dataset
    from lenet_core.train import as_input
    data = load_dataset("mnist", tmp_path / "data", download=False)
    own = activations(model, as_input(data.test_images[3:4]))["conv2_act"][0, 5, 4, 6]
    assert e["value"] == pytest.approx(float(own), abs=1e-6)
    for bad, said in ((["--at", "12,0"], "10x10"), (["--image", "99"], "0 to 15"), (["--at", "a"], "ROW,COL")):
        assert cli.main([*args, *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and said in err[0]
