"""The cameras, camera, export, users and settings pages driven in a real Chromium against the
real server: a camera is added only after its stream was checked (a dead address is refused
and nothing is saved), then appears in the grid with its live preview and status, is edited,
disabled, enabled and deleted; an export downloads a valid zip holding the camera's logs; an
admin creates a user, changes its role and password and deletes it; the settings page adds a
webhook and its "Send a test" button reaches a real receiver (and says so when it cannot).
Every test puts back what it changed, through the API."""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import PAGE_READY_MS, Account, Server, goto, shoot, watch_of
from tests.live_api import free_port
from tests.webhook_receiver import WebhookReceiver

SECOND = "h2-second-view"  # the camera the tests add
RUNNING_MS = 90_000  # a new camera connects, opens its stream and processes frames


def api(server: Server, method: str, path: str, body: object = None) -> tuple[int, object]:
    status, _, data = server.request(method, path, body, token=server.token(server.admin))
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, parsed


def writes_to(page: Page, path: str) -> list[str]:
    """The page's non-GET requests matching ``path`` ("POST /cameras", no query) since the
    test began."""
    found = []
    for write in watch_of(page).writes():
        method, url = write.split(" ", 1)
        if f"{method} {re.sub(r'^https://[^/]+|[?#].*$', '', url)}" == path:
            found.append(write)
    return found


@pytest.fixture
def remove_second_camera(server: Server) -> Iterator[None]:
    yield
    api(server, "DELETE", f"/cameras/{SECOND}")


def test_a_camera_is_added_after_its_stream_is_checked_then_edited_toggled_and_deleted(
        admin_page: Page, server: Server, remove_second_camera: None) -> None:
    page = admin_page
    goto(page, server, "cameras")
    page.get_by_role("button", name="Add camera").click()
    form = page.get_by_role("region", name="Add a camera")
    form.get_by_label("Name").fill("Second view")
    form.get_by_label("Camera id").fill(SECOND)

    # Nobody answers at this address: the check says so and nothing is saved.
    form.get_by_label("Video path or URL").fill(f"http://127.0.0.1:{free_port()}/stream.mjpg")
    form.get_by_role("button", name="Save camera").click()
    expect(form.get_by_text(re.compile(r"^The stream cannot be read: "))).to_be_visible(
        timeout=PAGE_READY_MS)
    expect(form.get_by_role("alert").filter(has_text="Not saved")).to_be_visible()
    assert len(writes_to(page, "POST /cameras/check_stream")) == 1
    assert writes_to(page, "POST /cameras") == []
    assert api(server, "GET", f"/cameras/{SECOND}")[0] == 404

    # The real camera: checked (the result is shown), then saved.
    form.get_by_label("Video path or URL").fill(server.camera_url)
    form.get_by_role("button", name="Check stream").click()
    expect(form.get_by_text(re.compile(r"The stream works: \d+\u00d7\d+"))).to_be_visible(
        timeout=PAGE_READY_MS)
    form.get_by_role("button", name="Save camera").click()
    card = page.get_by_role("article", name="Second view")
    expect(card).to_be_visible(timeout=PAGE_READY_MS)
    assert len(writes_to(page, "POST /cameras")) == 1
    status, cam = api(server, "GET", f"/cameras/{SECOND}")
    assert status == 200 and isinstance(cam, dict)
    assert cam["name"] == "Second view" and cam["video_path"] == server.camera_url
    assert cam["enabled"] is True

    # The grid shows it running, with its live preview and the numbers of its status.
    expect(card.locator(".cam-state")).to_have_text("running", timeout=RUNNING_MS)
    preview = card.get_by_role("img", name="Live preview of camera Second view")
    expect(preview).to_be_visible(timeout=RUNNING_MS)
    page.wait_for_function(
        "(el) => el.complete && el.naturalWidth > 0", arg=preview.element_handle(),
        timeout=PAGE_READY_MS)
    last_frame = card.locator("dt:text-is('Last frame') + dd")
    expect(last_frame).not_to_have_text("—", timeout=PAGE_READY_MS)
    expect(card.locator("dt:text-is('Restarts') + dd")).to_have_text(re.compile(r"^\d+$"))
    # The preview is fetched again and again (cache-busting query) while the page is open.
    seen = len([u for m, u in watch_of(page).requests if f"/cameras/{SECOND}/snapshot?t=" in u])
    page.wait_for_timeout(4500)
    again = len([u for m, u in watch_of(page).requests if f"/cameras/{SECOND}/snapshot?t=" in u])
    assert again >= seen + 1, (seen, again)
    shoot(page, "cameras-grid")

    # Edit it on its own page.
    card.get_by_role("link", name="Edit camera Second view").click()
    page.get_by_label("Name", exact=True).fill("Second view renamed")
    page.get_by_label("Tags").fill("h2, test")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    expect(page.get_by_role("heading", level=1)).to_have_text("Camera Second view renamed")
    _, cam = api(server, "GET", f"/cameras/{SECOND}")
    assert isinstance(cam, dict)
    assert cam["name"] == "Second view renamed" and cam["tags"] == ["h2", "test"]
    expect(page.get_by_role("link", name="Drawing")).to_have_attribute(
        "href", f"#/cameras/{SECOND}/draw")
    expect(page.get_by_role("link", name="Calibration")).to_have_attribute(
        "href", f"#/cameras/{SECOND}/calibration")
    shoot(page, "camera-settings")

    # A new video path is checked before it is saved: a dead one is refused, nothing is sent.
    puts = len(writes_to(page, f"PUT /cameras/{SECOND}"))
    page.get_by_label("Video path or URL").fill(f"http://127.0.0.1:{free_port()}/gone.mjpg")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert").filter(has_text="Not saved")).to_be_visible(
        timeout=PAGE_READY_MS)
    assert len(writes_to(page, f"PUT /cameras/{SECOND}")) == puts
    _, cam = api(server, "GET", f"/cameras/{SECOND}")
    assert isinstance(cam, dict) and cam["video_path"] == server.camera_url
    page.get_by_role("button", name="Undo changes").click()
    expect(page.get_by_label("Video path or URL")).to_have_value(server.camera_url)

    # Disable and enable it from the grid.
    goto(page, server, "cameras")
    card = page.get_by_role("article", name="Second view renamed")
    card.get_by_role("button", name="Disable camera Second view renamed").click()
    expect(card.get_by_role("button", name="Enable camera Second view renamed")).to_be_visible(
        timeout=PAGE_READY_MS)
    expect(card.locator(".cam-state")).to_have_text(re.compile(r"disabled|stopped"),
                                                    timeout=PAGE_READY_MS)
    _, cam = api(server, "GET", f"/cameras/{SECOND}")
    assert isinstance(cam, dict) and cam["enabled"] is False
    card.get_by_role("button", name="Enable camera Second view renamed").click()
    expect(card.get_by_role("button", name="Disable camera Second view renamed")).to_be_visible(
        timeout=PAGE_READY_MS)
    _, cam = api(server, "GET", f"/cameras/{SECOND}")
    assert isinstance(cam, dict) and cam["enabled"] is True

    # Delete it (the page asks first).
    questions: list[str] = []

    def answer(dialog: object) -> None:
        questions.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.once("dialog", answer)
    card.get_by_role("button", name="Delete camera Second view renamed").click()
    expect(card).to_have_count(0, timeout=PAGE_READY_MS)
    assert questions and SECOND in questions[0]
    assert api(server, "GET", f"/cameras/{SECOND}")[0] == 404
    expect(page.get_by_role("article", name=re.compile("PETS"))).to_be_visible()


def test_export_downloads_a_valid_zip_of_the_chosen_camera(admin_page: Page,
                                                           server: Server) -> None:
    page = admin_page
    goto(page, server, "export")
    today = datetime.now(UTC).date().isoformat()  # the server's TimeZone is UTC
    page.get_by_label("From").fill(today)
    page.get_by_label("To").fill(today)
    page.get_by_role("button", name="Clear all areas").click()
    expect(page.get_by_role("checkbox", name=re.compile("PETS"))).to_be_checked()
    expect(page.get_by_role("checkbox", name="Raw logs")).to_be_checked()
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Download zip").click()
    download = info.value
    assert download.suggested_filename == f"lookout-export_{today}_{today}.zip"
    data = Path(download.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        raw = f"cameras/{server.camera_id}/objects_log/{today}.csv"
        assert raw in names, names
        assert not [n for n in names if n.startswith("areas/")], names
        first = zf.read(raw).decode().splitlines()
        assert first and first[0].startswith("Timestamp") and len(first) > 1
    expect(page.get_by_text(re.compile(rf"Ready: lookout-export_{today}_{today}\.zip .*"
                                       rf"{len(names)} files?"))).to_be_visible()
    shoot(page, "export")


@pytest.fixture
def new_user(server: Server) -> Iterator[str]:
    name = f"h2-user-{secrets.token_hex(3)}"
    yield name
    api(server, "DELETE", f"/auth/users/{name}")


def test_an_admin_creates_a_user_changes_its_role_and_password_and_deletes_it(
        admin_page: Page, server: Server, new_user: str) -> None:
    page, name = admin_page, new_user
    first, second = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    goto(page, server, "users")
    page.get_by_label("New user name").fill(name)
    page.get_by_label("New user password").fill(first)
    page.get_by_role("button", name="Create user").click()
    row = page.get_by_role("row", name=re.compile(rf"^{re.escape(name)}\b"))
    expect(row).to_be_visible(timeout=PAGE_READY_MS)
    users = {u["username"]: u["role"] for u in api(server, "GET", "/auth/users")[1]}  # type: ignore[union-attr]
    assert users.get(name) == "viewer"
    assert server.token(Account(name, first, "viewer"))

    row.get_by_label(f"Role of {name}", exact=True).select_option("admin")
    row.get_by_role("button", name=f"Save role of {name}").click()
    expect(page.get_by_role("status").filter(has_text=f"{name} is now an admin")).to_be_visible(
        timeout=PAGE_READY_MS)
    users = {u["username"]: u["role"] for u in api(server, "GET", "/auth/users")[1]}  # type: ignore[union-attr]
    assert users.get(name) == "admin"

    row.get_by_role("button", name=f"Change password of {name}").click()
    row.get_by_label(f"New password for {name}").fill(second)
    row.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("status").filter(has_text=f"Password of {name} changed")).to_be_visible(
        timeout=PAGE_READY_MS)
    assert server.token(Account(name, second, "admin"))
    shoot(page, "users")

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Delete user {name}").click()
    expect(row).to_have_count(0, timeout=PAGE_READY_MS)
    users = {u["username"]: u["role"] for u in api(server, "GET", "/auth/users")[1]}  # type: ignore[union-attr]
    assert name not in users
    # The signed-in admin cannot delete themself: the button says so by being disabled.
    me = page.get_by_role("row", name=re.compile(rf"^{re.escape(server.admin.username)}\b"))
    expect(me.get_by_role("button", name=f"Delete user {server.admin.username}")).to_be_disabled()


@pytest.fixture
def remove_webhook_output(server: Server) -> Iterator[None]:
    yield
    api(server, "DELETE", "/outputs/web_hook_logger")


def test_settings_adds_a_webhook_and_its_test_button_reaches_the_receiver(
        admin_page: Page, server: Server, remove_webhook_output: None) -> None:
    page = admin_page
    with WebhookReceiver() as rx:
        goto(page, server, "settings")
        # A webhook without an Endpoint has nothing to test: the button says why it is off.
        cams = page.get_by_role("region", name="Camera loggers")
        hook = cams.get_by_role("article", name=re.compile(
            r"^Webhook — every camera SourceLogger_\d+ · web_hook_logger"))
        expect(hook.get_by_role("button", name=re.compile(r"^Send a test through"))) \
            .to_be_disabled()
        expect(hook.get_by_text("Set an Endpoint first")).to_be_visible()
        outputs = page.get_by_role("region", name="Processor-wide outputs")
        add = outputs.get_by_role("button", name="Add a webhook", exact=True)
        expect(add).to_have_attribute("aria-expanded", "false")
        add.click()
        expect(add).to_have_attribute("aria-expanded", "true")
        outputs.get_by_label("Endpoint URL").fill(rx.url)
        outputs.get_by_role("button", name="Add webhook").click()
        card = outputs.get_by_role("article", name=re.compile(
            r"^Webhook — every camera and area Output_\d+ · web_hook_logger"))
        expect(card).to_be_visible(timeout=PAGE_READY_MS)
        _, parts = api(server, "GET", "/outputs")
        assert isinstance(parts, list)
        assert [p["values"]["Endpoint"] for p in parts if p["name"] == "web_hook_logger"] == \
            [rx.url]

        before = len(rx.requests)
        card.get_by_role("button", name=re.compile(r"^Send a test through web_hook_logger")).click()
        expect(card.get_by_role("status").filter(has_text="Test sent")).to_be_visible(
            timeout=PAGE_READY_MS)
        rx.wait_for(lambda r: len(r.requests) > before, timeout=15, what="the test request")
        # The sink's state from GET /status: where it sends, what it delivered.
        expect(card.locator("dt:text-is('Sends to') + dd")).to_contain_text(
            f"127.0.0.1:{rx.port}", timeout=PAGE_READY_MS)
        expect(card.locator("dt:text-is('Delivered') + dd")).to_have_text(re.compile(r"^\d+$"))
        shoot(page, "settings")

        # Its keys are edited on the page and saved through the API.
        card.get_by_role("button", name=re.compile(r"^Show settings of web_hook_logger")).click()
        card.get_by_label("SendingInterval").fill("7")
        card.get_by_role("button", name="Save settings").click()
        expect(card.get_by_role("status").filter(has_text="saved")).to_be_visible(
            timeout=PAGE_READY_MS)
        _, part = api(server, "GET", "/outputs/web_hook_logger")
        assert isinstance(part, dict) and part["values"]["SendingInterval"] in ("7", "7.0")

        # The receiver is gone: the page says the test failed, and why.
        rx.stop()
        card.get_by_role("button", name=re.compile(r"^Send a test through web_hook_logger")).click()
        expect(card.get_by_role("alert")).to_be_visible(timeout=PAGE_READY_MS)
        expect(card.get_by_role("alert")).to_contain_text(re.compile(r"refused|connect|fail",
                                                                     re.I))
        # That failure is the API's answer (502 naming the reason), which the browser also
        # logs; it is what this step asks for, not a fault of the page.
        watch = watch_of(page)
        watch.console_errors[:] = [e for e in watch.console_errors
                                   if not ("502" in e and "/outputs/web_hook_logger/test" in e)]


def test_a_viewer_sees_the_pages_with_a_read_only_note(viewer_page: Page,
                                                      server: Server) -> None:
    page = viewer_page
    goto(page, server, "cameras")
    expect(page.get_by_text("You are signed in as a viewer")).to_be_visible()
    expect(page.get_by_role("button", name="Add camera")).to_be_disabled()
    card = page.get_by_role("article", name=re.compile("PETS"))
    toggle = card.get_by_role("button", name=re.compile(r"^(Disable|Enable) camera"))
    expect(toggle).to_be_disabled()
    expect(card.get_by_role("button", name=re.compile(r"^Delete camera"))).to_be_disabled()
    expect(card.get_by_role("img", name=re.compile("^Live preview of camera"))).to_be_visible(
        timeout=PAGE_READY_MS)
    goto(page, server, f"cameras/{server.camera_id}")
    expect(page.get_by_label("Video path or URL")).to_be_disabled()
    expect(page.get_by_role("button", name="Save changes")).to_be_disabled()
    goto(page, server, "users")
    expect(page.get_by_text("Only admins see and manage the users")).to_be_visible()
    goto(page, server, "settings")
    expect(page.get_by_role("button", name=re.compile(r"^Send a test")).first).to_be_disabled()
    # Export only reads: a viewer may download.
    goto(page, server, "export")
    expect(page.get_by_role("button", name="Download zip")).to_be_enabled()
