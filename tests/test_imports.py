"""Networks trained elsewhere come in from their plain state dicts, and compute what they computed there;
files that are not such a network are refused in one line, with nothing run and nothing kept."""
import collections
import io
import json
import os
import pickle
import re
import zipfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_core.cli import main
from lenet_core.data import load_dataset
from lenet_core.imports import Architecture, build, check, read_file
from lenet_core.runs import Run, list_runs
from lenet_core.train import as_input
from synthetic import synthetic_idx

ACT = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
POOL = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class ChapterLeNet(nn.Module):
    """d2l's LeNet: its layers in self.net (keys net.0, net.3, net.7, net.9, net.11)."""

    def __init__(self, act="sigmoid", pool="avg", conv=(6, 16), dense=(120, 84)):
        super().__init__()
        a, p = ACT[act], POOL[pool]
        self.net = nn.Sequential(nn.Conv2d(1, conv[0], 5, padding=2), a(), p(2, 2), nn.Conv2d(conv[0], conv[1], 5),
                                 a(), p(2, 2), nn.Flatten(), nn.Linear(conv[1] * 25, dense[0]), a(),
                                 nn.Linear(dense[0], dense[1]), a(), nn.Linear(dense[1], 10))

    def forward(self, x):
        return self.net(x)


class TutorialNet(nn.Module):
    """PyTorch's tutorial LeNet: named layers, ReLU and max pooling in forward, a 32x32 input."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ThreeConv(nn.Module):
    """Any names (nested Sequentials), three 3x3 convs each padded, tanh and average pooling."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                                      nn.Conv2d(12, 16, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 3 * 3, 32), nn.Tanh(),
                                        nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def sequential(act="relu", pool="max"):
    a, p = ACT[act], POOL[pool]
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), a(), p(2), nn.Conv2d(6, 16, 5), a(), p(2), nn.Flatten(),
                         nn.Linear(400, 120), a(), nn.Linear(120, 84), a(), nn.Linear(84, 10))


def save(obj, path):
    torch.save(obj, path)
    return str(path)


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads on a machine shared with other jobs ran these small networks 3-5x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(make):
    torch.manual_seed(0)
    return make().eval()


# (what to save, the source, how the source sees a 28x28 image, activation, pooling, what the file says)
LAYOUTS = {
    "chapter, sigmoid/avg": (lambda m: m.state_dict(), lambda: ChapterLeNet(), lambda x: x, "sigmoid", "avg",
                             ((6, 16), (120, 84), "chapter", 5)),
    "chapter, relu/max": (lambda m: m.state_dict(), lambda: ChapterLeNet("relu", "max"), lambda x: x, "relu", "max",
                          ((6, 16), (120, 84), "chapter", 5)),
    "sequential, relu/max": (lambda m: m.state_dict(), sequential, lambda x: x, "relu", "max",
                             ((6, 16), (120, 84), "chapter", 5)),
    "sequential, sigmoid/avg": (lambda m: m.state_dict(), lambda: sequential("sigmoid", "avg"), lambda x: x,
                                "sigmoid", "avg", ((6, 16), (120, 84), "chapter", 5)),
    "tutorial general checkpoint": (lambda m: {"epoch": 3, "model_state_dict": m.state_dict(), "loss": 0.31,
                                               "optimizer_state_dict": torch.optim.SGD(m.parameters(), 0.1,
                                                                                       momentum=0.9).state_dict()},
                                    TutorialNet, lambda x: F.pad(x, (2, 2, 2, 2)), "relu", "max",
                                    ((6, 16), (120, 84), "chapter", 5)),
    "three convs under state_dict": (lambda m: {"state_dict": m.state_dict(), "hyper": {"lr": 0.1}}, ThreeConv,
                                     lambda x: x, "tanh", "avg", ((8, 12, 16), (32,), "same", 3)),
    "chapter under model": (lambda m: {"model": m.state_dict()}, lambda: ChapterLeNet(conv=(4, 8), dense=(30, 20)),
                            lambda x: x, "sigmoid", "avg", ((4, 8), (30, 20), "chapter", 5)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_computes_what_its_source_computes(layout, tmp_path):
    to_save, make, view, act, pool, (conv, dense, padding, kernel) = LAYOUTS[layout]
    source = seeded(make)
    arch = read_file(save(to_save(source), tmp_path / "w.params"))
    assert isinstance(arch, Architecture)
    config = arch.model_config(act, pool)
    assert (config.conv_channels, config.dense_widths, config.padding, config.kernel_size) == (conv, dense,
                                                                                               padding, kernel)
    model = build(arch, act, pool)
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        assert (model(x) - source(view(x))).abs().max() <= 1e-6
        # and the other activation/pooling does not: the comparison can fail
        other = build(arch, "tanh" if act != "tanh" else "relu", "max" if pool == "avg" else "avg")
        assert (other(x) - source(view(x))).abs().max() > 1e-3


def test_input_scaling_is_folded_into_the_first_conv(tmp_path):
    source = seeded(TutorialNet)  # the tutorial's transforms: Pad(2), ToTensor(), Normalize((0.5,), (0.5,))
    arch = read_file(save(source.state_dict(), tmp_path / "t.pt"))
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        expected = source((F.pad(x, (2, 2, 2, 2)) - 0.5) / 0.5)
        # float32 rounding of the folded weights: not bitwise equal, far below what changes a prediction
        assert (build(arch, "relu", "max", "symmetric")(x) - expected).abs().max() <= 1e-5
        assert (build(arch, "relu", "max", "unit")(x) - expected).abs().max() > 1e-2
        mean, std = 0.1307, 0.3081
        expected = source((F.pad(x, (2, 2, 2, 2)) - mean) / std)
        assert (build(arch, "relu", "max", "standardized", "mnist")(x) - expected).abs().max() <= 1e-5


def test_cli_import_makes_a_run_that_every_page_can_open(tmp_path, tiny_data_dir, capsys, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    source = seeded(lambda: ChapterLeNet("relu", "max"))
    path = save(source.state_dict(), tmp_path / "lenet.params")
    rc = main(["import", path, "--dataset", "mnist", "--activation", "relu", "--pool", "max",
               "--input-scaling", "unit", "--data-dir", str(tiny_data_dir), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    run = Run(result["run"])
    info = run.info()
    assert info.status == "finished" and info.name == "lenet.params (imported)"
    assert info.origin["imported"] == "lenet.params" and info.origin["guessed"] == []
    assert "net.0" in out and "net.11" in out  # the architecture it read, by the file's own names
    data = load_dataset("mnist", tiny_data_dir)
    with torch.no_grad():
        own = (source(as_input(data.test_images)).argmax(1) == data.test_labels).float().mean().item()
        x = torch.rand(8, 1, 28, 28)
        assert (run.load_checkpoint().model(x) - source(x)).abs().max() <= 1e-6
    assert result["test_accuracy"] == pytest.approx(own, abs=1e-9) == info.test_accuracy


def train_small(act, pool, data, steps=250, seed=0):
    """A small chapter-layout network trained with plain PyTorch, as a notebook would (a sigmoid one
    sits at chance for about 100 of these steps, then learns)."""
    torch.manual_seed(seed)
    net = ChapterLeNet(act, pool, conv=(4, 8), dense=(24, 16))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = as_input(data.train_images), data.train_labels
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(y), (32,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    synthetic_idx(root / "mnist", n_train=2000, n_test=1000, seed=1)
    return root


@pytest.mark.parametrize("act, pool", [("sigmoid", "avg"), ("relu", "max"), ("tanh", "max")])
def test_the_check_picks_the_activation_and_pooling_a_network_was_trained_with(act, pool, learnable, tmp_path,
                                                                               capsys, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    data = load_dataset("mnist", learnable)
    net = train_small(act, pool, data)
    path = save(net.state_dict(), tmp_path / f"{act}.params")
    assert main(["import", path, "--dataset", "mnist", "--data-dir", str(learnable), "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["activation"], result["pooling"], result["scaling"]) == (act, pool, "unit"), out
    assert result["guessed"] == ["activation", "pooling", "scaling"] and len(result["check"]) == 18
    assert result["check"][0]["accuracy"] > 0.8 and "<- taken" in out
    # the line that says so: what was taken, on how many images, and the runners-up
    best = check(read_file(path), data)
    assert best.summary().startswith(f"{act} + {'average' if pool == 'avg' else 'max'} pooling, [0, 1] input: ")
    assert "on 1,000 test images; next " in best.summary()


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_SENTINEL']}",))


def _declaring(numel: int) -> bytes:
    """A torch file whose one tensor declares `numel` floats on a storage holding four."""
    buf = io.BytesIO()
    torch.save({"net.0.weight": torch.zeros(4)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj == "STORAGE" else None

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, ("STORAGE", 0, (numel,), (1,), False, collections.OrderedDict()))

    with zipfile.ZipFile(out, "w") as z:
        for n in src.namelist():
            data = src.read(n)
            if n.endswith("data.pkl"):
                p = io.BytesIO()
                Pickler(p, protocol=2).dump({"net.0.weight": Tensor()})
                data = p.getvalue()
            z.writestr(n, data)
    return out.getvalue()


def _with_batchnorm():
    m = ChapterLeNet()
    m.net.insert(1, nn.BatchNorm2d(6))
    return m.state_dict()


def _four_convs():
    return nn.Sequential(*[nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=1) for i in range(4)],
                         nn.Linear(4, 10)).state_dict()


def _unpadded():  # a LeNet on 28x28 with no padding at all: 16x4x4 maps, which LeNet Lab cannot build
    sd = ChapterLeNet().state_dict()
    sd["net.7.weight"] = torch.zeros(120, 256)
    return sd


def _not_chaining():
    sd = ChapterLeNet().state_dict()
    sd["net.3.weight"] = torch.zeros(16, 8, 5, 5)
    return sd


def _colour():
    sd = TutorialNet().state_dict()
    sd["conv1.weight"] = torch.zeros(6, 3, 5, 5)
    return sd


def _non_tensor():
    sd = ChapterLeNet().state_dict()
    sd["net.0.weight"] = sd["net.0.weight"].tolist()
    return sd


BAD = {
    "extra layer (batch norm)": (lambda p: save(_with_batchnorm(), p), r"net\.1 is a batch-norm layer"),
    "extra layer (fourth conv)": (lambda p: save(_four_convs(), p), r"has 4 conv layers \(3 is one too many\)"),
    "shapes that do not chain": (lambda p: save(_not_chaining(), p), r"net\.3\.weight takes 8 channels, but net\.0 "
                                                                      r"gives 6: the shapes do not chain"),
    "a flatten size LeNet Lab cannot build": (lambda p: save(_unpadded(), p), r"net\.7\.weight takes 256 inputs, "
                                                                              r"but 16 channels .* give 400"),
    "3 input channels": (lambda p: save(_colour(), p), r"conv1\.weight takes 3-channel images"),
    "non-tensor values": (lambda p: save(_non_tensor(), p), r"net\.0\.weight is a list, not a tensor"),
    "ten classes only": (lambda p: save(nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Linear(6 * 14 * 14, 5))
                                        .state_dict(), p), r"has 5 outputs"),
    "a pickle that would run code": (lambda p: save({"net.0.weight": Exploit()}, p),
                                     r"Python objects \(posix\.system\).*nothing in it was run"),
    "a whole pickled module": (lambda p: save(ChapterLeNet(), p),
                               r"whole pickled model .*nothing in it was run.*weights_only=False\), then "
                               r"torch\.save\(model\.state_dict\(\), 'lenet\.params'\)"),
    "a huge declared tensor (storage)": (lambda p: p.write_bytes(_declaring(10 ** 12)) and str(p), r"damaged"),
    "a huge declared tensor (view)": (lambda p: save({"net.0.weight": torch.zeros(1).expand(10 ** 5, 10 ** 4)}, p),
                                      r"declares 1,000,000,000 values"),
    "not a state dict": (lambda p: save(torch.zeros(3), p), r"holds a Tensor, not a state dict"),
    "no weights anywhere": (lambda p: save({"epoch": 3, "loss": 0.2}, p), r"keys are epoch, loss"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_what_is_not_an_expressible_network_is_refused_in_one_line(case, tmp_path, tiny_data_dir, capsys,
                                                                     monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("LENET_RUNS_DIR", str(runs))
    sentinel = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_SENTINEL", str(sentinel))
    make, why = BAD[case]
    path = make(tmp_path / "bad.params")
    rc = main(["import", path, "--dataset", "mnist", "--data-dir", str(tiny_data_dir), "--json"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert re.search(why, lines[0]), lines[0]
    assert not sentinel.exists() and list_runs(runs) == [] and not runs.exists()


def test_evaluate_points_a_state_dict_to_import(tmp_path, capsys):
    path = save(ChapterLeNet().state_dict(), tmp_path / "lenet.params")
    assert main(["evaluate", path]) == 2
    err = capsys.readouterr().err
    assert f"lenet import {path} --dataset NAME" in err and len(err.strip().splitlines()) == 1
