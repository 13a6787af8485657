"""The training charts' axes: a loss that blew up goes on a log scale with written-out ticks, so it
does not flatten the other curves; the comparison chart keeps its two panels and one legend."""
import math

import numpy as np

from lenet_app.curves import loss_axis, overlay_figure, smooth, step_figure


def test_a_loss_in_one_range_is_drawn_from_zero():
    axis = loss_axis([2.3, 1.1, 0.6], [0.5])
    assert axis.get("type") != "log" and axis["range"] == [0.0, 2.3 * 1.05]


def test_a_loss_spanning_orders_of_magnitude_goes_on_a_log_scale_with_readable_ticks():
    axis = loss_axis([0.02, 0.3, 2.3])
    assert axis["type"] == "log" and axis["title"]["text"] == "loss (log scale)"
    low, high = axis["range"]
    assert low < math.log10(0.02) and high > math.log10(2.3)
    assert axis["ticktext"] == ["0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]  # not "2 1 5 2 0.1 5 2"
    assert axis["tickvals"] == [float(t) for t in axis["ticktext"]]


def test_an_exploded_loss_gets_one_tick_per_decade():
    axis = loss_axis([2.3, 4e6])
    assert axis["ticktext"] == ["1", "10", "100", "1,000", "10,000", "100,000", "1,000,000"]  # from below the data


def test_the_step_chart_follows_its_run_onto_a_log_scale():
    calm = step_figure({"step": [1, 2, 3], "loss": [2.3, 1.2, 0.7]}, 100)
    exploded = step_figure({"step": [1, 2, 3], "loss": [2.3, 5e3, 4e6]}, 100)
    assert calm["layout"]["yaxis"].get("type") != "log" and exploded["layout"]["yaxis"]["type"] == "log"


def test_the_overlay_puts_every_run_in_both_panels_with_one_legend_and_a_log_loss_when_one_exploded():
    runs = [("classic", {"epochs": [{"epoch": 1, "val_acc": 0.6}, {"epoch": 2, "val_acc": 0.7}],
                         "curve": {"step": [1, 2, 3], "loss": [2.3, 1.5, 0.9]}}, "#d62728"),
            ("adam lr 1", {"epochs": [],
                           "curve": {"step": [1, 2, 3], "loss": [2.3, 3e4, 4e6]}}, "#1f77b4")]
    fig = overlay_figure(runs).to_plotly_json()
    panels = {(t["xaxis"], t["yaxis"]) for t in fig["data"]}
    assert panels == {("x", "y"), ("x2", "y2")}
    # one legend entry a run; the run that never finished an epoch is named by its loss curve
    assert [(t["name"], t["yaxis"]) for t in fig["data"] if t.get("showlegend", True)] == [("classic", "y"),
                                                                                          ("adam lr 1", "y2")]
    assert fig["layout"]["yaxis2"]["type"] == "log" and fig["layout"]["yaxis"]["tickformat"] == ".0%"
    assert fig["layout"]["xaxis"]["dtick"] == 1  # whole epochs
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == ["<b>Validation accuracy</b>", "<b>Smoothed loss per step</b>"]
    # each title starts at its own panel's left edge
    assert [a["x"] for a in fig["layout"]["annotations"]] == [0, fig["layout"]["xaxis2"]["domain"][0]]


def test_each_run_is_drawn_in_the_colour_it_is_given_whatever_else_is_shown():
    a = ("a", {"epochs": [{"epoch": 1, "val_acc": 0.6}], "curve": {"step": [1, 2], "loss": [2.0, 1.0]}}, "#2ca02c")
    b = ("b", {"epochs": [{"epoch": 1, "val_acc": 0.5}], "curve": {"step": [1, 2], "loss": [2.0, 1.5]}}, "#9467bd")
    for runs in ([a, b], [b, a], [a]):
        colours = {(t["name"], t["line"]["color"]) for t in overlay_figure(runs).to_plotly_json()["data"]}
        assert colours == {(name, c) for name, _, c in runs}


def lag(steps, true, smoothed):
    """How far behind the true curve the smoothed one is, per point: the distance along x to where
    the (falling) true curve has the smoothed value."""
    where = np.interp(smoothed, true[::-1], steps[::-1])  # x at which the true curve has that value
    return steps - where


def test_the_smoothed_loss_does_not_lag_a_falling_curve():
    rng = np.random.default_rng(0)
    for points in (40, 200, 512):
        steps = np.linspace(1, 4700, points)  # e.g. the chapter's run: 10 epochs of 469 steps
        true = 0.35 + 1.95 * np.exp(-steps / 900)
        noisy = true + rng.normal(0, 0.08, points)
        smoothed = smooth(noisy)
        behind = lag(steps, true, smooth(true))
        x_range = steps[-1] - steps[0]
        # On the curve itself: at most 2% of the x-range late anywhere, the live edge included.
        assert np.max(behind) <= 0.02 * x_range, np.max(behind) / x_range
        # With noise, the line is not biased above the data anywhere (the 300-step lag put it 0.7
        # above them at step 1,500): its mean error over each tenth of the curve is small.
        for part in np.array_split(smoothed - true, 10) if points >= 200 else []:
            assert abs(part.mean()) < 0.05


def test_a_queued_runs_loss_chart_has_no_made_up_axis():
    xaxis = step_figure({}, 0)["layout"]["xaxis"]
    assert "range" not in xaxis and xaxis["showticklabels"] is False
    assert step_figure({"step": [1, 2], "loss": [2.0, 1.0]}, 100)["layout"]["xaxis"]["range"] == [0, 100]
