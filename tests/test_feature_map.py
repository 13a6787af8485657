"""The test set's map, the map over training (features.pt) and the top images per channel, on
small synthetic data: projections keep known clusters apart, caches are read back (and a damaged
one is ignored), the recording stays under its budget, top images match a brute-force ranking."""
import numpy as np
import pytest
import torch

from lenet_core import feature_frames, feature_map, top_images
from lenet_core.feature_frames import FeatureRecorder, load_features
from lenet_core.model import LeNet, ModelConfig
from lenet_core.runs import Run
from lenet_core.train import TrainConfig, as_input
from lenet_core.worker import train_run

SMALL = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(16,))


def clusters(n_per: int = 60, dims: int = 20, k: int = 4, seed: int = 0):
    """k well-separated Gaussian blobs in `dims` dimensions, and their labels."""
    g = np.random.default_rng(seed)
    centres = g.normal(0, 10, (k, dims))
    x = np.concatenate([c + g.normal(0, 0.5, (n_per, dims)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def separated(coords: np.ndarray, labels: np.ndarray) -> float:
    """The smallest distance between two clusters' centres over the largest cluster's spread:
    well over 1 when every cluster stands apart."""
    centres = np.stack([coords[labels == c].mean(0) for c in np.unique(labels)])
    spread = max(np.linalg.norm(coords[labels == c] - centres[c], axis=1).max() for c in np.unique(labels))
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]]
    return min(gaps) / spread


@pytest.mark.parametrize("method", ["PCA", "t-SNE", "UMAP"])
def test_projection_keeps_known_clusters_apart(method):
    x, labels = clusters()
    seen = []
    coords = feature_map.project(x, method, progress=seen.append)
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert separated(coords, labels) > 1.0
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    if method != "PCA":
        assert len(seen) > 2  # the layout's progress, not only its end


def test_pca_matches_the_principal_axes():
    g = np.random.default_rng(1)
    x = (g.normal(size=(500, 3)) * [10, 3, 0.1]).astype(np.float32)  # variance mostly along axis 0, then 1
    coords, basis = feature_map.pca(x)
    assert np.allclose(np.abs(basis[1:]), np.eye(3)[:2], atol=0.05)
    assert coords[:, 0].std() > coords[:, 1].std() > 0
    again, _ = feature_map.pca(x, basis)
    assert np.allclose(coords, again)


def test_project_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="unknown projection"):
        feature_map.project(np.zeros((10, 3)), "LDA")
    with pytest.raises(ValueError, match="at least 3 images"):
        feature_map.project(np.zeros((2, 3)))


def images_and_labels(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def test_hidden_features_are_the_last_hidden_layer():
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, _ = images_and_labels(50)
    feats, logits = feature_map.hidden_features(model, images, batch_size=16)
    x = as_input(images)
    with torch.no_grad():
        h = x
        for name, layer in model.net.named_children():
            h = layer(h)
            if name == "fc1_act":
                expected = h.clone()
    assert feats.shape == (50, 16) and np.allclose(feats, expected.numpy(), atol=1e-5)
    assert np.allclose(logits, h.numpy(), atol=1e-5)
    no_dense = LeNet(SMALL.replace(dense_widths=()))
    assert feature_map.hidden_layer(no_dense) == "flatten"
    assert feature_map.hidden_features(no_dense, images)[0].shape == (50, 8 * 5 * 5)


def test_map_is_cached_and_a_second_call_reads_it(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, labels = images_and_labels()
    first, cached = feature_map.cached_feature_map(tmp_path, model, images, labels, "PCA", "mnist")
    assert not cached and first.coords.shape == (120, 2)
    assert first.layer == "fc1_act" and first.dims == 16 and first.dataset == "mnist"
    assert (first.mistakes == (first.predictions != labels.numpy())).all()
    assert feature_map.cache_path(tmp_path, "PCA", "mnist").is_file()

    def no_projection(*a, **k):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(feature_map, "project", no_projection)
    second, cached = feature_map.cached_feature_map(tmp_path, model, images, labels, "PCA", "mnist")
    assert cached and np.array_equal(second.coords, first.coords)
    assert np.array_equal(second.predictions, first.predictions)
    monkeypatch.undo()

    # Other weights (a run trained on): the old map is not theirs.
    with torch.no_grad():
        model.net.output.bias += 1
    _, cached = feature_map.cached_feature_map(tmp_path, model, images, labels, "PCA", "mnist")
    assert not cached


@pytest.mark.parametrize("damage", [b"", b"not a zip file", None])
def test_a_damaged_map_cache_reads_as_missing(tmp_path, damage):
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, labels = images_and_labels()
    m, _ = feature_map.cached_feature_map(tmp_path, model, images, labels, "PCA", "mnist")
    path = feature_map.cache_path(tmp_path, "PCA", "mnist")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2] if damage is None else damage)  # truncated, empty, garbage
    assert feature_map.load_map(path) is None
    again, cached = feature_map.cached_feature_map(tmp_path, model, images, labels, "PCA", "mnist")
    assert not cached and np.allclose(again.coords, m.coords)
    assert feature_map.load_map(path) is not None  # written afresh


# -- the map over training ---------------------------------------------------------------------

def test_a_run_records_features_every_epoch(tmp_path, tiny_data_dir):
    config = TrainConfig(model=SMALL, dataset="mnist", epochs=3, batch_size=64)
    run = Run.create(config, tmp_path)
    assert train_run(run.path, data_dir=tiny_data_dir) == "finished"
    path = run.path / feature_frames.FILE
    raw = torch.load(path, map_location="cpu", weights_only=True)   # plain tensors and data only
    assert raw["format"] == "lenet-lab/features" and raw["epochs"] == [0, 1, 2, 3]
    saved = load_features(path)
    p = len(saved["indices"])
    assert saved["features"].shape == (4, p, 16) and saved["features"].dtype == torch.float16
    assert saved["predictions"].shape == (4, p) and saved["layer"] == "fc1_act"
    # The sample: the first test images of each class, by class.
    from lenet_core.data import load_dataset
    data = load_dataset("mnist", data_dir=tiny_data_dir, download=False)
    assert torch.equal(saved["labels"], data.test_labels[saved["indices"]])
    assert saved["labels"].tolist() == sorted(saved["labels"].tolist())
    # The last frame is what the trained model says of those images.
    model = run.load_checkpoint().model
    feats, logits = feature_map.hidden_features(model, data.test_images[saved["indices"]])
    assert np.allclose(saved["features"][-1].float().numpy(), feats, atol=2e-2)
    assert torch.equal(saved["predictions"][-1].long(), torch.from_numpy(logits.argmax(1)))


def test_recording_keeps_to_its_budget(tmp_path):
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, labels = images_and_labels(400)
    budget = 40_000
    rec = FeatureRecorder.for_data(SMALL, images, labels, budget_bytes=budget)
    # One frame is held to budget / 16: 16 values of 2 bytes and a prediction byte per image.
    assert rec.frame_bytes <= budget // 16 and len(rec.indices) == 10 * (budget // 16 // 33 // 10)
    for epoch in range(0, 60):
        rec.record(epoch, model)
        assert len(rec.epochs) * rec.frame_bytes <= budget
    assert rec.epochs[0] == 0 and rec.epochs[-1] == 59 and rec.stride > 1
    assert all(e % rec.stride == 0 for e in rec.epochs[:-1])
    path = rec.save(tmp_path / "features.pt")
    saved = load_features(path)
    assert saved["features"].numel() * 2 <= budget and saved["stride"] == rec.stride


def test_recording_resumes_and_drops_later_frames(tmp_path):
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, labels = images_and_labels(200)
    rec = FeatureRecorder.for_data(SMALL, images, labels)
    for epoch in range(5):
        rec.record(epoch, model)
    path = rec.save(tmp_path / "features.pt")
    again = FeatureRecorder.resume(path, SMALL, 2, images)
    assert again.epochs == [0, 1, 2] and torch.equal(again.indices, rec.indices)
    with pytest.raises(ValueError, match="another model"):
        FeatureRecorder.resume(path, SMALL.replace(dense_widths=(8,)), 2, images)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a features file"):
        load_features(path)


# -- top images ---------------------------------------------------------------------------------

def brute_force(model, images, layer, k):
    x = as_input(images)
    with torch.no_grad():
        h = x
        for name, mod in model.net.named_children():
            h = mod(h)
            if name == layer:
                break
    score = (h.flatten(2).amax(2) if h.dim() == 4 else h).numpy()     # (N, units)
    # Best first, earlier images first among equals.
    return np.stack([np.lexsort((np.arange(len(s)), -s))[:k] for s in score.T])


def test_top_images_equal_a_brute_force_ranking():
    torch.manual_seed(3)
    model = LeNet(SMALL)
    images, _ = images_and_labels(250, seed=4)
    t = top_images.top_images(model, images, k=9, dense=True, batch_size=64)
    assert list(t.layers) == ["conv1_act", "conv2_act", "fc1_act"]
    for layer, (values, indices) in t.layers.items():
        assert indices.shape == values.shape == ((4, 8, 16)[list(t.layers).index(layer)], 9)
        assert np.array_equal(indices, brute_force(model, images, layer, 9)), layer
        assert (np.diff(values, axis=1) <= 0).all()


def test_a_channel_that_reads_one_pixel_ranks_the_brightest_first():
    model = LeNet(ModelConfig(activation="relu", pooling="max", conv_channels=(2, 2), dense_widths=()))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.net.conv1.weight[0, 0, 2, 2] = 1.0   # channel 1 copies the image (padding 2 keeps it 28x28)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (200, 28, 28), dtype=torch.uint8, generator=g)
    bright = torch.randperm(256, generator=g)[:200].clamp(min=41).to(torch.uint8)
    images[:, 14, 9] = bright      # one pixel, brighter than all the noise, differing per image
    t = top_images.top_images(model, images, k=9)
    values, indices = t.layers["conv1_act"]
    expected = torch.sort(bright.long(), descending=True, stable=True).indices[:9].numpy()
    assert np.array_equal(indices[0], expected)
    assert np.allclose(values[0], bright[expected].float().numpy() / 255)


def test_top_images_are_cached(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = LeNet(SMALL)
    images, _ = images_and_labels(100)
    first, cached = top_images.cached_top_images(tmp_path, model, images, "mnist")
    assert not cached
    monkeypatch.setattr(top_images, "top_images", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    second, cached = top_images.cached_top_images(tmp_path, model, images, "mnist")
    assert cached and all(np.array_equal(first.layers[n][1], second.layers[n][1]) for n in first.layers)
    top_images.cache_path(tmp_path, "mnist").write_bytes(b"PK\x03\x04 broken")
    assert top_images.load_top(top_images.cache_path(tmp_path, "mnist")) is None
