"""The Settings page's Notifications card in a real Chromium: an admin sends a test e-mail to an
address; the processor (``lookout run``, its LOOKOUT_SMTP_* environment naming the session's
aiosmtpd server: STARTTLS with a CA made for the test, a login) delivers it, the page says so,
and the message arrives once, to that address. With the SMTP server stopped, the page shows
the API's 502 and its reason. The card's keys carry the config models' descriptions as hints.
An admin stores a Slack incoming webhook (a local receiver that answers like Slack): the URL is
never shown back, "Send a test to Slack" reaches the receiver in the channel set, and revoking
forgets it.
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from libs.config.models import AppConfig
from tests.browser.harness import PAGE_READY_MS, Server, goto, shoot, watch_of
from tests.notify_servers import SlackReceiver, SmtpServer, wait_until

TO = "store-manager@example.com"


def test_an_admin_sends_a_test_email_from_the_notifications_card(
        admin_page: Page, server: Server, smtp: SmtpServer) -> None:
    page = admin_page
    goto(page, server, "settings")
    notify = page.get_by_role("region", name="Notifications")
    # The [App] keys, with the model's own description as their hint.
    channel_hint = AppConfig.model_fields["slack_channel"].description
    assert channel_hint
    expect(notify.get_by_label("SlackChannel", exact=True)).to_have_accessible_description(
        channel_hint)
    # No webhook URL yet: nothing to send a Slack test with, and the page says why.
    slack = notify.get_by_role("article", name=re.compile(r"^Slack"))
    expect(slack.get_by_role("button", name="Send a test to Slack")).to_be_disabled()
    expect(slack.get_by_text("Save a webhook URL first.")).to_be_visible()

    mail = notify.get_by_role("article", name=re.compile(r"^E-mail"))
    before = len(smtp.got())
    mail.get_by_label("Send a test e-mail to").fill(TO)
    mail.get_by_role("button", name="Send a test e-mail").click()
    expect(mail.get_by_role("status").filter(has_text="Test sent")).to_be_visible(
        timeout=PAGE_READY_MS)
    wait_until(lambda: len(smtp.got()) > before, 10, "the test e-mail")
    got = smtp.got()[before:]
    assert len(got) == 1, [m["Subject"] for m in got]
    assert got[0]["To"] == TO
    assert smtp.envelopes[-1][1] == [TO] and smtp.envelopes[-1][2]  # to TO, over TLS
    shoot(page, "settings-notifications")

    # The server is gone: the page shows the API's 502 and the reason.
    smtp.stop()
    try:
        mail.get_by_role("button", name="Send a test e-mail").click()
        alert = mail.get_by_role("alert")
        expect(alert).to_contain_text("Test failed (502)", timeout=PAGE_READY_MS)
        expect(alert).to_contain_text(re.compile(r"refused|connect|unreachable", re.I))
    finally:
        smtp.start()
    assert len(smtp.got()) == before + 1
    # That 502 is what this step asks for; the browser logs it as a failed request.
    watch = watch_of(page)
    watch.console_errors[:] = [e for e in watch.console_errors
                               if not ("502" in e and "/notifications/email/test" in e)]


def test_an_admin_sets_the_slack_webhook_sends_a_test_and_revokes_it(
        admin_page: Page, server: Server) -> None:
    page = admin_page
    token = server.token(server.admin)
    secret_part = SlackReceiver.PATH.rsplit("/", 1)[-1]
    with SlackReceiver() as rx:
        try:
            goto(page, server, "settings")
            slack = page.get_by_role("region", name="Notifications").get_by_role(
                "article", name=re.compile(r"^Slack"))
            url_field = slack.get_by_label("Incoming webhook URL")
            url_field.fill(rx.url)
            slack.get_by_label("SlackChannel", exact=True).fill("#store-alerts")
            slack.get_by_role("button", name="Save webhook URL").click()
            expect(slack.get_by_role("status").filter(has_text="Webhook URL saved")).to_be_visible(
                timeout=PAGE_READY_MS)
            # Write-only: the field is emptied and the URL is nowhere on the page.
            expect(url_field).to_have_value("")
            expect(slack.locator("dt:text-is('Webhook URL') + dd")).to_have_text("set here")
            expect(slack.locator(".cam-state")).to_have_text("on")
            assert secret_part not in page.content()

            slack.get_by_role("button", name="Send a test to Slack").click()
            expect(slack.get_by_role("status").filter(has_text="Test sent")).to_be_visible(
                timeout=PAGE_READY_MS)
            wait_until(lambda: len(rx.got()) >= 1, 10, "the Slack test message")
            got = rx.got()
            assert len(got) == 1 and "test" in json.dumps(got[0]).lower(), got
            assert got[0].get("channel") == "#store-alerts", got

            page.once("dialog", lambda d: d.accept())
            slack.get_by_role("button", name="Revoke Slack").click()
            expect(slack.get_by_role("status").filter(has_text="forgotten")).to_be_visible(
                timeout=PAGE_READY_MS)
            expect(slack.locator("dt:text-is('Webhook URL') + dd")).to_have_text("not set")
            expect(slack.get_by_role("button", name="Send a test to Slack")).to_be_disabled()
            status, _, body = server.request("GET", "/slack/is-enabled", token=token)
            assert status == 200 and json.loads(body)["configured"] is False, body
        finally:
            server.request("PUT", "/slack/revoke", token=token)
            server.request("PUT", "/app", {"SlackChannel": None,
                                           "EnableSlackNotifications": None}, token=token)
