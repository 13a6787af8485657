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


def test_a_page_url_opened_first_on_a_fresh_server_gets_the_app_frame(app_env, start_server, browser_page):
    """With a pages/ folder next to app.py, Streamlit runs the very first request for /evaluate
    as a bare script (no wide layout, navigation by file name) unless the page corrects it."""
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
