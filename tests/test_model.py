"""The architecture against the chapter's table, and every setting the UI offers."""
import itertools

import pytest
import torch

from lenet_core.activations import layer_summary
from lenet_core.model import (ACTIVATIONS, INITS, PADDINGS, POOLINGS, ConfigError, LeNet, ModelConfig, num_parameters,
                              preset)

# The chapter's layer_summary((1, 1, 28, 28)) for LeNet-5, with each layer's parameters.
CHAPTER_TABLE = [
    ("Conv2d", (1, 6, 28, 28), 6 * 25 + 6),
    ("Sigmoid", (1, 6, 28, 28), 0),
    ("AvgPool2d", (1, 6, 14, 14), 0),
    ("Conv2d", (1, 16, 10, 10), 16 * 6 * 25 + 16),
    ("Sigmoid", (1, 16, 10, 10), 0),
    ("AvgPool2d", (1, 16, 5, 5), 0),
    ("Flatten", (1, 400), 0),
    ("Linear", (1, 120), 400 * 120 + 120),
    ("Sigmoid", (1, 120), 0),
    ("Linear", (1, 84), 120 * 84 + 84),
    ("Sigmoid", (1, 84), 0),
    ("Linear", (1, 10), 84 * 10 + 10),
]


def test_classic_is_the_chapters_lenet5():
    rows = layer_summary(preset("classic"))
    assert [(r.kind, r.output_shape, r.parameters) for r in rows] == CHAPTER_TABLE
    assert num_parameters(LeNet(preset("classic"))) == 61_706


def test_summary_shapes_match_a_real_forward_pass():
    model = LeNet(ModelConfig(kernel_size=3, conv_channels=(4, 8, 12), padding="same", dense_widths=(32,)))
    x = torch.randn(3, 1, 28, 28)
    for row, (name, layer) in zip(layer_summary(model, batch_size=3), model.net.named_children()):
        x = layer(x)
        assert row.name == name and row.output_shape == tuple(x.shape)


def test_modern_differs_only_in_activation_and_pooling():
    classic, modern = preset("classic"), preset("modern")
    assert (modern.activation, modern.pooling) == ("relu", "max")
    assert modern.replace(activation="sigmoid", pooling="avg") == classic


def test_xavier_init_like_the_book():
    torch.manual_seed(0)
    model = LeNet(preset("classic"))
    w = model.net.fc1.weight
    bound = (6 / (400 + 120)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound  # Xavier-uniform's range, well used
    # Biases keep PyTorch's default uniform(+-1/sqrt(fan_in)), as d2l's init_cnn leaves them.
    assert model.net.fc1.bias.abs().max() <= 1 / 400 ** 0.5


GRID = list(itertools.product(ACTIVATIONS, POOLINGS, (3, 5, 7), ((6,), (6, 16), (6, 16, 32)), ((), (84,), (120, 84, 32)),
                              INITS, PADDINGS))


@pytest.mark.parametrize("act,pool,k,convs,dense,init,padding", GRID[::7] + GRID[-5:])
def test_every_setting_builds_and_runs_or_says_why(act, pool, k, convs, dense, init, padding):
    cfg = ModelConfig(activation=act, pooling=pool, kernel_size=k, conv_channels=convs, dense_widths=dense,
                      init=init, padding=padding)
    try:
        shapes = cfg.validate()
    except ConfigError as e:
        assert e.setting in ("kernel_size", "conv_channels") and "x" in e.message
        return
    out = LeNet(cfg)(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert shapes[-1] == ("output", (10,))
    params, macs = cfg.counts()
    assert macs > 0 and params == num_parameters(LeNet(cfg))


def test_all_grid_settings_either_build_or_raise_config_error():
    for act, pool, k, convs, dense, init, padding in GRID:
        cfg = ModelConfig(activation=act, pooling=pool, kernel_size=k, conv_channels=convs, dense_widths=dense,
                          init=init, padding=padding)
        try:
            cfg.validate()
        except ConfigError:
            continue
        assert LeNet(cfg)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("changes,setting,mentions", [
    (dict(conv_channels=(6, 16, 32)), "conv_channels", "0x0"),
    (dict(kernel_size=29), "kernel_size", "0x0"),
    (dict(kernel_size=15), "kernel_size", "14x14 input"),
    (dict(conv_channels=(6, 0)), "conv_channels", "conv2 has 0 channels"),
    (dict(conv_channels=()), "conv_channels", "1 to 3"),
    (dict(conv_channels=(1, 1, 1, 1)), "conv_channels", "1 to 3"),
    (dict(dense_widths=(120, 0)), "dense_widths", "fc2 has width 0"),
    (dict(activation="softmax"), "activation", "softmax"),
    (dict(pooling="median"), "pooling", "median"),
    (dict(init="zeros"), "init", "zeros"),
    (dict(kernel_size=0), "kernel_size", "at least 1"),
])
def test_impossible_settings_name_the_setting_and_size(changes, setting, mentions):
    with pytest.raises(ConfigError) as info:
        LeNet(ModelConfig(**changes))
    assert info.value.setting == setting
    assert mentions in str(info.value)


def test_config_round_trips_through_a_dict():
    cfg = ModelConfig(activation="tanh", conv_channels=[4, 8], dense_widths=[50])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.5})
    with pytest.raises(ConfigError):
        preset("huge")


def test_model_is_built_from_torch_nn_modules_only():
    """model.py is the chapter's network: every layer is one of torch.nn's own modules."""
    model = LeNet(preset("classic"))
    assert all(type(layer).__module__.startswith("torch.nn") for layer in model.net)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), model.net(x))


def test_counts_match_the_built_network_and_the_chapters_figures():
    params, macs = preset("classic").counts()
    assert params == 61_706
    # conv1 6x28x28x25, conv2 16x10x10x150, dense 400x120 + 120x84 + 84x10
    assert macs == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10


@pytest.mark.parametrize("changes, setting, says", [
    (dict(dense_widths=(2_000_000,)), "dense_widths", "1 to 1,024"),
    (dict(conv_channels=(6, 500)), "conv_channels", "1 to 128"),
    (dict(kernel_size=13), "kernel_size", "1 to 11"),
    (dict(num_classes=11), "num_classes", "11"),
    (dict(image_size=32), "image_size", "32"),
    (dict(in_channels=3), "in_channels", "3"),
    (dict(conv_channels=(128, 128, 128), padding="same", kernel_size=9), "conv_channels", "million multiply-adds"),
    (dict(dense_widths=(1024, 1024, 1024), conv_channels=(128,), kernel_size=3), "dense_widths", "parameters"),
])
def test_settings_outside_the_apps_bounds_are_refused_before_anything_is_built(changes, setting, says, monkeypatch):
    import lenet_core.model as m

    monkeypatch.setattr(m.LeNet, "__init__", lambda *a: pytest.fail("a model was built"))
    with pytest.raises(ConfigError) as info:
        ModelConfig(**changes).validate()
    assert info.value.setting == setting and says in str(info.value)
