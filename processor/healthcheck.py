"""``lookout healthcheck``: ask the running processor's ``GET /health`` (the images' HEALTHCHECK).

The address, port and scheme come from the configuration's ``[API]`` section, as ``lookout run``
serves them.  A wildcard Host (``0.0.0.0``, ``::``) is asked through the loopback address.
With ``SSLEnabled`` the answer is read over HTTPS, and the server must present the very
certificate ``SSLCertificateFile`` names (it is the only trust anchor): the check connects
through the loopback address while the certificate names the box's LAN address or host name,
so the host name is not compared, but nothing that lacks the configured certificate's key
passes.  Exit status 0 when the processor answers 200, 1 otherwise (with the reason), 2 for an
unusable configuration.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from libs.config import load_config

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


@dataclass(frozen=True)
class Probe:
    healthy: bool
    message: str


def target(config_path: str | Path) -> tuple[str, int, ssl.SSLContext | None, bool]:
    """``(host to connect to, port, TLS context or None, API enabled)`` of a configuration."""
    config = load_config(config_path, check_files=False)
    api = config.api
    host = WILDCARDS.get(api.host, api.host)
    if not api.ssl_enabled:
        return host, api.port, None, api.enabled
    cert = config.data_path(api.ssl_certificate_file)
    if not api.ssl_certificate_file or not cert.is_file():
        raise FileNotFoundError(f"[API] SSLCertificateFile: no such file {cert}")
    context = ssl.create_default_context(cafile=str(cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the served certificate itself
    context.check_hostname = False  # loopback address; the certificate names the LAN one
    return host, api.port, context, api.enabled


def probe(config_path: str | Path, timeout: float = 5.0) -> Probe:
    host, port, context, enabled = target(config_path)
    if not enabled:
        return Probe(True, "[API] Enabled = False: no API to ask; healthy while running")
    scheme = "https" if context else "http"
    url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}/health"
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read(4096)
    except ssl.SSLError as exc:
        return Probe(False, f"{url}: TLS failed ({exc.reason or exc}); the server does not "
                     "present [API] SSLCertificateFile")
    except OSError as exc:
        return Probe(False, f"{url}: {exc}")
    finally:
        conn.close()
    if resp.status == 200:
        return Probe(True, f"{url}: ok")
    try:
        reasons = json.loads(body).get("reasons", [])
    except (ValueError, AttributeError):
        reasons = []
    detail = "; ".join(str(r) for r in reasons) or body.decode(errors="replace")[:200]
    return Probe(False, f"{url}: HTTP {resp.status} {detail}".rstrip())
