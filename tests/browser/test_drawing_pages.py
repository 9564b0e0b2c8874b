"""The drawing, calibration and areas pages driven with the mouse in a real Chromium against the
real server: a counting line drawn with two clicks (and its direction swapped) is saved and the
API serves it; a zone drawn corner by corner likewise; a camera calibrated from four clicks and a
square's side shows a reprojection error and a bird's-eye picture before it is saved; an area's
occupancy rules edited in the schedule editor are what the API then returns. A viewer finds the
same pages read-only. Each test puts back what it changed, through the API."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import PAGE_READY_MS, PHONE, Server, goto, shoot, sign_in

TOLERANCE_PX = 3.0  # a click lands within this many image pixels of where it was aimed


def api_json(server: Server, method: str, path: str, body: object = None) -> object:
    status, _, data = server.request(method, path, body, token=server.token(server.admin))
    assert 200 <= status < 300, (method, path, status, data[:500])
    return json.loads(data) if data else None


def stage_of(page: Page) -> Locator:
    stage = page.get_by_role("application", name=re.compile(r"^Picture of camera"))
    expect(stage).to_be_visible(timeout=PAGE_READY_MS)
    # The camera's picture has loaded: the overlay's viewBox is its size.
    page.wait_for_function(
        "() => { const i = document.querySelector('.stage img'); return i && i.naturalWidth > 0; }",
        timeout=PAGE_READY_MS)
    return stage


def image_size(page: Page) -> tuple[int, int]:
    w, h = page.evaluate("() => { const i = document.querySelector('.stage img');"
                         " return [i.naturalWidth, i.naturalHeight]; }")
    return int(w), int(h)


def click_at(page: Page, stage: Locator, fx: float, fy: float) -> tuple[float, float]:
    """Click the stage at a fraction of its size; the image pixel aimed at."""
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    w, h = image_size(page)
    return fx * w, fy * h


def near(got: list[float], want: tuple[float, float]) -> bool:
    return abs(got[0] - want[0]) <= TOLERANCE_PX and abs(got[1] - want[1]) <= TOLERANCE_PX


@pytest.fixture
def restore_camera(server: Server) -> Iterator[None]:
    """Puts the camera's lines, zones and calibration back as they were."""
    cam = f"/cameras/{server.camera_id}"
    lines = api_json(server, "GET", f"{cam}/lines")
    calibration = api_json(server, "GET", f"{cam}/calibration")
    zones_status, _, zones_body = server.request("GET", f"{cam}/zones",
                                                 token=server.token(server.admin))
    yield
    assert isinstance(lines, dict) and isinstance(calibration, dict)
    api_json(server, "PUT", f"{cam}/lines", {"lines": lines["lines"]})
    api_json(server, "PUT", f"{cam}/calibration", {
        "image_points": calibration["image_points"],
        "floor_points_m": calibration["floor_points_m"]})
    if zones_status == 200:
        zones = json.loads(zones_body)
        api_json(server, "PUT", f"{cam}/zones", {"zones": zones.get("zones", []),
                                                 "entry_zones": zones.get("entry_zones", [])})


def test_a_counting_line_drawn_with_the_mouse_is_saved(
        admin_page: Page, server: Server, restore_camera: None) -> None:
    page = admin_page
    goto(page, server, f"cameras/{server.camera_id}/draw")
    stage = stage_of(page)
    before = api_json(server, "GET", f"/cameras/{server.camera_id}/lines")
    assert isinstance(before, dict)
    count = len(before["lines"])

    page.get_by_role("button", name="Draw counting line").click()
    start = click_at(page, stage, 0.15, 0.7)
    end = click_at(page, stage, 0.85, 0.7)
    name_box = page.get_by_role("textbox", name=f"Name of counting line {count + 1}")
    expect(name_box).to_be_visible()
    name_box.fill("door_test")
    # Walking start -> end (left to right on the picture), 'in' is downwards; swapped, upwards.
    page.get_by_role("button", name="Swap direction of door_test").click()
    shoot(page, "draw-line")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    expect(page.get_by_role("alert")).to_have_count(0)

    after = api_json(server, "GET", f"/cameras/{server.camera_id}/lines")
    assert isinstance(after, dict)
    drawn = [ln for ln in after["lines"] if ln["name"] == "door_test"]
    assert len(drawn) == 1, after
    # Swapped: the line now runs from the second click to the first.
    assert near(drawn[0]["start"], end) and near(drawn[0]["end"], start), (drawn, start, end)
    assert [ln["name"] for ln in after["lines"] if ln["name"] != "door_test"] == \
        [ln["name"] for ln in before["lines"]]

    # A name the server refuses: its message is shown and nothing is written.
    page.get_by_role("textbox", name=f"Name of counting line {count + 1}").fill("bad name")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("alert").first).to_contain_text("name", timeout=PAGE_READY_MS)
    still = api_json(server, "GET", f"/cameras/{server.camera_id}/lines")
    assert still == after
    page.get_by_role("button", name="Discard changes").click()
    expect(page.get_by_role("textbox", name=f"Name of counting line {count + 1}")).to_have_value(
        "door_test")
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_disabled()


def test_a_zone_drawn_corner_by_corner_is_saved(
        admin_page: Page, server: Server, restore_camera: None) -> None:
    page = admin_page
    goto(page, server, f"cameras/{server.camera_id}/draw")
    stage = stage_of(page)
    tool = page.get_by_role("button", name="Draw zone", exact=True)
    expect(tool).to_be_enabled()
    tool.click()
    corners = [click_at(page, stage, fx, fy)
               for fx, fy in ((0.3, 0.45), (0.6, 0.45), (0.65, 0.85), (0.25, 0.85))]
    click_at(page, stage, 0.3, 0.45)  # back on the first corner closes the zone
    handles = page.locator(".stage circle.handle")
    expect(handles).to_have_count(4)
    # A double click on the zone adds a corner on its nearest edge; that corner can be deleted.
    box = stage.bounding_box()
    assert box is not None
    page.mouse.dblclick(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
    expect(handles).to_have_count(5)
    page.get_by_role("button", name=re.compile(r"^Delete point \d$")).click()
    expect(handles).to_have_count(4)
    existing = api_json(server, "GET", f"/cameras/{server.camera_id}/zones")
    assert isinstance(existing, dict)
    index = len(existing.get("zones", [])) + 1
    page.get_by_role("textbox", name=f"Name of zone {index}").fill("lawn_test")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    shoot(page, "draw-zone")

    zones = api_json(server, "GET", f"/cameras/{server.camera_id}/zones")
    assert isinstance(zones, dict)
    drawn = [z for z in zones["zones"] if z["name"] == "lawn_test"]
    assert len(drawn) == 1, zones
    assert len(drawn[0]["points"]) == 4
    assert all(near(p, c) for p, c in zip(drawn[0]["points"], corners, strict=True)), drawn


def test_an_entry_zone_drawn_by_touch_on_a_phone(
        fresh_page: Callable[..., Page], server: Server, restore_camera: None) -> None:
    page = fresh_page(has_touch=True)
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    sign_in(page, server, server.admin)
    goto(page, server, f"cameras/{server.camera_id}/draw")
    stage = stage_of(page)
    page.get_by_role("button", name="Draw entry zone", exact=True).tap()
    w, h = image_size(page)
    corners = []
    for fx, fy in ((0.1, 0.3), (0.35, 0.3), (0.35, 0.65)):
        stage.scroll_into_view_if_needed()
        box = stage.bounding_box()
        assert box is not None
        page.touchscreen.tap(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        corners.append((fx * w, fy * h))
    page.get_by_role("button", name="Finish shape").tap()
    page.get_by_role("button", name="Save", exact=True).tap()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    zones = api_json(server, "GET", f"/cameras/{server.camera_id}/zones")
    assert isinstance(zones, dict)
    assert len(zones["entry_zones"]) >= 1, zones
    drawn = zones["entry_zones"][-1]["points"]
    # A tap is less exact than a mouse click (its point is rounded to CSS pixels).
    assert all(abs(p[0] - c[0]) <= 2 * TOLERANCE_PX and abs(p[1] - c[1]) <= 2 * TOLERANCE_PX
               for p, c in zip(drawn, corners, strict=True)), (drawn, corners)


def test_calibration_from_four_clicks_and_a_square(
        admin_page: Page, server: Server, restore_camera: None) -> None:
    page = admin_page
    goto(page, server, f"cameras/{server.camera_id}/calibration")
    stage = stage_of(page)
    page.get_by_role("button", name="Clear points").click()
    page.get_by_label("The four points are a square").check()
    clicks = [click_at(page, stage, fx, fy)
              for fx, fy in ((0.3, 0.5), (0.6, 0.5), (0.65, 0.8), (0.25, 0.8))]
    page.get_by_label("Square side (m)").fill("2.5")

    page.get_by_role("button", name="Preview").click()
    error = page.get_by_test_id("preview-error")
    expect(error).to_have_text(re.compile(r"^\d+(\.\d+)? (px|m)$"), timeout=PAGE_READY_MS)
    birdseye = page.get_by_role("img", name=re.compile("Bird's-eye view"))
    expect(birdseye).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", birdseye.element_handle()) > 0
    shoot(page, "calibration-preview")

    page.get_by_role("button", name="Save calibration").click()
    expect(page.get_by_role("status").filter(has_text="Calibration saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    saved = api_json(server, "GET", f"/cameras/{server.camera_id}/calibration")
    assert isinstance(saved, dict)
    assert saved["floor_points_m"] == [[0, 0], [2.5, 0], [2.5, 2.5], [0, 2.5]], saved
    assert all(near(p, c) for p, c in zip(saved["image_points"], clicks, strict=True)), saved
    assert saved["reprojection_error_m"] is not None
    expect(page.get_by_test_id("stored-error")).to_have_text(
        f"{saved['reprojection_error_m']:.3f} m")


def test_area_rules_edited_in_the_schedule(admin_page: Page, server: Server) -> None:
    areas = api_json(server, "GET", "/areas")
    assert isinstance(areas, list) and areas, "the test configuration has an area"
    area = areas[0]
    label = area["name"] or area["id"]
    before = api_json(server, "GET", f"/areas/{area['id']}/occupancy_rules")
    assert isinstance(before, dict)
    try:
        page = admin_page
        goto(page, server, "areas")
        card = page.get_by_role("article", name=re.compile(re.escape(label)))
        # Start from an empty schedule, then add two rules row by row.
        while card.get_by_role("button", name=re.compile(r"^Remove rule")).count():
            card.get_by_role("button", name=re.compile(r"^Remove rule")).first.click()
        card.get_by_role("button", name="Add rule").click()  # Mon-Fri 09:00-18:00 by default
        card.get_by_label("Rule 1 Friday").uncheck()
        card.get_by_label("Rule 1 from").fill("08:30")
        card.get_by_label("Rule 1 to").fill("17:00")
        card.get_by_label("Rule 1 max people").fill("12")
        card.get_by_role("button", name="Add rule").click()
        for day in ("Monday", "Tuesday", "Wednesday", "Thursday"):
            card.get_by_label(f"Rule 2 {day}").uncheck()
        card.get_by_label("Rule 2 Saturday").check()
        card.get_by_label("Rule 2 Sunday").check()
        card.get_by_label("Rule 2 from").fill("20:00")
        card.get_by_label("Rule 2 to").fill("00:00")  # midnight at the end of the day
        card.get_by_label("Rule 2 max people").fill("3")
        shoot(page, "areas-rules")
        card.get_by_role("button", name=f"Save rules of {label}").click()
        expect(card.get_by_role("status")).to_have_text("Occupancy rules saved.",
                                                        timeout=PAGE_READY_MS)
        rules = api_json(server, "GET", f"/areas/{area['id']}/occupancy_rules")
        assert isinstance(rules, dict)
        assert rules["rules"] == [
            {"days": ["Mon", "Tue", "Wed", "Thu"], "start": "08:30", "end": "17:00",
             "limit": 12},
            {"days": ["Fri", "Sat", "Sun"], "start": "20:00", "end": "24:00", "limit": 3},
        ], rules

        # Overlapping rules: the server's reason is shown and nothing changes.
        card.get_by_label("Rule 2 Thursday").check()
        card.get_by_label("Rule 2 from").fill("16:00")
        card.get_by_role("button", name=f"Save rules of {label}").click()
        expect(card.get_by_role("alert")).to_contain_text("overlaps", timeout=PAGE_READY_MS)
        assert api_json(server, "GET", f"/areas/{area['id']}/occupancy_rules") == rules
    finally:
        api_json(server, "PUT", f"/areas/{area['id']}/occupancy_rules", before["rules"])


def test_viewer_sees_the_drawing_pages_read_only(viewer_page: Page, server: Server) -> None:
    page = viewer_page
    goto(page, server, f"cameras/{server.camera_id}/draw")
    stage = page.get_by_role("application", name=re.compile(r"^Picture of camera"))
    expect(stage).to_have_attribute("aria-disabled", "true")
    for name in ("Draw counting line", "Draw region of interest", "Save"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    goto(page, server, f"cameras/{server.camera_id}/calibration")
    for name in ("Preview", "Save calibration", "Delete calibration"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    goto(page, server, "areas")
    expect(page.get_by_role("button", name="Add area")).to_be_disabled()
    expect(page.get_by_role("button", name=re.compile(r"^Save rules of"))).not_to_have_count(0)
    for button in page.get_by_role("button", name=re.compile(r"^(Save|Delete|Remove)")).all():
        expect(button).to_be_disabled()


def test_an_area_added_and_deleted(admin_page: Page, server: Server) -> None:
    page = admin_page
    goto(page, server, "areas")
    try:
        page.get_by_role("button", name="Add area").click()
        form = page.get_by_role("form", name="New area")
        form.get_by_label("Area name").fill("Test hall")
        form.get_by_role("group", name="Cameras of the new area").get_by_label(
            re.compile(re.escape(server.camera_id))).check()
        form.get_by_label("Occupancy threshold").fill("7")
        form.get_by_role("button", name="Add area").click()
        card = page.get_by_role("article", name=re.compile(r"^Test hall"))
        expect(card).to_be_visible(timeout=PAGE_READY_MS)
        areas = api_json(server, "GET", "/areas")
        assert isinstance(areas, list)
        added = [a for a in areas if a["name"] == "Test hall"]
        assert len(added) == 1, areas
        assert added[0]["cameras"] == [server.camera_id]
        assert added[0]["occupancy_threshold"] == 7

        page.once("dialog", lambda dialog: dialog.accept())
        card.get_by_role("button", name="Delete area Test hall").click()
        expect(card).to_have_count(0, timeout=PAGE_READY_MS)
        areas = api_json(server, "GET", "/areas")
        assert isinstance(areas, list)
        assert not [a for a in areas if a["name"] == "Test hall"], areas
    finally:
        areas = api_json(server, "GET", "/areas")
        assert isinstance(areas, list)
        for area in areas:
            if area["name"] == "Test hall":
                api_json(server, "DELETE", f"/areas/{area['id']}")
