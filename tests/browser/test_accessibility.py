"""axe-core finds no serious or critical accessibility violation on any main page, at desktop
and at phone width; screenshots of each page at both widths go to tests/artifacts/screenshots/
(main-<page>-desktop.png, main-<page>-phone.png) for a person to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.harness import (
    DESKTOP,
    MAIN_ROUTES,
    PHONE,
    Server,
    axe_violations,
    describe_violations,
    goto,
    shoot,
)


def shot_name(route: str) -> str:
    """"cameras/{camera}/draw" -> "main-camera-draw"."""
    parts = ["camera" if p == "{camera}" else p for p in route.split("/")]
    if len(parts) > 1 and parts[0] == "cameras":
        parts = parts[1:]
    return "main-" + "-".join(parts)


@pytest.mark.parametrize("route", MAIN_ROUTES, ids=lambda r: shot_name(r)[5:])
def test_main_page_has_no_serious_accessibility_violation(axe_page: Page, server: Server,
                                                         route: str) -> None:
    page = axe_page
    goto(page, server, route.format(camera=server.camera_id))
    shoot(page, shot_name(route))
    report = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        page.wait_for_timeout(200)
        found = axe_violations(page)
        if found:
            report.append(f"at {label} width ({size['width']} px):\n{describe_violations(found)}")
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    assert not report, f"axe-core on #/{route}:\n" + "\n".join(report)
