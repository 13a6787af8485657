"""Home and Evaluate in Chromium against `streamlit run app.py` (tiny synthetic data)."""
import re

from playwright.sync_api import expect

from browser import screenshot, wait_for_app


def test_home_renders(app_server, browser_page):
    page = browser_page
    elsewhere = []  # the app must work offline: nothing is fetched from another host
    page.on("request", lambda r: None if r.url.startswith(("data:", "blob:", app_server.url)) else elsewhere.append(r.url))
    page.goto(app_server.url)
    wait_for_app(page)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="LeNet Lab")).to_be_visible()
    expect(main.get_by_text(re.compile(r"Training runs on .*(CPU|GPU)"))).to_be_visible()
    for name in ("Fashion-MNIST", "MNIST digits"):
        expect(main.get_by_text(re.compile(rf"{name}.*(ready|missing)")).first).to_be_visible()
    for link in ("Train", "Draw", "Activations", "Evaluate"):
        expect(main.get_by_role("link", name=f"Open {link}")).to_be_visible()
    expect(main.get_by_text("Digits", exact=False).first).to_be_visible()
    screenshot(page, "home")
    assert not elsewhere, elsewhere


def test_evaluate_renders_and_opens_activations(app_server, browser_page):
    page = browser_page
    page.goto(f"{app_server.url}/evaluate")
    wait_for_app(page)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Evaluate")).to_be_visible()
    expect(main.get_by_test_id("stMetric").filter(has_text="Test accuracy")).to_be_visible()
    # Both figures drawn by plotly.js, with the class names on the confusion matrix's axes.
    expect(main.locator(".js-plotly-plot")).to_have_count(2)
    expect(main.locator(".js-plotly-plot").first.locator("text", has_text="predicted class")).to_be_visible()
    expect(main.locator(".js-plotly-plot").first.locator(".xtick text").first).to_be_visible()
    buttons = main.get_by_role("button", name="Open in Activations")
    expect(buttons.first).to_be_visible()
    assert buttons.count() > 1
    page.set_viewport_size({"width": 1400, "height": 2200})  # the whole gallery in the picture
    wait_for_app(page)
    page.wait_for_timeout(500)  # let plotly lay the figures out again at the new size
    screenshot(page, "evaluate")
    page.set_viewport_size({"width": 1400, "height": 1000})

    buttons.first.click()
    page.wait_for_url(re.compile(r"/activations$"))
    wait_for_app(page)
    expect(main.get_by_test_id("stException")).to_have_count(0)


# The confusion matrix's cell centres on the screen, from plotly's own axes (category i sits at
# linear coordinate i), and the counts it shows, row by row.
CELLS_JS = """el => {
    const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, box = el.getBoundingClientRect();
    const counts = el.data[0].text.map(row => row.map(c => Number(c || 0)));
    const centre = (t, p) => [box.left + xa._offset + xa.l2p(p), box.top + ya._offset + ya.l2p(t)];
    return {counts, names: el.data[0].x, centres: counts.map((row, t) => row.map((_, p) => centre(t, p)))};
}"""


def _cells(page):
    chart = page.get_by_test_id("stMain").locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    return chart.evaluate(CELLS_JS)


def _gallery(main):
    """(true, said) of each gallery card."""
    texts = main.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(r"^true .*\ssaid ")).all_inner_texts()
    return [tuple(re.match(r"true (.+?)\s+said (.+?)\s", t).groups()) for t in texts]


def tall_screenshot(page, name):
    """The whole page: Streamlit scrolls inside its own frame, so the window is made as tall as it."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    page.set_viewport_size({"width": width, "height": 2600})
    wait_for_app(page)
    page.wait_for_timeout(500)  # let plotly lay the figures out again at the new size
    screenshot(page, name)
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(300)


def _span(main):
    return main.get_by_text(re.compile(r"^\d+–\d+ of \d+ (mistakes|correct answers)"))


def test_evaluate_cell_click_filters_the_gallery_and_pages_through_it(app_server, browser_page):
    page = browser_page
    main = page.get_by_test_id("stMain")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{app_server.url}/evaluate")
    wait_for_app(page)
    expect(main.locator(".js-plotly-plot")).to_have_count(2)
    expect(_span(main)).to_be_visible()
    total = int(re.search(r"of (\d+)", _span(main).inner_text()).group(1))
    assert total > 24  # tiny synthetic data and a digits model: enough mistakes for two pages
    tall_screenshot(page, "evaluate-1280")

    # Page 2 of all the mistakes.
    main.get_by_role("button", name="Next").first.click()
    expect(_span(main)).to_have_text(re.compile(rf"^25–{min(48, total)} of {total} mistakes"))
    wait_for_app(page)
    assert len(_gallery(main)) == min(48, total) - 24
    page.set_viewport_size({"width": 1024, "height": 900})
    tall_screenshot(page, "evaluate-page2-1024")
    page.set_viewport_size({"width": 1280, "height": 900})

    # A click on the most frequent confusion: the filters name it, the gallery holds it, page 1 again.
    cells = _cells(page)
    counts, names = cells["counts"], cells["names"]
    t, p = max(((t, p) for t in range(len(counts)) for p in range(len(counts)) if t != p),
               key=lambda c: counts[c[0]][c[1]])
    n = counts[t][p]
    page.mouse.click(*cells["centres"][t][p])
    expect(_span(main)).to_have_text(re.compile(rf"^1–{min(24, n)} of {n} mistakes"))
    wait_for_app(page)
    expect(main.get_by_role("combobox", name="True class")).to_have_value(names[t])
    expect(main.get_by_role("combobox", name="Predicted as")).to_have_value(names[p])
    assert _gallery(main) == [(names[t], names[p])] * min(24, n)
    tall_screenshot(page, "evaluate-cell-1280")

    # A diagonal cell: that class's correct answers.
    c = max(range(len(counts)), key=lambda i: counts[i][i])
    page.mouse.click(*_cells(page)["centres"][c][c])
    expect(_span(main)).to_have_text(re.compile(rf"^1–{min(24, counts[c][c])} of {counts[c][c]} correct answers"))
    wait_for_app(page)
    expect(main.get_by_role("heading", name="Correct answers")).to_be_visible()
    assert set(_gallery(main)) == {(names[c], names[c])}

    # A projector's 1024 pixels: the same page, narrower.
    page.set_viewport_size({"width": 1024, "height": 900})
    tall_screenshot(page, "evaluate-diagonal-1024")
    expect(main.get_by_test_id("stException")).to_have_count(0)


def test_a_page_url_opened_first_on_a_fresh_server_gets_the_app_frame(app_env, start_server, browser_page):
    """The very first request of a fresh server, for /evaluate rather than /, gets lenet_lab.py's
    frame: its navigation along the top, and the page it names."""
    server = start_server(app_env)
    page = browser_page
    page.goto(f"{server.url}/evaluate")
    wait_for_app(page)
    nav = page.get_by_test_id("stTopNav")  # app.py's navigation, along the top
    expect(nav.get_by_role("link", name="Home", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="app", exact=True)).to_have_count(0)  # the bare script's file list
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    expect(page.get_by_test_id("stMain").get_by_role("heading", name="Evaluate")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
