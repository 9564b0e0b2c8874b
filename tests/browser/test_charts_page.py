"""The charts page (#/charts) against the real server processing the looping PETS camera.

- Live: the in/out tiles of the camera's counting line and the in/out chart of today rise
  while people cross, without the page being reloaded, and what the chart counted live is
  never more than the server itself counts for the line afterwards.
- Daily charts render for a camera and for an area (the area's figures come from the metrics
  task, made to run every few seconds for the test through the API, as an admin could), and the
  heatmap over the snapshot loads and follows its opacity control.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import PAGE_READY_MS, Server, goto, shoot

LIVE_RISE_S = 120.0  # PETS people cross the line every few seconds at 7 fps
REPORTS_S = 120.0  # until the metrics task has written today's reports


def api_json(server: Server, method: str, path: str, body: object = None) -> object:
    status, _, raw = server.request(method, path, body, token=server.token(server.admin))
    assert status == 200, (method, path, status, raw[:300])
    return json.loads(raw)


def number(locator: Locator) -> int:
    text = locator.inner_text(timeout=PAGE_READY_MS).strip()
    assert re.fullmatch(r"\d+", text), f"not a count: {text!r}"
    return int(text)


def camera_line(server: Server) -> str:
    camera = api_json(server, "GET", f"/cameras/{server.camera_id}")
    assert isinstance(camera, dict)
    lines = camera.get("counting_lines") or []
    assert lines, "the test camera has no counting line"
    return str(lines[0]["name"])


def test_live_in_out_counts_rise_without_a_reload(admin_page: Page, server: Server) -> None:
    page = admin_page
    line = camera_line(server)
    goto(page, server, f"charts?camera={server.camera_id}")
    page.get_by_role("button", name="Today, hourly").click()
    expect(page.get_by_label("Period", exact=True)).to_have_value("hourly")
    expect(page.get_by_role("heading", name=re.compile(r"^Hourly charts for"))).to_be_visible()
    expect(page.get_by_role("status").filter(has_text=re.compile(r"^Live$"))).to_be_visible(
        timeout=PAGE_READY_MS)
    # A reload would make a new document and lose this.
    page.evaluate("() => { window.__lookoutSameDocument = true; }")

    tile_in = page.get_by_label(f"{line} in", exact=True)
    tile_out = page.get_by_label(f"{line} out", exact=True)
    chart_in = page.get_by_label(f"Total {line} in", exact=True)
    chart_out = page.get_by_label(f"Total {line} out", exact=True)
    expect(chart_in).to_be_visible(timeout=PAGE_READY_MS)
    tiles_before = number(tile_in) + number(tile_out)
    chart_before = number(chart_in) + number(chart_out)

    deadline = time.monotonic() + LIVE_RISE_S
    while True:
        tiles = number(tile_in) + number(tile_out)
        chart = number(chart_in) + number(chart_out)
        if tiles >= tiles_before + 2 and chart >= chart_before + 2:
            break
        assert time.monotonic() < deadline, (
            f"in/out counts of line {line!r} did not rise within {LIVE_RISE_S:.0f} s: tiles "
            f"{tiles_before} -> {tiles}, chart {chart_before} -> {chart}")
        page.wait_for_timeout(1000)
    assert page.evaluate("() => window.__lookoutSameDocument === true"), "the page was reloaded"
    assert "#/charts" in page.url

    # The chart counted only real crossings: the server's own count for today's hours catches
    # up with (at least) what the page showed.
    charted = number(chart_in) + number(chart_out)
    day = page.get_by_label("From", exact=True).input_value()
    deadline = time.monotonic() + 30
    while True:
        answer = api_json(server, "GET", "/metrics/cameras/line-crossings/hourly"
                          f"?cameras={server.camera_id}&date={day}")
        assert isinstance(answer, dict)
        lines = answer["entities"][0]["totals"]["Lines"]
        served = lines.get(line, {}).get("In", 0) + lines.get(line, {}).get("Out", 0)
        if served >= charted:
            break
        assert time.monotonic() < deadline, f"the page charted {charted}, the server {served}"
        time.sleep(1)
    shoot(page, "charts-live-hourly")


@pytest.fixture
def fast_reports(server: Server) -> Iterator[None]:
    """The metrics task every 6 s instead of every LiveInterval minutes, put back after."""
    tasks = api_json(server, "GET", "/periodic_tasks")
    assert isinstance(tasks, list)
    metrics = next(t for t in tasks if t["name"] == "metrics")
    before = metrics["values"]["LiveInterval"]
    api_json(server, "PUT", "/periodic_tasks/metrics", {"LiveInterval": "0.1"})
    try:
        yield
    finally:
        api_json(server, "PUT", "/periodic_tasks/metrics", {"LiveInterval": before})


def wait_for_chart(page: Page, server: Server, route: str, card: str, chart: re.Pattern[str]
                   ) -> Locator:
    """The chart ``chart`` in the card titled ``card``, loading ``route`` again until the
    server has data for it (reports are written as the processor goes)."""
    deadline = time.monotonic() + REPORTS_S
    while True:
        goto(page, server, route)
        article = page.get_by_role("article", name=card, exact=True)
        expect(article).to_be_visible()
        canvas = article.get_by_role("img", name=chart)
        if canvas.count():
            expect(canvas.first).to_be_visible()
            return article
        expect(article.get_by_text(re.compile(r"^No data for"))).to_be_visible()
        assert time.monotonic() < deadline, f"no {card} chart on {route} within {REPORTS_S} s"
        page.wait_for_timeout(3000)


def test_daily_charts_render_for_a_camera_and_an_area(admin_page: Page, server: Server,
                                                      fast_reports: None) -> None:
    page = admin_page
    areas = api_json(server, "GET", "/areas")
    assert isinstance(areas, list)
    area = next(a for a in areas if server.camera_id in a.get("cameras", []))

    # A camera: its in/out traffic and occupancy per day, with the data table.
    route = f"charts?camera={server.camera_id}&period=daily"
    occupancy = wait_for_chart(page, server, route, "Occupancy",
                               re.compile(r"^Line chart of occupancy"))
    expect(page.get_by_role("heading", name=re.compile(r"^Daily charts for"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"processor's time zone"))).to_be_visible()
    traffic = page.get_by_role("article", name="In/out traffic", exact=True)
    expect(traffic.get_by_role("img", name=re.compile(r"^Bar chart of in.out traffic"))) \
        .to_be_visible()
    occupancy.get_by_text("Data table: Occupancy").click()
    rows = occupancy.get_by_role("table").locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 1
    # The heatmap is drawn over a clean frame of the camera (not the annotated preview) and
    # follows its opacity.
    heatmap = page.get_by_role("img", name=re.compile(r"^Where people were on"))
    expect(heatmap).to_be_visible()
    expect(heatmap).to_have_attribute("data-ready", "true", timeout=PAGE_READY_MS)
    frame = heatmap.locator("img")
    expect(frame).to_have_attribute("src", re.compile(r"/calibration_image\?"))
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                           arg=frame.element_handle(), timeout=PAGE_READY_MS)
    coloured = page.wait_for_function(
        "(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }",
        arg=heatmap.locator("canvas").element_handle(), timeout=PAGE_READY_MS)
    assert coloured.json_value() > 0
    page.get_by_label("Heatmap opacity", exact=True).fill("0.3")
    expect(heatmap).to_have_attribute("data-opacity", "0.30")
    expect(heatmap.locator("canvas")).to_have_css("opacity", "0.3")
    shoot(page, "charts-camera-daily")

    # An area, chosen with the page's own control.
    page.get_by_label("Camera or area", exact=True).select_option(f"area:{area['id']}")
    expect(page.get_by_role("heading", name=re.compile(r"^Daily charts for " + re.escape(
        area.get("name") or area["id"])))).to_be_visible()
    # The address follows the choice (written just after the page draws it).
    expect(page).to_have_url(re.compile(rf"[?&]area={re.escape(area['id'])}(&|$)"))
    wait_for_chart(page, server, f"charts?area={area['id']}&period=daily", "Occupancy",
                   re.compile(r"^Line chart of occupancy"))
    expect(page.get_by_role("img", name=re.compile(r"^Where people were"))).to_have_count(0)
    shoot(page, "charts-area-daily")
