"""The CPU fast paths against model.py's plain network: same outputs, same gradients, other kernels."""
import ctypes
import platform

import pytest
import torch
from torch import nn

from lenet_core import fastpath as fp
from lenet_core.model import LeNet, ModelConfig


def test_flatten_hands_a_channels_last_input_a_channels_last_gradient():
    """The trainer's channels-last layout survives the flatten on the way back (pooling's
    backward is slow on mixed layouts); values and gradients match nn.Flatten's."""
    torch.manual_seed(0)
    base = torch.randn(4, 16, 5, 5)
    weights = torch.randn(4, 400)
    grads = {}
    for name, fmt in (("ours", torch.channels_last), ("torch", torch.contiguous_format)):
        x = base.clone().contiguous(memory_format=fmt).requires_grad_()
        out = fp.fast_layer(nn.Flatten(), x) if name == "ours" else nn.Flatten()(x)
        assert torch.equal(out, base.flatten(1))
        (out * weights).sum().backward()
        grads[name] = x.grad
    assert grads["ours"].is_contiguous(memory_format=torch.channels_last) and not grads["ours"].is_contiguous()
    assert torch.equal(grads["ours"], grads["torch"])
    x = base.clone().requires_grad_()  # an NCHW input takes nn.Flatten's own path
    fp.fast_layer(nn.Flatten(), x).sum().backward()
    assert x.grad.is_contiguous()


@pytest.mark.parametrize("shape", [(3, 6, 28, 28), (2, 2, 16, 20), (2, 24, 16, 16)])
def test_avg_pool_fast_path_matches_torch_values_and_gradients(shape, monkeypatch):
    """A channels-last training input takes the depthwise-conv pooling and its row-copy
    backward (more than 16 channels: torch's own backward); both agree with nn.AvgPool2d."""
    torch.manual_seed(0)
    base, taken = torch.randn(shape), []
    grad_out = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    original = fp._AvgPool2x2.apply
    monkeypatch.setattr(fp._AvgPool2x2, "apply", lambda t: taken.append(t.shape) or original(t))
    results = {}
    for name, fmt in (("ours", torch.channels_last), ("torch", torch.contiguous_format)):
        x = base.clone().contiguous(memory_format=fmt).requires_grad_()
        pool = nn.AvgPool2d(2, 2)
        out = fp.fast_layer(pool, x) if name == "ours" else pool(x)
        out.backward(grad_out)
        results[name] = (out, x.grad)
    assert taken == [torch.Size(shape)]  # the fast path ran, once, for ours only
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
    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(grad)
    monkeypatch.setattr(fp._AvgPool2x2, "apply", lambda t: pytest.fail("fast path taken"))
    out = fp.fast_layer(nn.AvgPool2d(2, 2), x)
    assert torch.equal(out, torch.nn.functional.avg_pool2d(x, 2, 2))


PHASE_CASES = [ModelConfig(), ModelConfig(kernel_size=3), ModelConfig(kernel_size=7, conv_channels=(12, 16)),
               ModelConfig(activation="relu", conv_channels=(1, 4)), ModelConfig(activation="tanh"),
               ModelConfig(kernel_size=4, image_size=29)]  # an even kernel with an even output


def grads_of(module, net, x):
    net.zero_grad()
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out, [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("config", PHASE_CASES, ids=lambda c: f"{c.activation}-k{c.kernel_size}-{c.conv_channels[0]}")
def test_first_block_by_phases_matches_the_plain_network(config, monkeypatch):
    """Training on the CPU, an average-pooled first block runs as one conv over the image's 2x2
    phases; its outputs and every parameter's gradient agree with model.py's torch.nn layers."""
    torch.manual_seed(0)
    net = LeNet(config).train()
    x = torch.rand(5, 1, config.image_size, config.image_size)
    ref, ref_grads = grads_of(net, net, x)
    taken, original = [], fp.conv_phases
    monkeypatch.setattr(fp, "conv_phases", lambda *a: taken.append(1) or original(*a))
    fast, layout = fp.for_training(net, torch.device("cpu"))
    assert layout == torch.channels_last and isinstance(fast, fp.FastLeNet)
    ours, ours_grads = grads_of(fast, net, x.contiguous(memory_format=layout))
    assert taken == [1]  # the fast module took the phase path
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
    the gradients reaching conv1 agree with model.py's layers."""
    calls, original = [], fp._ConvNCHWInputGrad.apply
    monkeypatch.setattr(fp._ConvNCHWInputGrad, "apply", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(0)
    net = LeNet(config).train()
    x = torch.rand(4, 1, 28, 28)
    grads = {}
    for name, module in (("plain", net), ("ours", fp.for_training(net, torch.device("cpu"))[0])):
        net.zero_grad()
        module(x.contiguous(memory_format=torch.channels_last) if name == "ours" else x).square().sum().backward()
        grads[name] = net.net.conv1.weight.grad.clone()
    assert calls == ([1] if taken else [])
    torch.testing.assert_close(grads["ours"], grads["plain"], rtol=1e-4, atol=1e-5 * grads["plain"].abs().max().item())


def test_conv2_nchw_input_gradient_is_channels_last():
    conv = torch.nn.Conv2d(6, 16, 5).to(memory_format=torch.channels_last)
    x = torch.randn(3, 6, 14, 14).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = fp._ConvNCHWInputGrad.apply(x, conv.weight, conv.bias, conv.padding)
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


@pytest.mark.parametrize("config, grad", [
    (ModelConfig(), False),                                  # no_grad
    (ModelConfig(pooling="max"), True),                      # max pooling
    (ModelConfig(conv_channels=(16, 16)), True),             # many filters: the direct conv is faster
    (ModelConfig(kernel_size=4), True),                      # odd output size (25)
])
def test_first_block_by_phases_only_where_it_applies(config, grad, monkeypatch):
    monkeypatch.setattr(fp, "conv_phases", lambda *a: pytest.fail("phase path taken"))
    net = LeNet(config).train()
    fast = fp.for_training(net, torch.device("cpu"))[0]
    with torch.set_grad_enabled(grad):
        out = fast(torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)


def test_off_the_cpu_the_model_trains_as_it_is():
    net = LeNet()
    module, layout = fp.for_training(net, torch.device("meta"))
    assert module is net and layout == torch.contiguous_format


def test_cpu_training_keeps_freed_tensor_memory_for_reuse():
    """Once the trainer has switched the fast paths on, a freed 20 MB tensor stays in malloc's
    heap for the next one instead of going back to the system, so steps stop faulting in pages."""
    if platform.libc_ver()[0] != "glibc":
        pytest.fail("these machines run glibc; mallopt is glibc's")
    fp.for_training(LeNet(), torch.device("cpu"))
    assert fp.keep_freed_memory() is True

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    big = torch.empty(5 << 20)  # 20 MB: mmap'd by default, from the heap once tuned
    mmapped = libc.mallinfo2().hblkhd
    del big
    info = libc.mallinfo2()
    assert info.hblkhd == mmapped          # it was not an mmap'd block...
    assert info.fordblks >= 20 << 20       # ...and its memory is kept, free, in the heap
