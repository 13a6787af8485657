"""The architecture against the chapter's table, and every setting the UI offers."""
import itertools

import pytest
import torch

from lenet_core.model import (ACTIVATIONS, INITS, PADDINGS, POOLINGS, ConfigError, LeNet, ModelConfig,
                              forward_flops, layer_summary, num_parameters, preset)

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
    assert forward_flops(cfg) > 0


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


def test_flatten_hands_a_channels_last_input_a_channels_last_gradient():
    """The trainer's channels-last layout survives the flatten on the way back (pooling's
    backward is slow on mixed layouts); values and gradients match nn.Flatten's."""
    from lenet_core.model import Flatten

    torch.manual_seed(0)
    base = torch.randn(4, 16, 5, 5)
    weights = torch.randn(4, 400)
    grads = {}
    for name, layer, fmt in (("ours", Flatten(), torch.channels_last), ("torch", torch.nn.Flatten(), torch.contiguous_format)):
        x = base.clone().contiguous(memory_format=fmt).requires_grad_()
        out = layer(x)
        assert torch.equal(out, base.flatten(1))
        (out * weights).sum().backward()
        grads[name] = x.grad
    assert grads["ours"].is_contiguous(memory_format=torch.channels_last) and not grads["ours"].is_contiguous()
    assert torch.equal(grads["ours"], grads["torch"])
    # An NCHW input takes nn.Flatten's own path.
    x = base.clone().requires_grad_()
    Flatten()(x).sum().backward()
    assert x.grad.is_contiguous()


@pytest.mark.parametrize("shape", [(3, 6, 28, 28), (2, 2, 16, 20), (2, 24, 16, 16)])
def test_avg_pool_fast_path_matches_torch_values_and_gradients(shape, monkeypatch):
    """A channels-last training input takes the depthwise-conv pooling and its row-copy
    backward (more than 16 channels: torch's own backward); both agree with nn.AvgPool2d."""
    from lenet_core import model as m

    torch.manual_seed(0)
    base, taken = torch.randn(shape), []
    grad_out = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    original = m._AvgPool2x2.apply
    monkeypatch.setattr(m._AvgPool2x2, "apply", lambda t: taken.append(t.shape) or original(t))
    results = {}
    for name, layer, fmt in (("ours", m.AvgPool2d(2, 2), torch.channels_last),
                             ("torch", torch.nn.AvgPool2d(2, 2), torch.contiguous_format)):
        x = base.clone().contiguous(memory_format=fmt).requires_grad_()
        out = layer(x)
        out.backward(grad_out)
        results[name] = (out, x.grad)
    assert taken == [torch.Size(shape)]  # the fast path ran, once, for our layer only
    (ours, ours_grad), (ref, ref_grad) = results["ours"], results["torch"]
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert ours_grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=0, atol=0)


@pytest.mark.parametrize("shape, fmt, grad", [((2, 6, 15, 15), torch.channels_last, True),   # odd size
                                               ((2, 6, 28, 28), torch.contiguous_format, True),
                                               ((2, 6, 28, 28), torch.channels_last, False),  # inference
                                               ((2, 16, 10, 10), torch.channels_last, True)])  # small map
def test_avg_pool_keeps_torchs_path_where_the_fast_one_does_not_apply(shape, fmt, grad, monkeypatch):
    from lenet_core import model as m

    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(grad)
    monkeypatch.setattr(m._AvgPool2x2, "apply", lambda t: pytest.fail("fast path taken"))
    out = m.AvgPool2d(2, 2)(x)
    assert torch.equal(out, torch.nn.functional.avg_pool2d(x, 2, 2))


PHASE_CASES = [ModelConfig(), ModelConfig(kernel_size=3), ModelConfig(kernel_size=7, conv_channels=(12, 16)),
               ModelConfig(activation="relu", conv_channels=(1, 4)), ModelConfig(activation="tanh"),
               ModelConfig(kernel_size=4, image_size=29)]  # an even kernel with an even output


@pytest.mark.parametrize("config", PHASE_CASES, ids=lambda c: f"{c.activation}-k{c.kernel_size}-{c.conv_channels[0]}")
def test_first_block_by_phases_matches_the_plain_network(config, monkeypatch):
    """Training on the CPU, an average-pooled first block runs as one conv over the image's 2x2
    phases; its outputs and every parameter's gradient agree with torch.nn's own layers."""
    from lenet_core import model as m

    torch.manual_seed(0)
    net = LeNet(config).to(memory_format=torch.channels_last).train()
    plain = m.plain_torch(net)
    assert all(type(layer).__module__.startswith("torch.nn") for layer in plain)
    x = torch.rand(5, 1, config.image_size, config.image_size)
    taken = []
    original = m.conv_phases
    monkeypatch.setattr(m, "conv_phases", lambda *a: taken.append(1) or original(*a))
    results = {}
    for name, module in (("ours", net), ("plain", plain)):
        net.zero_grad()
        out = module(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[name] = out, [p.grad.clone() for p in net.parameters()]
    assert taken == [1]  # our network took the phase path, the plain one did not
    (ours, ours_grads), (ref, ref_grads) = results["ours"], results["plain"]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for g, r in zip(ours_grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * r.abs().max().item())


@pytest.mark.parametrize("config, taken", [
    (ModelConfig(), True), (ModelConfig(kernel_size=7, conv_channels=(12, 16)), True),
    (ModelConfig(kernel_size=3), False),                     # 3x3: the channels-last gradient is faster
    (ModelConfig(padding="same"), False),                    # padded conv2: likewise
    (ModelConfig(conv_channels=(6, 32)), False),             # many filters: no gain
    (ModelConfig(conv_channels=(6,)), False)])               # no conv2 at all
def test_conv2_input_gradient_in_nchw_only_where_it_pays(config, taken, monkeypatch):
    """After the phase block, conv2 of the chapter's shape computes its input's gradient in NCHW;
    the gradients reaching conv1 agree with torch.nn's own layers, and come back channels-last."""
    from lenet_core import model as m

    calls = []
    original = m._ConvNCHWInputGrad.apply
    monkeypatch.setattr(m._ConvNCHWInputGrad, "apply", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(0)
    net = LeNet(config).to(memory_format=torch.channels_last).train()
    x = torch.rand(4, 1, 28, 28)
    grads = {}
    for name, module in (("ours", net), ("plain", m.plain_torch(net))):
        net.zero_grad()
        module(x).square().sum().backward()
        grads[name] = net.net.conv1.weight.grad.clone()
    assert calls == ([1] if taken else [])
    torch.testing.assert_close(grads["ours"], grads["plain"], rtol=1e-4, atol=1e-5 * grads["plain"].abs().max().item())


def test_conv2_nchw_input_gradient_is_channels_last():
    from lenet_core import model as m

    conv = torch.nn.Conv2d(6, 16, 5).to(memory_format=torch.channels_last)
    x = torch.randn(3, 6, 14, 14).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = m._ConvNCHWInputGrad.apply(x, conv.weight, conv.bias, conv.padding)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    ref_x = x.detach().clone().requires_grad_()
    ref_w = conv.weight.detach().clone().requires_grad_()
    ref_b = conv.bias.detach().clone().requires_grad_()
    ref = torch.nn.functional.conv2d(ref_x, ref_w, ref_b)
    ref.backward(grad_out)
    assert torch.equal(out, ref)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, ref_w.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, ref_b.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config, train, grad", [
    (ModelConfig(), False, True),                            # evaluation
    (ModelConfig(), True, False),                            # no_grad
    (ModelConfig(pooling="max"), True, True),                # max pooling
    (ModelConfig(conv_channels=(16, 16)), True, True),       # many filters: the direct conv is faster
    (ModelConfig(kernel_size=4), True, True),                # odd output size (25)
])
def test_first_block_by_phases_only_where_it_applies(config, train, grad, monkeypatch):
    from lenet_core import model as m

    monkeypatch.setattr(m, "conv_phases", lambda *a: pytest.fail("phase path taken"))
    net = LeNet(config).train(train)
    with torch.set_grad_enabled(grad):
        out = net(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
