"""The test set's map and the top images in Chromium (`streamlit run app.py`, tiny synthetic data, the
shipped digits model): one click on a point, or on a top image, opens that test image in the One
input view; screenshots at 1280 and 1024 pixels."""
import re
from pathlib import Path

from playwright.sync_api import expect

import browser
from browser import screenshot, wait_for_app
from lenet_core.checkpoint import load_checkpoint
from lenet_core.data import load_dataset
from lenet_core.top_images import top_images

# Screen positions of every point of a plotly figure's traces (from its own axes), with their
# test index (customdata[0]); `isolated` says whether no other point is within 8 pixels.
POINTS_JS = """(el, traceType) => {
    const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, box = el.getBoundingClientRect();
    const pts = [];
    el._fullData.forEach(t => {
        if (t.type !== traceType || t.visible !== true) return;
        for (let i = 0; i < t.x.length; i++) {
            pts.push({x: box.left + xa._offset + xa.l2p(t.x[i]), y: box.top + ya._offset + ya.l2p(t.y[i]),
                      index: Number(Array.isArray(t.customdata[i]) ? t.customdata[i][0] : t.customdata[i])});
        }
    });
    return pts.map(p => ({...p, isolated: pts.every(q => q === p || Math.hypot(q.x - p.x, q.y - p.y) > 8)}));
}"""


def open_view(page, url, view):
    page.goto(f"{url}/activations")
    wait_for_app(page)
    main = page.get_by_test_id("stMain")
    main.get_by_test_id("stButtonGroup").get_by_text(view, exact=True).click()
    wait_for_app(page)
    return main


def shots(page, name):
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 1000})
        wait_for_app(page)
        page.wait_for_timeout(600)  # plotly lays the figure out again at the new width
        screenshot(page, f"{name}-{width}")
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.wait_for_timeout(600)


def expect_one_input_of(main, index):
    expect(main.get_by_text(re.compile(rf"test image #{index}, a "))).to_be_visible()
    expect(main.get_by_role("heading", name=re.compile(r"^conv1: "))).to_be_visible()
    expect(main.get_by_test_id("stException")).to_have_count(0)


def test_a_click_on_the_map_opens_that_image(app_server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    main = open_view(page, app_server.url, "Test-set map")
    chart = main.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(main.get_by_text(re.compile(r"PCA of the \d+ values of"))).to_be_visible()
    shots(page, "activations-test-set-map")
    chart.scroll_into_view_if_needed()
    points = chart.evaluate(POINTS_JS, "scattergl")
    assert len(points) == 64  # every test image of the tiny set
    target = next(p for p in points if p["isolated"])
    page.mouse.move(target["x"], target["y"])
    page.wait_for_timeout(300)
    page.mouse.click(target["x"], target["y"])
    expect_one_input_of(main, target["index"])


def test_a_click_on_a_top_image_opens_it(app_server, app_env, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    main = open_view(page, app_server.url, "Top images")
    chart = main.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(main.get_by_text(re.compile(r"the top 9 of 64 test images each"))).to_be_visible()
    shots(page, "activations-top-images")
    chart.scroll_into_view_if_needed()
    tiles = chart.evaluate(POINTS_JS, "scatter")
    assert len(tiles) == 6 * 9  # conv1 of the digits model: 6 channels, their top 9
    # Channel 2's second image (tiles run row by row, a row per channel), ranked here afresh.
    data = load_dataset("mnist", data_dir=app_env["LENET_DATA_DIR"], download=False)
    model = load_checkpoint(Path(browser.PROJECT_ROOT) / "models" / "digits" / "checkpoint.pt").model
    expected = int(top_images(model, data.test_images).layers["conv1_act"][1][1, 1])
    target = tiles[10]
    page.mouse.move(target["x"], target["y"])
    page.wait_for_timeout(300)
    page.mouse.click(target["x"], target["y"])
    expect_one_input_of(main, expected)
