"""The training charts' axes: a loss that blew up goes on a log scale with written-out ticks, so it
does not flatten the other curves; the comparison chart keeps its two panels and one legend."""
import math

from lenet_app.curves import loss_axis, overlay_figure, step_figure


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
                         "curve": {"step": [1, 2, 3], "loss": [2.3, 1.5, 0.9]}}),
            ("adam lr 1", {"epochs": [],
                           "curve": {"step": [1, 2, 3], "loss": [2.3, 3e4, 4e6]}})]
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
