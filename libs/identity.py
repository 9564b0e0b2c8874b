"""This processor's name: the one value every integration names the box by.

``[App] ProcessorName`` sets it (checked against :data:`PROCESSOR_NAME_RE`); empty, it is
the host name made safe by :func:`host_processor_name`.  PostgreSQL rows, MQTT topics and
Home Assistant ids, InfluxDB tags and S3 keys all read
``config.app.processor_name_or_host``, so one box never carries two names.
"""

from __future__ import annotations

import re
import socket

# 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit: a DNS label's
# length, safe in a topic level, a tag value, a key prefix and a database column.
PROCESSOR_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
PROCESSOR_NAME_FORM = ("1 to 63 letters, digits, '.', '_' or '-', starting with a letter or "
                       "digit")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_processor_name(value: str) -> str:
    """``value`` stripped; '' stays '' (the host name); anything else must be safe."""
    value = value.strip()
    if value and not PROCESSOR_NAME_RE.fullmatch(value):
        raise ValueError(f"ProcessorName must be {PROCESSOR_NAME_FORM}")
    return value


def host_processor_name(host: str | None = None) -> str:
    """The host name as a processor name: characters outside the allowed set become '-',
    leading '.', '_', '-' go, at most 63 characters; 'lookout' if nothing is left."""
    raw = socket.gethostname() if host is None else host
    name = _UNSAFE.sub("-", raw).lstrip("._-")[:63]
    return name or "lookout"
