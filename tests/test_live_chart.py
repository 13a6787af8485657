"""The live charts' plumbing: plotly.js served beside the app, and the fallback when it cannot be."""
from __future__ import annotations

from pathlib import Path

import plotly

from lenet_app import live_chart

SOURCE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def test_plotly_js_is_copied_once_and_replaced_when_it_differs(tmp_path):
    target = live_chart.ensure_plotly_js(tmp_path / "static")
    assert target.read_bytes()[:2000] == SOURCE.read_bytes()[:2000]
    assert target.stat().st_size == SOURCE.stat().st_size
    mtime = target.stat().st_mtime_ns
    live_chart.ensure_plotly_js(tmp_path / "static")
    assert target.stat().st_mtime_ns == mtime, "an up-to-date copy is left alone"
    target.write_text("an older plotly.js")
    live_chart.ensure_plotly_js(tmp_path / "static")
    assert target.stat().st_size == SOURCE.stat().st_size
    assert [p.name for p in (tmp_path / "static").iterdir()] == ["plotly.min.js"]  # no temporary left


def test_a_static_folder_that_cannot_be_made_means_no_live_charts(tmp_path):
    (tmp_path / "static").write_text("a file where the folder should be")
    assert not live_chart._served_plotly_js(tmp_path / "static")
    assert live_chart._served_plotly_js(tmp_path / "elsewhere" / "static")


def test_themed_keeps_what_the_figure_sets():
    fig = live_chart.themed({"data": [], "layout": {"xaxis": {"range": [0, 5]}, "font": {"size": 20}}})
    assert fig["layout"]["font"] == {"size": 20}
    assert fig["layout"]["xaxis"]["range"] == [0, 5] and "gridcolor" in fig["layout"]["xaxis"]
    assert fig["layout"]["colorway"] == live_chart.COLORWAY
