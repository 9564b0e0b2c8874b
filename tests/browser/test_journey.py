"""The journey of the acceptance line "draw a line, see its in/out count rise on the chart
live", with a new line, as a person would do it in a real Chromium against the real server
processing the looping PETS camera:

1. the admin opens the camera's drawing page, draws a counting line named ``journey`` with two
   mouse clicks across the road on the right of the picture (where PETS walkers cross most
   often: in the ground truth someone crosses it every 14 s at worst), and saves it;
2. the camera restarts with the new line; the test waits for it to process frames again;
3. the admin opens the charts page for the camera: the live tiles ``journey in`` /
   ``journey out`` and the chart's totals for ``journey`` rise without the page being
   reloaded, within a bounded wait;
4. the numbers are checked against the server's own count of crossings of ``journey`` (the
   line-crossings API): the page may not show a crossing the server did not record.

The camera's lines are put back as they were (through the API) whatever happens.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import PAGE_READY_MS, Server, goto, shoot

LINE = "journey"
# Where the line is drawn, as fractions of the picture (768x576): a vertical segment at
# x = 620 px from y = 110 to y = 470 px, across the road on the right where people walk in and
# out of the scene. A line on the lawn at bottom left (x = 80 px, y = 380 to 560 px), which
# nobody crosses in the ground truth, makes this test fail at RISE_S.
START = (620 / 768, 110 / 576)
END = (620 / 768, 470 / 576)
TOLERANCE_PX = 3.0  # a click lands within this many image pixels of where it was aimed
RESTART_S = 60.0  # until the camera processes frames again after the save
RISE_S = 45.0  # until the tiles and the chart show crossings of the new line
RISE_BY = 2  # crossings the tiles and the chart must both gain
SERVED_S = 30.0  # until the server's event log has every crossing the page showed


def api_json(server: Server, method: str, path: str, body: object = None) -> object:
    status, _, raw = server.request(method, path, body, token=server.token(server.admin))
    assert 200 <= status < 300, (method, path, status, raw[:300])
    return json.loads(raw) if raw else None


def camera_state(server: Server) -> dict:
    answer = api_json(server, "GET", f"/status/{server.camera_id}")
    assert isinstance(answer, dict)
    return answer


def wait_running_since(server: Server, since: float) -> None:
    """Until the camera is running and has processed a frame after ``since`` (epoch s)."""
    deadline = time.monotonic() + RESTART_S
    while True:
        state = camera_state(server)
        last = state.get("last_frame_time")
        if state["status"] == "running" and last and \
                datetime.fromisoformat(last).timestamp() > since:
            return
        assert time.monotonic() < deadline, (
            f"camera {server.camera_id} not running again {RESTART_S:.0f} s after the save: "
            f"{state}\nserver log:\n{server.log_tail(3000)}")
        time.sleep(0.5)


@pytest.fixture
def restore_lines(server: Server) -> Iterator[list[dict]]:
    """The camera's lines before the test; put back (and the camera running) after it."""
    path = f"/cameras/{server.camera_id}/lines"
    before = api_json(server, "GET", path)
    assert isinstance(before, dict)
    yield before["lines"]
    now = api_json(server, "GET", path)
    assert isinstance(now, dict)
    if now["lines"] != before["lines"]:
        put_at = time.time()
        api_json(server, "PUT", path, {"lines": before["lines"]})
        wait_running_since(server, put_at)
    after = api_json(server, "GET", path)
    assert isinstance(after, dict) and after["lines"] == before["lines"], (before, after)


def number(locator: Locator) -> int:
    text = locator.inner_text(timeout=PAGE_READY_MS).strip()
    assert re.fullmatch(r"\d+", text), f"not a count: {text!r}"
    return int(text)


def served(server: Server, day: str) -> tuple[int, int]:
    """The server's own (in, out) crossings of the line on ``day``, from its event log."""
    answer = api_json(server, "GET", "/metrics/cameras/line-crossings/hourly"
                      f"?cameras={server.camera_id}&date={day}")
    assert isinstance(answer, dict)
    counts = answer["entities"][0]["totals"]["Lines"].get(LINE, {})
    return int(counts.get("In", 0)), int(counts.get("Out", 0))


def draw_line(page: Page, server: Server, existing: int) -> tuple[tuple[float, float], ...]:
    """Draw and save the line on the drawing page; the image pixels aimed at."""
    goto(page, server, f"cameras/{server.camera_id}/draw")
    stage = page.get_by_role("application", name=re.compile(r"^Picture of camera"))
    expect(stage).to_be_visible(timeout=PAGE_READY_MS)
    page.wait_for_function(
        "() => { const i = document.querySelector('.stage img'); return i && i.naturalWidth > 0; }",
        timeout=PAGE_READY_MS)
    width, height = page.evaluate("() => { const i = document.querySelector('.stage img');"
                                  " return [i.naturalWidth, i.naturalHeight]; }")
    page.get_by_role("button", name="Draw counting line").click()
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    assert box is not None
    aimed = []
    for fx, fy in (START, END):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        aimed.append((fx * width, fy * height))
    name = page.get_by_role("textbox", name=f"Name of counting line {existing + 1}")
    expect(name).to_be_visible()
    name.fill(LINE)
    shoot(page, "journey-draw")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    expect(page.get_by_role("alert")).to_have_count(0)
    return tuple(aimed)


def test_a_new_line_drawn_counts_live_on_the_chart(
        admin_page: Page, server: Server, restore_lines: list[dict]) -> None:
    page = admin_page
    assert LINE not in [ln["name"] for ln in restore_lines]

    # 1. Draw and save the line; the API serves it where it was drawn, the others unchanged.
    start, end = draw_line(page, server, len(restore_lines))
    saved_at = time.time()
    lines = api_json(server, "GET", f"/cameras/{server.camera_id}/lines")
    assert isinstance(lines, dict)
    drawn = [ln for ln in lines["lines"] if ln["name"] == LINE]
    assert len(drawn) == 1, lines
    for got, want in ((drawn[0]["start"], start), (drawn[0]["end"], end)):
        assert abs(got[0] - want[0]) <= TOLERANCE_PX and abs(got[1] - want[1]) <= TOLERANCE_PX, \
            (drawn, start, end)
    assert [ln for ln in lines["lines"] if ln["name"] != LINE] == restore_lines

    # 2. The camera restarts with the new line.
    wait_running_since(server, saved_at)

    # 3. The charts page for the camera, today hourly, live.
    goto(page, server, f"charts?camera={server.camera_id}")
    page.get_by_role("button", name="Today, hourly").click()
    expect(page.get_by_label("Period", exact=True)).to_have_value("hourly")
    expect(page.get_by_role("status").filter(has_text=re.compile(r"^Live$"))).to_be_visible(
        timeout=PAGE_READY_MS)
    page.evaluate("() => { window.__lookoutSameDocument = true; }")  # lost on a reload
    day = page.get_by_label("From", exact=True).input_value()

    tile_in = page.get_by_label(f"{LINE} in", exact=True)
    tile_out = page.get_by_label(f"{LINE} out", exact=True)
    chart_in = page.get_by_label(f"Total {LINE} in", exact=True)
    chart_out = page.get_by_label(f"Total {LINE} out", exact=True)
    expect(tile_in).to_be_visible(timeout=PAGE_READY_MS)
    expect(chart_in).to_be_visible(timeout=PAGE_READY_MS)
    tiles_before = number(tile_in) + number(tile_out)
    chart_before = number(chart_in) + number(chart_out)

    deadline = time.monotonic() + RISE_S
    while True:
        tiles = number(tile_in) + number(tile_out)
        chart = number(chart_in) + number(chart_out)
        if tiles >= tiles_before + RISE_BY and chart >= chart_before + RISE_BY:
            break
        if time.monotonic() > deadline:
            shoot(page, "journey-charts-no-rise")
            raise AssertionError(
                f"in/out counts of the new line {LINE!r} did not rise by {RISE_BY} within "
                f"{RISE_S:.0f} s: tiles {tiles_before} -> {tiles}, chart {chart_before} -> "
                f"{chart}; the server counted (in, out) {served(server, day)} today")
        page.wait_for_timeout(500)
    assert page.evaluate("() => window.__lookoutSameDocument === true"), "the page was reloaded"
    assert "#/charts" in page.url
    shoot(page, "journey-charts-live")

    # 4. Every crossing the page showed is one the server recorded for the line: its event
    # log catches up with the chart's totals and with the tiles (crossings since the page
    # opened), direction by direction.
    shown_in = max(number(chart_in), number(tile_in))
    shown_out = max(number(chart_out), number(tile_out))
    deadline = time.monotonic() + SERVED_S
    while True:
        got_in, got_out = served(server, day)
        if got_in >= shown_in and got_out >= shown_out:
            break
        assert time.monotonic() < deadline, (
            f"the page showed (in, out) ({shown_in}, {shown_out}) for {LINE!r}, the server "
            f"recorded ({got_in}, {got_out})")
        time.sleep(1)
