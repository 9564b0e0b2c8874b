"""E-mail for the notifications: the SMTP server from the environment, one message per send.

Environment (read when a message is sent, so a changed variable needs no restart of the
notifier, only of the process that holds the environment)::

    LOOKOUT_SMTP_HOST       the server's host name (required)
    LOOKOUT_SMTP_PORT       its port; default 587 (starttls), 465 (tls), 25 (plain)
    LOOKOUT_SMTP_SECURITY   starttls (default) | tls | plain
    LOOKOUT_SMTP_USER       login name; empty: no login
    LOOKOUT_SMTP_PASSWORD   its password (never logged nor shown)
    LOOKOUT_SMTP_FROM       the From address; default the user, else lookout@<host name>
    LOOKOUT_SMTP_CA_FILE    PEM file of the CA that signs the server's certificate, when it is
                            not one the system trusts (a self-signed server)
    LOOKOUT_SMTP_TIMEOUT    seconds per network operation (default 20)

``starttls`` upgrades a plain connection with STARTTLS and refuses to go on (and to log in)
when the server does not offer it; ``tls`` speaks TLS from the first byte (SMTPS). Both
verify the server's certificate and host name. ``plain`` sends in clear text and is only
accepted for a loopback server (127.0.0.1, ::1, localhost: a relay on the same box).
"""

from __future__ import annotations

import ipaddress
import os
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

ENV_HOST = "LOOKOUT_SMTP_HOST"
ENV_PORT = "LOOKOUT_SMTP_PORT"
ENV_SECURITY = "LOOKOUT_SMTP_SECURITY"
ENV_USER = "LOOKOUT_SMTP_USER"
ENV_PASSWORD = "LOOKOUT_SMTP_PASSWORD"  # the variable's name, not a password
ENV_FROM = "LOOKOUT_SMTP_FROM"
ENV_CA_FILE = "LOOKOUT_SMTP_CA_FILE"
ENV_TIMEOUT = "LOOKOUT_SMTP_TIMEOUT"
SECURITIES = ("starttls", "tls", "plain")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "plain": 25}


class MailConfigError(ValueError):
    """The SMTP environment is missing or wrong (the message says which variable)."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    user: str
    password: str
    sender: str
    ca_file: str
    timeout: float

    @property
    def shown(self) -> str:
        """Where mail goes, for status pages and errors (no credential)."""
        return f"{self.security}://{self.host}:{self.port}"


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def smtp_settings(env: dict[str, str] | None = None) -> SmtpSettings:
    """The SMTP server of the environment; :class:`MailConfigError` when unusable."""
    env = dict(os.environ) if env is None else env
    host = env.get(ENV_HOST, "").strip()
    if not host:
        raise MailConfigError(f"{ENV_HOST} is not set: no SMTP server to send e-mail with")
    security = (env.get(ENV_SECURITY, "") or "starttls").strip().lower()
    if security not in SECURITIES:
        raise MailConfigError(f"{ENV_SECURITY} must be one of {', '.join(SECURITIES)}")
    if security == "plain" and not _loopback(host):
        raise MailConfigError(f"{ENV_SECURITY}=plain is only accepted for a loopback server "
                              f"(127.0.0.1, ::1, localhost), not {host}: use starttls or tls")
    raw_port = env.get(ENV_PORT, "").strip()
    try:
        port = int(raw_port) if raw_port else DEFAULT_PORTS[security]
    except ValueError:
        raise MailConfigError(f"{ENV_PORT} is not a port number") from None
    if not 1 <= port <= 65535:
        raise MailConfigError(f"{ENV_PORT} must be from 1 to 65535")
    try:
        timeout = float(env.get(ENV_TIMEOUT, "") or 20)
    except ValueError:
        raise MailConfigError(f"{ENV_TIMEOUT} is not a number of seconds") from None
    user = env.get(ENV_USER, "")
    sender = env.get(ENV_FROM, "").strip() or (user if "@" in user else
                                               f"lookout@{socket.gethostname()}")
    ca_file = env.get(ENV_CA_FILE, "").strip()
    if ca_file and not os.path.isfile(ca_file):
        raise MailConfigError(f"{ENV_CA_FILE} names no file")
    return SmtpSettings(host, port, security, user, env.get(ENV_PASSWORD, ""), sender,
                        ca_file, timeout if timeout > 0 else 20.0)


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def build_message(sender: str, to: list[str], subject: str, text: str, html: str | None = None,
                  png: bytes | None = None, png_name: str = "chart.png",
                  message_id: str | None = None) -> EmailMessage:
    """A message with a plain-text body and, with ``html``, an HTML alternative; ``png`` is
    shown inline in the HTML (``cid:chart``) and also attached under ``png_name``."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    domain = sender.rpartition("@")[2] or None
    msg["Message-ID"] = (f"<{message_id}@{domain or 'lookout'}>" if message_id
                         else make_msgid(domain=domain))
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
        if png is not None:
            html_part = msg.get_payload()[1]  # type: ignore[index]
            assert isinstance(html_part, EmailMessage)
            html_part.add_related(png, maintype="image", subtype="png", cid="<chart>",
                                  filename=png_name, disposition="inline")
    if png is not None:
        msg.add_attachment(png, maintype="image", subtype="png", filename=png_name)
    return msg


def send_message(settings: SmtpSettings, msg: EmailMessage) -> None:
    """Send ``msg`` through the server; raises on any failure (smtplib, ssl, OSError)."""
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                context=tls_context(settings))
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        smtp.ehlo()
        if settings.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    f"{settings.shown} does not offer STARTTLS: nothing is sent in clear text")
            smtp.starttls(context=tls_context(settings))
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password)
        smtp.send_message(msg)
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def describe_error(exc: BaseException, settings: SmtpSettings | None = None) -> str:
    """A failure in words for status pages: never the password."""
    where = settings.shown if settings is not None else "the SMTP server"
    if isinstance(exc, MailConfigError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"{where}: no answer in time"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"{where}: login refused ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"{where}: recipients refused: {', '.join(exc.recipients)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{where}: answered {exc.smtp_code}"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS failed: {exc.reason or exc.__class__.__name__}"
    return f"{where}: {exc.__class__.__name__}: {exc}"
