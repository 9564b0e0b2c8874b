"""Serve the API with uvicorn (HTTP or HTTPS), beside a running supervisor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from api.app import create_app
from libs.config import load_config

if TYPE_CHECKING:
    from processor.supervisor import Supervisor

log = logging.getLogger(__name__)


def build_server(config_path: str | Path, supervisor: Supervisor | None,
                 log_level: str = "info") -> uvicorn.Server:
    config = load_config(config_path, check_files=False)
    api = config.api
    certfile: str | None = None
    keyfile: str | None = None
    if api.ssl_enabled:
        cert = config.data_path(api.ssl_certificate_file)
        key = config.data_path(api.ssl_key_file)
        for what, path in (("SSLCertificateFile", cert), ("SSLKeyFile", key)):
            if not path.exists():
                raise FileNotFoundError(f"[API] {what}: no such file {path}")
        certfile, keyfile = str(cert), str(key)
    app = create_app(config_path, supervisor)
    cfg = uvicorn.Config(app, host=api.host, port=api.port, log_level=log_level.lower(),
                         access_log=False, proxy_headers=False, server_header=False,
                         ssl_certfile=certfile, ssl_keyfile=keyfile)
    return uvicorn.Server(cfg)


def url_of(config_path: str | Path) -> str:
    api = load_config(config_path, check_files=False).api
    scheme = "https" if api.ssl_enabled else "http"
    return f"{scheme}://{api.host}:{api.port}"
