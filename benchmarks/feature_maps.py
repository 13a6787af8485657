"""The figures of the test set's map, the map over training and the top images, side by side:

- PCA map of the 10,000 test images of a shipped model: the model's pass, the projection and the
  figure serialised as the page sends it (first time), and the same read back from the cache;
- UMAP and t-SNE of the same features: first time (with how many progress reports the bar got)
  and read back from the cache (skip them with --no-slow);
- top images of every conv channel (and with the dense units) of LeNet-5;
- features.pt: bytes per epoch, size after 10 and 200 epochs, and the time of one record + save;
- the Activations page's time to redraw the map over training when the epoch slider moves (AppTest,
  the whole page's rerun; median of 10 moves).

    LENET_DATA_DIR=../shared/data python benchmarks/feature_maps.py [--model fashion-classic] [--no-slow]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core import feature_map as fmap  # noqa: E402
from lenet_core import top_images as tops  # noqa: E402
from lenet_core.checkpoint import load_checkpoint  # noqa: E402
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.feature_frames import FeatureRecorder  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def figure_seconds(m, classes) -> float:
    from lenet_app.feature_views import scatter_figure

    _, s = timed(lambda: scatter_figure(m.coords, m.labels, m.predictions, classes).to_json())
    return s


def maps(ckpt, data, folder: Path, slow: bool) -> None:
    for method in fmap.METHODS if slow else ("PCA",):
        reports = []
        (m, cached), first = timed(lambda: fmap.cached_feature_map(folder, ckpt.model, data.test_images,
                                                                   data.test_labels, method, data.name,
                                                                   reports.append))
        assert not cached
        fig = figure_seconds(m, ckpt.classes)
        (_, cached), again = timed(lambda: fmap.cached_feature_map(folder, ckpt.model, data.test_images,
                                                                   data.test_labels, method, data.name))
        assert cached
        print(f"{method:>5} of {len(data.test_labels):,} test images: first {first:6.2f} s (+ figure {fig:.2f} s, "
              f"{len(reports)} progress reports), from the cache {again:.3f} s (+ figure)", flush=True)


def top(ckpt, data) -> None:
    for dense in (False, True):
        t, s = timed(lambda: tops.top_images(ckpt.model, data.test_images, dense=dense))
        units = sum(len(v) for v, _ in t.layers.values())
        print(f"top 9 images of {units} units ({', '.join(t.layers)}): {s:.2f} s", flush=True)


def recording(ckpt, data, folder: Path) -> None:
    rec = FeatureRecorder.for_data(ckpt.model.config, data.test_images, data.test_labels)
    print(f"features.pt: {len(rec.indices)} images, {rec.frame_bytes:,} bytes of frame per epoch, "
          f"up to {rec.max_frames} frames")
    times = []
    for e in range(201):
        t0 = time.perf_counter()
        rec.record(e, ckpt.model)
        path = rec.save(folder / "features.pt")
        times.append(time.perf_counter() - t0)
        if e in (10, 200):
            print(f"  after epoch {e:>3}: {path.stat().st_size / 1e6:5.2f} MB, {len(rec.epochs)} frames, "
                  f"stride {rec.stride}", flush=True)
    print(f"  record + save: median {statistics.median(times[:11]) * 1e3:.1f} ms per epoch over the first 10 "
          f"epochs, {statistics.median(times[150:]) * 1e3:.1f} ms past epoch 150")


def slider(ckpt, data, folder: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from lenet_core.runs import Run
    from lenet_core.train import TrainConfig

    root = folder / "runs"
    config = TrainConfig(model=ckpt.model.config, dataset=data.name)
    run = Run.create(config, root, name="bench")
    run.save_checkpoint(ckpt)
    rec = FeatureRecorder.for_data(ckpt.model.config, data.test_images, data.test_labels)
    for e in range(11):
        rec.record(e, ckpt.model)
    rec.save(run.path / "features.pt")
    os.environ["LENET_RUNS_DIR"] = str(root)
    at = AppTest.from_file(str(ROOT / "lenet_lab.py"), default_timeout=120)
    at.run()
    at.switch_page("views/activations.py").run()
    at.selectbox(key="model").set_value(f"run:{run.id}").run()
    at.segmented_control(key="act_view").set_value("Epoch by epoch").run()
    at.toggle(key="act.fmap").set_value(True).run()
    assert not at.exception, at.exception
    times = []
    for e in [0, 5, 10, 3, 7, 1, 9, 2, 8, 4]:
        _, s = timed(lambda: at.select_slider(key="act.fmap.epoch").set_value(e).run())
        times.append(s)
    assert not at.exception, at.exception
    print(f"epoch slider moved on Activations (the whole page's rerun, AppTest): median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} moves")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion-classic", help="a folder of models/")
    p.add_argument("--no-slow", action="store_true", help="skip UMAP and t-SNE")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(ROOT / "models" / args.model / "checkpoint.pt")
    data = load_dataset(ckpt.dataset, download=False)
    with tempfile.TemporaryDirectory(prefix="lenet-maps-") as tmp:
        folder = Path(tmp)
        maps(ckpt, data, folder, not args.no_slow)
        top(ckpt, data)
        recording(ckpt, data, folder)
        slider(ckpt, data, folder)


if __name__ == "__main__":
    main()
