"""Saturation, dead units and gradient norms against cases worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from lenet_core.diagnostics import SATURATION_Z, gradient_norms, layer_health
from lenet_core.model import LeNet, ModelConfig
from lenet_core.train import as_input

ACT_LAYERS = ["conv1_act", "conv2_act", "fc1_act", "fc2_act"]


def model_of(activation: str) -> LeNet:
    torch.manual_seed(0)
    return LeNet(ModelConfig(activation=activation))


def centre_tap_only(model: LeNet, tap: float, biases: list[float]) -> None:
    """conv1 computes z[c, y, x] = tap * pixel[y, x] + biases[c] (5x5 kernel, padded by 2)."""
    with torch.no_grad():
        model.net.conv1.weight.zero_()
        model.net.conv1.weight[:, 0, 2, 2] = tap
        model.net.conv1.bias.copy_(torch.tensor(biases))


def images_with(*pixel_sets) -> torch.Tensor:
    """uint8 images, black but for the given {(y, x): value} pixels."""
    images = torch.zeros(len(pixel_sets), 28, 28, dtype=torch.uint8)
    for img, pixels in zip(images, pixel_sets):
        for (y, x), v in pixels.items():
            img[y, x] = v
    return images


def test_flat_tail_thresholds_are_where_the_derivative_falls_under_10_percent():
    # sigmoid'(z) = s(1-s), max 1/4 at z = 0; tanh'(z) = 1 - tanh^2, max 1 at z = 0.
    s = torch.sigmoid(torch.tensor(SATURATION_Z["sigmoid"], dtype=torch.float64))
    assert float(s * (1 - s)) == pytest.approx(0.1 * 0.25)
    t = torch.tanh(torch.tensor(SATURATION_Z["tanh"], dtype=torch.float64))
    assert float(1 - t * t) == pytest.approx(0.1)
    assert SATURATION_Z["sigmoid"] == pytest.approx(3.637, abs=1e-3)
    assert SATURATION_Z["tanh"] == pytest.approx(1.818, abs=1e-3)


def test_reports_every_activation_layer_with_the_same_keys():
    for activation in ("sigmoid", "tanh", "relu"):
        health = layer_health(model_of(activation), torch.rand(3, 1, 28, 28))
        assert list(health) == ACT_LAYERS
        for row in health.values():
            assert set(row) == {"activation", "saturated", "dead", "mean", "spread", "slope"}
            assert row["activation"] == activation
            assert (row["saturated"] is None) == (activation == "relu")
            assert (row["dead"] is None) == (activation != "relu")


def test_sigmoid_saturation_of_all_of_none_and_of_a_hand_counted_share():
    model = model_of("sigmoid")
    images = images_with({(3, 3): 255}, {(20, 9): 40})

    centre_tap_only(model, 0.0, [10.0] * 6)          # z = 10 everywhere: upper tail
    assert layer_health(model, images)["conv1_act"]["saturated"] == 1.0

    centre_tap_only(model, 0.0, [0.0] * 6)           # z = 0: the steepest point
    row = layer_health(model, images)["conv1_act"]
    assert row["saturated"] == 0.0 and row["spread"] == 0.0   # every image gives the same output
    assert row["mean"] == pytest.approx(0.5) and row["slope"] == pytest.approx(0.25)

    # Channels 0-4: z = 10 * pixel, so a pixel of 255 gives z = 10 (flat), 102 gives 4.0 (flat,
    # just past 3.64), 77 gives 3.02 (not flat), 0 gives 0. Channel 5: z = 10 * pixel - 10, flat
    # everywhere but at pixels of 255 (z = 0).
    a = {(y, x): 255 for y in range(5) for x in range(6)}          # 30 flat pixels
    a.update({(27, x): 77 for x in range(10)})                     # 10 pixels not flat
    b = {(y, 14): 102 for y in range(12)}                          # 12 flat pixels
    centre_tap_only(model, 10.0, [0.0] * 5 + [-10.0])
    share = layer_health(model, images_with(a, b))["conv1_act"]["saturated"]
    # channels 0-4: 30 + 12 flat pairs of 2 x 784 each; channel 5: all but image a's 30 of 255.
    expected = (5 * (30 + 12) + (2 * 784 - 30)) / (6 * 2 * 784)
    assert share == pytest.approx(expected, abs=1e-6)   # one pair is 1/9408 of the share


def test_tanh_saturation_at_the_boundary_and_in_a_dense_layer():
    model = model_of("tanh")
    images = torch.rand(4, 1, 28, 28)
    centre_tap_only(model, 0.0, [1.80, -1.80, 1.85, -1.85, 0.0, 5.0])   # 1.818 is the edge
    row = layer_health(model, images)["conv1_act"]
    assert row["saturated"] == pytest.approx(3 / 6)
    assert row["mean"] == pytest.approx(math.tanh(5.0) / 6, abs=1e-6)   # the +-pairs cancel

    with torch.no_grad():                                               # fc1 has 120 units
        model.net.fc1.weight.zero_()
        model.net.fc1.bias.copy_(torch.tensor([2.0] * 30 + [-2.0] * 10 + [1.7] * 20 + [0.0] * 60))
    assert layer_health(model, images)["fc1_act"]["saturated"] == pytest.approx(40 / 120)


def test_relu_dead_units_need_zero_for_every_image():
    model = model_of("relu")
    images = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        model.net.conv1.bias.fill_(-100.0)   # xavier weights over [0, 1] pixels cannot beat -100
    assert layer_health(model, images)["conv1_act"]["dead"] == 1.0

    # z = pixel - 0.5: a unit lives where some image is brighter than half. Channel 5 (bias 0.5)
    # lives everywhere. Image a lights 3 x 4 pixels, image b 4 x 4 of which 2 x 2 overlap a's.
    a = {(y, x): 255 for y in range(3) for x in range(4)}
    b = {(y, x): 255 for y in range(1, 5) for x in range(2, 6)}
    centre_tap_only(model, 1.0, [-0.5] * 5 + [0.5])
    row = layer_health(model, images_with(a, b))["conv1_act"]
    lit = 12 + 16 - 4                                       # pixels lit in a or b
    assert row["dead"] == pytest.approx(5 * (784 - lit) / (6 * 784))
    assert row["slope"] == pytest.approx((5 * (12 + 16) + 2 * 784) / (6 * 2 * 784))   # share of z > 0
    # Spread: a unit lit in one image only has outputs (0.5, 0) in channels 0-4 and (1.5, 0.5) in
    # channel 5, a standard deviation of 0.25 and 0.5; 8 + 12 such units per channel, the rest 0.
    assert row["spread"] == pytest.approx((5 * 20 * 0.25 + 20 * 0.5) / (6 * 784))


def test_does_not_touch_the_model():
    model = model_of("sigmoid")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    for training in (True, False):
        model.train(training)
        layer_health(model, torch.rand(2, 1, 28, 28))
        assert model.training is training
    assert torch.get_num_threads() == threads   # one_thread() puts the count back
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_uint8_images_are_read_as_the_trainer_reads_them():
    model = model_of("tanh")
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert layer_health(model, images) == layer_health(model, as_input(images))


def test_gradient_norms_match_each_weight_gradient():
    model = model_of("sigmoid")
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    norms = gradient_norms(model)
    assert list(norms) == ["conv1", "conv2", "fc1", "fc2", "output"]
    for name, value in norms.items():
        grad = getattr(model.net, name).weight.grad
        assert value == pytest.approx(float(torch.linalg.vector_norm(grad)), rel=1e-6)
        assert value > 0


def test_gradient_norms_leave_out_layers_without_a_gradient():
    model = model_of("relu")
    assert gradient_norms(model) == {}
    model.net.conv1.weight.requires_grad_(False)
    F.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    assert list(gradient_norms(model)) == ["conv2", "fc1", "fc2", "output"]
