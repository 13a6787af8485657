"""Attribution maps against networks whose answer is known: LeNet-5s with hand-set weights
whose class scores read one 4x4 block of the image and nothing else."""
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lenet_core import attribution
from lenet_core.attribution import METHODS, OPTIONS, Attribution, attribute, methods_for
from lenet_core.model import LeNet, ModelConfig

# Captum warns on every guided backpropagation that it hooks the ReLUs (of our private copy).
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")

# With the weights of `reader`, feature (r, c) of the last pooled map (5x5) is the mean of
# the input block rows 4r+4..4r+7, cols 4c+4..4c+7 (two one-hot 5x5 kernels and two 2x2
# average pools). Blocks away from the middle row and column, so that a transposed map fails.
A = (slice(8, 12), slice(16, 20))   # feature (1, 3)
B = (slice(16, 20), slice(4, 8))    # feature (3, 0)
D = (slice(20, 24), slice(20, 24))  # feature (4, 4): in the feature maps, read by no class
FEATURES = {"A": 1 * 5 + 3, "B": 3 * 5 + 0}
K, J = 7, 2  # the classes the tests ask about
S = 4.0      # weight on each link of a path: sigmoid paths change their score by about 1


def reader(activation="sigmoid", reads=None) -> LeNet:
    """The chapter's LeNet-5 (or with another activation) whose class scores depend only on
    the blocks in `reads` ({class: [(block name, sign)]}); every other weight and bias is 0."""
    reads = reads or {K: [("A", +1)]}
    model = LeNet(ModelConfig(activation=activation))
    net = model.net
    act0 = float(net.conv1_act(torch.zeros(())))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # Each layer's input is act(0) where there is no ink; its bias takes that away, so each
        # pre-activation is exactly 0 there and a sigmoid works in its steep middle.
        net.conv1.weight[0, 0, 2, 2] = S          # conv1 channel 0 = S * the image (padding 2)
        net.conv2.weight[0, 0, 2, 2] = S          # conv2 channel 0 = S * pooled channel 0, shifted
        net.conv2.bias[0] = -S * act0
        blocks = sorted({name for links in reads.values() for name, _ in links})
        for unit, name in enumerate(blocks):      # one fc1 -> fc2 path per block
            net.fc1.weight[unit, FEATURES[name]] = S
            net.fc1.bias[unit] = -S * act0
            net.fc2.weight[unit, unit] = S
            net.fc2.bias[unit] = -S * act0
        for cls, links in reads.items():
            for name, sign in links:
                net.output.weight[cls, blocks.index(name)] = sign * S
    return model.eval()


def image(*blocks, value=1.0) -> np.ndarray:
    x = np.zeros((28, 28), np.float32)
    for rows, cols in blocks:
        x[rows, cols] = value
    return x


def mask(block, grow=0) -> np.ndarray:
    rows, cols = block
    m = np.zeros((28, 28), bool)
    m[max(rows.start - grow, 0):rows.stop + grow, max(cols.start - grow, 0):cols.stop + grow] = True
    return m


def peak(heat: np.ndarray) -> tuple[int, int]:
    return np.unravel_index(np.argmax(heat), heat.shape)


def score(model, x, cls) -> float:
    with torch.no_grad():
        return float(model(torch.as_tensor(x).reshape(1, 1, 28, 28))[0, cls])


# --- Each method against a known answer ---------------------------------------------------------

@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_saliency_is_the_gradient_of_the_block_the_class_reads(activation):
    model = reader(activation)
    a = attribute(model, image(A, D), K, "saliency")
    assert not a.signed and (a.map >= 0).all()
    assert mask(A)[peak(a.map)]
    assert (a.map[mask(A)] > 0).all()
    assert (a.map[~mask(A)] == 0).all()  # the ink in D included: the class never reads it


def test_integrated_gradients_add_up_to_the_score_change_from_black():
    model = reader("sigmoid", {K: [("A", +1)], J: [("A", -1)]})
    x = image(A, D)
    for cls, sign in ((K, +1), (J, -1)):
        a = attribute(model, x, cls, "integrated_gradients")
        assert a.signed
        assert (sign * a.map[mask(A)] > 0).all()  # positive = evidence for the class
        assert (a.map[~mask(A)] == 0).all()
        change = score(model, x, cls) - score(model, np.zeros_like(x), cls)
        assert abs(change) > 0.1
        assert a.map.sum() == pytest.approx(change, rel=0.01)


def test_integrated_gradients_steps_are_an_option():
    model = reader("sigmoid")
    x = image(A)
    change = score(model, x, K) - score(model, np.zeros_like(x), K)
    two = attribute(model, x, K, "integrated_gradients", n_steps=2).map.sum()
    many = attribute(model, x, K, "integrated_gradients", n_steps=64).map.sum()
    assert two != many
    assert many == pytest.approx(change, rel=0.01)


def test_occlusion_points_at_the_block_and_nowhere_far_from_it():
    model = reader("sigmoid", {K: [("A", +1)], J: [("A", -1)]})
    x = image(A, D)
    window = OPTIONS["occlusion"]["window"]
    for cls, sign in ((K, +1), (J, -1)):
        a = attribute(model, x, cls, "occlusion")
        assert a.signed
        assert mask(A)[peak(sign * a.map)]
        assert (sign * a.map[mask(A)] > 0).all()
        # Only windows that overlap A change the score; a pixel further than a window from A
        # is covered by none of them.
        assert (a.map[~mask(A, grow=window - 1)] == 0).all()


def test_occlusion_of_a_corner_pixel_is_the_score_drop_of_blacking_out_its_window():
    torch.manual_seed(0)
    model = LeNet(ModelConfig()).eval()
    x = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    for window in (3, 4):
        a = attribute(model, x, K, "occlusion", window=window, stride=window)
        covered = x.copy()
        covered[:window, :window] = 0  # the only window over pixel (0, 0), with stride = window
        drop = score(model, x, K) - score(model, covered, K)
        assert drop != 0
        assert a.map[0, 0] == pytest.approx(drop, rel=1e-4, abs=1e-6)


def test_gradcam_looks_at_the_block_the_class_reads():
    model = reader("sigmoid", {K: [("A", +1)], J: [("A", -1)]})
    a = attribute(model, image(A), K, "gradcam")
    assert not a.signed and (a.map >= 0).all()
    # conv2's map is 10x10, so the picture is coarse: its peak is in A, its centre of mass
    # within a pixel of A's centre (a stretched map misses by two), and nothing shows more
    # than a cell (2 pixels) beyond the cells that see A.
    assert a.map.max() > 0
    assert mask(A)[peak(a.map)]
    rows, cols = np.indices(a.map.shape) + 0.5
    centre = np.array([(rows * a.map).sum(), (cols * a.map).sum()]) / a.map.sum()
    assert np.abs(centre - (10, 18)).max() < 1
    assert (a.map[~mask(A, grow=6)] == 0).all()
    # A class that the same feature counts against gets no positive evidence anywhere.
    assert (attribute(model, image(A), J, "gradcam").map == 0).all()


def _gradcam_by_hand(model, x, cls, layer, scale, offset):
    """Grad-CAM from its definition, ReLU(sum over channels of mean gradient * activation),
    with cell i drawn as a tent of one cell's width centred on input coordinate scale*i + offset."""
    saved = {}
    hook = getattr(model.net, layer).register_forward_hook(lambda m, i, out: saved.setdefault("a", out))
    try:
        out = model.net(torch.as_tensor(x).reshape(1, 1, 28, 28))
    finally:
        hook.remove()
    act = saved["a"]
    grad, = torch.autograd.grad(out[0, cls], act)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1))[0].detach().numpy()
    cell_of_pixel = (np.arange(28) + 0.5 - offset) / scale
    tent = np.maximum(0, 1 - np.abs(cell_of_pixel[:, None] - np.arange(cam.shape[0])[None, :]))
    return tent @ cam @ tent.T


# Receptive-field centres of the last conv's cells, worked out by hand: one conv (5x5,
# padding 2) sees pixel i itself; LeNet-5's conv2 cell i looks at pooled cells i..i+4, whose
# middle one (i+2) covers pixels 2i+4 and 2i+5; with three "same" convs and two pools, cell i
# covers pixels 4i..4i+3.
@pytest.mark.parametrize("config, scale, offset", [
    (ModelConfig(conv_channels=(4,), activation="relu"), 1, 0.5),
    (ModelConfig(), 2, 5),
    (ModelConfig(conv_channels=(4, 6, 8), padding="same", activation="tanh"), 4, 2),
])
def test_gradcam_uses_the_last_conv_layer_and_its_receptive_fields(config, scale, offset):
    torch.manual_seed(1)
    model = LeNet(config).eval()
    x = np.random.default_rng(1).random((28, 28), dtype=np.float32)
    last = f"conv{len(config.conv_channels)}"
    maps = {cls: attribute(model, x, cls, "gradcam").map for cls in range(3)}
    assert any(m.max() > 0 for m in maps.values())
    for cls, heat in maps.items():
        np.testing.assert_allclose(heat, _gradcam_by_hand(model, x, cls, last, scale, offset), rtol=1e-4, atol=1e-7)


def test_guided_backprop_drops_the_evidence_against_that_saliency_keeps():
    # Class K: + block A, - block B. Saliency (plain gradient) sees both blocks; guided
    # backpropagation stops the negative gradient at fc2's ReLU, so B disappears.
    model = reader("relu", {K: [("A", +1), ("B", -1)]})
    x = image(A, B, D)
    plain = attribute(model, x, K, "saliency").map
    guided = attribute(model, x, K, "guided_backprop")
    assert (plain[mask(A)] > 0).all() and (plain[mask(B)] > 0).all()
    assert guided.signed
    assert (guided.map[mask(A)] > 0).all()
    assert (guided.map[~mask(A)] == 0).all()


def test_guided_gradcam_is_guided_backprop_inside_gradcams_region():
    # B counts against K at half weight, so Grad-CAM's weight for conv2's channel 0 stays
    # positive. Grad-CAM weighs whole channels: it lights up B and D as well as A (all ink in
    # channel 0); the guided gradient is 0 outside A (B's is negative at fc2's ReLU, D is
    # unread), and so is the product.
    model = reader("relu", {K: [("A", +1), ("B", -0.5)]})
    x = image(A, B, D)
    a = attribute(model, x, K, "guided_gradcam")
    guided = attribute(model, x, K, "guided_backprop").map
    cam = attribute(model, x, K, "gradcam").map
    assert cam[mask(B)].max() > 0 and cam[mask(D)].max() > 0
    assert a.signed
    assert mask(A)[peak(a.map)]
    assert (a.map[mask(A)] > 0).all()
    assert (a.map[~mask(A)] == 0).all()
    # The guided gradient times Grad-CAM, placed as `gradcam` places it.
    np.testing.assert_allclose(a.map, guided * cam, rtol=1e-5, atol=1e-8)


# --- Which methods, and what is refused -----------------------------------------------------------

def test_guided_methods_are_offered_for_relu_models_only():
    relu = methods_for(LeNet(ModelConfig(activation="relu")))
    assert relu == list(METHODS)
    assert {"guided_backprop", "guided_gradcam"} <= set(relu)
    for activation in ("sigmoid", "tanh"):
        offered = methods_for(LeNet(ModelConfig(activation=activation)))
        assert offered == ["saliency", "integrated_gradients", "occlusion", "gradcam"]
    for name, (label, explanation) in METHODS.items():
        assert label and explanation.endswith(".") and name in attribution.SIGNED


@pytest.mark.parametrize("method", ["guided_backprop", "guided_gradcam"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_guided_method_on_a_non_relu_model_is_refused(method, activation):
    with pytest.raises(ValueError, match="ReLU"):
        attribute(LeNet(ModelConfig(activation=activation)).eval(), image(A), K, method)


@pytest.mark.parametrize("call, message", [
    (dict(method="lime"), "unknown attribution method 'lime'"),
    (dict(method="occlusion", n_steps=8), "no option n_steps"),
    (dict(method="saliency", abs=False), r"options: none"),
    (dict(method="integrated_gradients", n_steps=1), "n_steps"),
    (dict(method="occlusion", window=4, stride=5), "stride"),
    (dict(method="saliency", target=10), "target must be a class index from 0 to 9"),
    (dict(method="saliency", target=-1), "target"),
    (dict(method="saliency", x=np.zeros((28, 27))), r"image must be"),
    (dict(method="saliency", x=torch.zeros(2, 1, 28, 28)), r"image must be"),
])
def test_bad_requests_raise_value_error(call, message):
    call = {"target": K, "x": image(A), **call}
    with pytest.raises(ValueError, match=message):
        attribute(reader(), call.pop("x"), call.pop("target"), call.pop("method"), **call)


# --- Shapes, inputs, and the caller's model left as it was ----------------------------------------

@pytest.mark.parametrize("method", list(METHODS))
def test_shape_dtype_and_fields(method):
    model = reader("relu")
    a = attribute(model, image(A), K, method)
    assert isinstance(a, Attribution)
    assert a.map.shape == (28, 28) and a.map.dtype == np.float32
    assert (a.method, a.target, a.signed) == (method, K, attribution.SIGNED[method])
    assert 0 < a.seconds < 10


def test_image_forms_give_the_same_map():
    model = reader("sigmoid")
    x = image(A, D, value=0.8)
    forms = [x, x.astype(np.float64), torch.from_numpy(x), torch.from_numpy(x).reshape(1, 1, 28, 28)]
    maps = [attribute(model, f, K, "integrated_gradients").map for f in forms]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-6, atol=1e-9)
    leaf = forms[3]
    attribute(model, leaf, K, "saliency")
    assert not leaf.requires_grad and leaf.grad is None


@pytest.mark.parametrize("method", list(METHODS))
def test_frozen_eval_model_works_and_stays_as_it_was(method):
    # How the app serves a model: eval mode, requires_grad False, maybe called inside inference mode.
    model = reader("relu")
    model.requires_grad_(False)
    before = {n: p.clone() for n, p in model.named_parameters()}
    with torch.inference_mode():
        x = torch.from_numpy(image(A))  # an inference-mode tensor
        a = attribute(model, x, K, method)
    assert np.abs(a.map).max() > 0
    assert not model.training and not any(m.training for m in model.modules())
    for name, p in model.named_parameters():
        assert not p.requires_grad and p.grad is None
        assert torch.equal(p, before[name])


@pytest.mark.parametrize("method", list(METHODS))
def test_training_model_keeps_its_mode_and_flags(method):
    model = reader("relu").train()
    a = attribute(model, image(A), K, method)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    # ... and the map is the eval-mode network's (LeNet has no dropout or batch norm, so the
    # same as from the eval model).
    np.testing.assert_allclose(a.map, attribute(model.eval(), image(A), K, method).map, rtol=1e-6, atol=1e-9)


def test_the_callers_model_is_never_hooked(monkeypatch):
    """Inference on the shared model in another thread, while guided backpropagation has its
    ReLU hooks in place, must still work: the hooks must be on a copy."""
    model = reader("relu")
    seen = []

    class InferenceMidway(attribution.GuidedBackprop):
        def __init__(self, net):
            super().__init__(net)
            gradients = self.gradient_func

            def with_inference(*args, **kwargs):  # runs after Captum has hooked the ReLUs
                with torch.inference_mode():
                    seen.append(model(torch.from_numpy(image(A)).reshape(1, 1, 28, 28)))
                return gradients(*args, **kwargs)
            self.gradient_func = with_inference

    monkeypatch.setattr(attribution, "GuidedBackprop", InferenceMidway)
    a = attribute(model, image(A), K, "guided_backprop")
    assert len(seen) == 1 and (a.map[mask(A)] > 0).all()
    with torch.inference_mode():  # and nothing is left behind afterwards
        model(torch.zeros(1, 1, 28, 28))


def test_threads_on_different_models_get_their_own_answers():
    models = {"A": reader("relu", {K: [("A", +1)]}), "B": reader("relu", {K: [("B", +1)]})}
    x = image(A, B)
    alone = {name: attribute(m, x, K, "guided_gradcam").map for name, m in models.items()}
    results, errors = {}, []

    def run(name):
        try:
            results[name] = [attribute(models[name], x, K, "guided_gradcam").map for _ in range(5)]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(name,)) for name in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, maps in results.items():
        for m in maps:
            np.testing.assert_array_equal(m, alone[name])
    assert mask(A)[peak(alone["A"])] and mask(B)[peak(alone["B"])]
