"""``/slack``: the reference system's Slack endpoints, for the notifications' incoming webhook.

The reference kept a Slack bot token; Lookout posts through an incoming webhook (see
docs/integrations/notifications.md), so ``PUT /slack/enable`` takes the webhook's URL. The
URL is a credential: it is stored owner-only in DataDirectory (never in the INI file), never
answered to anyone, admins included; reads say only whether one is set and where it comes
from. Writes are admin-only.

Also here, the "send a test" of the notifications: ``POST /slack/test`` (one message to the
webhook now) and ``POST /notifications/email/test`` (one e-mail through the SMTP server of
the environment). The notifier is not a ``[SourceLogger_N]``/``[Output_N]`` section, so the
``POST /{kind}/{name}/test`` routes do not reach it; these two do, with the same answers
(200 with what the server said, 400 when there is nothing to test with, 502 with the
reason delivery failed).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api.deps import Admin, Context, Viewer
from libs.config import ConfigChange
from libs.config.models import EMAIL_PATTERN
from libs.integrations import mail, slack
from libs.integrations.notify import send_test_email, send_test_slack
from libs.loggers import SendTestError

router = APIRouter(tags=["Slack"])
CHANNEL = r"^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"  # what Slack allows in a channel name
NOT_SET_UP = {"description": "nothing to test with: no webhook URL / no SMTP server set"}


class SlackState(BaseModel):
    enabled: bool = Field(description="[App] EnableSlackNotifications is True and a webhook "
                          "URL is set: notifications go to Slack.")
    configured: bool = Field(description="A webhook URL is set (its value is never shown).")
    source: str | None = Field(None, description="Where the URL comes from: 'api' (PUT "
                               "/slack/enable) or 'environment' (LOOKOUT_SLACK_WEBHOOK_URL).")
    channel: str = Field(description="[App] SlackChannel.")


class EnableIn(BaseModel):
    webhook_url: str = Field(description="The incoming webhook's URL (https://hooks.slack.com/"
                             "services/...). Stored owner-only, never shown back.",
                             min_length=8, max_length=2048)
    channel: str | None = Field(None, pattern=CHANNEL,
                                description="Sets [App] SlackChannel when given.")


class ChannelIn(BaseModel):
    channel: str = Field(pattern=CHANNEL, description="A channel name such as "
                         "'store-alerts' or '#store-alerts'.")


class ChannelOut(BaseModel):
    channel: str


class TestOut(BaseModel):
    ok: bool
    detail: str = Field(description="What the server answered.")


class EmailTestIn(BaseModel):
    to: list[str] = Field(default_factory=list, max_length=20, description="Addresses; empty "
                          "sends to [App] GlobalReportingEmails.")


def _state(ctx: Context) -> SlackState:
    config = ctx.config()
    source = slack.webhook_source(config)
    return SlackState(enabled=bool(config.app.enable_slack_notifications and source),
                      configured=source is not None, source=source,
                      channel=config.app.slack_channel)


@router.get("/slack/is-enabled", response_model=SlackState,
            summary="Whether Slack notifications are on (never the webhook URL)")
async def is_enabled(ctx: Context, _viewer: Viewer) -> SlackState:
    return await ctx.in_thread(_state, ctx)


@router.put("/slack/enable", response_model=SlackState,
            summary="Store the incoming webhook URL and turn Slack notifications on",
            responses={422: {"description": "not an https:// URL (http:// only for a loopback "
                             "host)"}})
async def enable(ctx: Context, _admin: Admin, body: EnableIn) -> SlackState:
    try:
        slack.check_webhook_url(body.webhook_url)
    except slack.SlackConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    values = {"EnableSlackNotifications": "True"}
    if body.channel is not None:
        values["SlackChannel"] = body.channel
    await ctx.in_thread(slack.save_webhook_url, ctx.config(), body.webhook_url)
    await ctx.save([ConfigChange("App", values)])
    return await ctx.in_thread(_state, ctx)


@router.put("/slack/revoke", response_model=SlackState,
            summary="Forget the stored webhook URL and turn Slack notifications off")
async def revoke(ctx: Context, _admin: Admin) -> SlackState:
    await ctx.in_thread(slack.forget_webhook_url, ctx.config())
    await ctx.save([ConfigChange("App", {"EnableSlackNotifications": "False"})])
    return await ctx.in_thread(_state, ctx)


@router.post("/slack/add-channel", response_model=ChannelOut,
             summary="Set [App] SlackChannel",
             description="The channel as a JSON body, or as the query parameter `channel` "
             "(Smart Social Distancing's form).")
async def add_channel(
    ctx: Context, _admin: Admin, body: ChannelIn | None = None,
    channel: Annotated[str | None, Query(pattern=CHANNEL, max_length=81)] = None,
) -> ChannelOut:
    chosen = body.channel if body is not None else channel
    if chosen is None:
        raise HTTPException(422, "give the channel: {\"channel\": ...} or ?channel=")
    await ctx.save([ConfigChange("App", {"SlackChannel": chosen})])
    return ChannelOut(channel=ctx.config().app.slack_channel)


@router.get("/slack/current-channel", response_model=ChannelOut,
            summary="[App] SlackChannel")
async def current_channel(ctx: Context, _viewer: Viewer) -> ChannelOut:
    return ChannelOut(channel=ctx.config().app.slack_channel)


@router.post("/slack/test", response_model=TestOut,
             summary="Post one test message to the Slack webhook now",
             responses={400: NOT_SET_UP,
                        502: {"description": "Slack refused or was unreachable"}})
async def test_slack(ctx: Context, _admin: Admin) -> TestOut:
    config = ctx.config()
    try:
        slack.webhook_url(config)
    except slack.SlackConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    try:
        detail = await ctx.in_thread(send_test_slack, config)
    except SendTestError as exc:
        raise HTTPException(502, str(exc)) from None
    return TestOut(ok=True, detail=detail)


@router.post("/notifications/email/test", response_model=TestOut, tags=["Notifications"],
             summary="Send one test e-mail through the SMTP server now",
             responses={400: NOT_SET_UP,
                        502: {"description": "the SMTP server refused or was unreachable"}})
async def test_email(ctx: Context, _admin: Admin, body: EmailTestIn | None = None) -> TestOut:
    config = ctx.config()
    to = (body.to if body is not None else []) or list(config.app.global_reporting_emails)
    bad = [a for a in to if not EMAIL_PATTERN.match(a)]
    if bad:
        raise HTTPException(422, f"not an e-mail address: {', '.join(bad)}")
    if not to:
        raise HTTPException(400, "no address to send to: give one, or set "
                            "GlobalReportingEmails")
    try:
        mail.smtp_settings()
    except mail.MailConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    try:
        detail = await ctx.in_thread(send_test_email, config, to)
    except SendTestError as exc:
        raise HTTPException(502, str(exc)) from None
    return TestOut(ok=True, detail=detail)
