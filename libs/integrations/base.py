"""What the network sinks share: config pieces and the bus side of an outbox.

Every network sink (:mod:`libs.integrations.webhook`, ``mqtt``, ``redis_sink``, ``influxdb``,
``postgres``, ``s3``) has the same ``Timeout``, ``OutboxMaxBytes`` and (most) ``Kinds`` keys, the
same check of an environment variable's name, and the same way of putting into its outbox,
showing it in ``GET /status`` and closing it.  Those live here once; each sink keeps its own
defaults, descriptions, default kinds, extra status keys and client.

The config pieces are field *factories* and validator *functions*, not fields of a base
class, so every section keeps its keys in the order its own class declares them (the order
the dashboard's Settings form and ``GET /config/keys`` show).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from libs.config.models import PluginConfig, form
from libs.integrations.outbox import MIN_MAX_BYTES, Deliver, Outbox, OutboxState
from libs.records import RECORD_TYPES

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

OUTBOX_FOLDER = "processor/outbox"  # inside DataDirectory; one folder per section
CLOSE_TIMEOUT_S = 3.0
DEFAULT_OUTBOX_MAX_BYTES = 64 * 1024 * 1024
SAMPLE_KINDS = frozenset(k for k, t in RECORD_TYPES.items() if t.CATEGORY == "sample")
EVENT_KINDS = frozenset(k for k, t in RECORD_TYPES.items() if t.CATEGORY == "event")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------


def env_name_ok(value: str) -> bool:
    """Whether ``value`` can name an environment variable (letters, digits and '_', not
    starting with a digit)."""
    return ENV_NAME_RE.fullmatch(value) is not None


def split_kinds(value: str) -> list[str]:
    """The record kinds of a comma-separated ``Kinds`` value, blanks left out."""
    return [k.strip() for k in value.split(",") if k.strip()]


def check_kinds(value: str, known: Iterable[str] = RECORD_TYPES,
                problem: str = "unknown record kind(s)") -> str:
    """``value`` when every kind it lists is in ``known``; else a ValueError naming the
    bad ones and the known ones."""
    allowed = frozenset(known)
    bad = [k for k in split_kinds(value) if k not in allowed]
    if bad:
        raise ValueError(f"{problem} {', '.join(bad)}; known: {', '.join(sorted(allowed))}")
    return value


def timeout_field(default: float, description: str) -> Any:
    """A section's ``Timeout`` key: seconds > 0 to wait for the server."""
    return Field(default, alias="Timeout", gt=0, description=description,
                 json_schema_extra=form("a number of seconds > 0"))


def outbox_max_bytes_field(what: str, server: str, default: int = DEFAULT_OUTBOX_MAX_BYTES,
                           minimum: int = MIN_MAX_BYTES, folder: str = "<section>",
                           kept: str = "kept on disk") -> Any:
    """A section's ``OutboxMaxBytes`` key: ``what`` are kept on disk while ``server`` cannot
    be reached."""
    return Field(
        default, alias="OutboxMaxBytes", ge=minimum,
        description=f"Most bytes of {what} {kept} (DataDirectory/processor/outbox/"
        f"{folder}) while {server} cannot be reached; when full the oldest are dropped and "
        "counted.",
        json_schema_extra=form(f"an integer >= {minimum}"))


def kinds_field(description: str) -> Any:
    """A section's ``Kinds`` key: comma-separated record kinds, empty for the sink's
    default set."""
    return Field("", alias="Kinds", description=description,
                 json_schema_extra=form("record kinds separated by commas, or empty"))


class KindsConfig(PluginConfig):
    """A section with a ``Kinds`` key (declared by the subclass, where its order and
    description belong): checks it against :attr:`known_kinds` and gives the set to send,
    :attr:`default_kinds` when empty.  Adds no key of its own."""

    default_kinds: ClassVar[frozenset[str]] = frozenset()
    known_kinds: ClassVar[frozenset[str]] = frozenset(RECORD_TYPES)
    kinds_problem: ClassVar[str] = "unknown record kind(s)"

    if TYPE_CHECKING:
        kinds: str

    @field_validator("kinds", check_fields=False)
    @classmethod
    def _kinds(cls, value: str) -> str:
        return check_kinds(value, cls.known_kinds, cls.kinds_problem)

    def kind_set(self) -> frozenset[str]:
        return frozenset(split_kinds(self.kinds)) or self.default_kinds
# ---------------------------------------------------------------------------------------
# The bus side of a sink's outbox
# ---------------------------------------------------------------------------------------


class OutboxSink:
    """Mixin of a sink behind one :class:`Outbox` (``self.outbox``): putting with the count
    of records too big for it, the common ``GET /status`` keys, closing with a warning.
    Messages are logged on the sink module's logger (:attr:`sink_log`) under its name."""

    sink_name: ClassVar[str] = ""
    sink_log: ClassVar[logging.Logger] = log
    outbox: Outbox
    section: str
    _rejected: int  # records bigger than the whole outbox (counted as dropped)

    def _open_outbox(self, app: LookoutConfig, deliver: Deliver, target: str, *,
                     retry: tuple[float | None, float | None],
                     retry_defaults: tuple[float, float], folder: str | None = None,
                     outbox_class: type[Outbox] = Outbox, **options: Any) -> Outbox:
        """The sink's outbox in DataDirectory/:data:`OUTBOX_FOLDER`/``folder`` (default: the
        section), named after it, the sink and its ``target``; ``retry`` are the first and
        longest waits between attempts asked for (tests; None: ``retry_defaults``), the
        longest never below the first.  ``options`` go to ``outbox_class``."""
        first = retry_defaults[0] if retry[0] is None else retry[0]
        most = retry_defaults[1] if retry[1] is None else retry[1]
        where = folder or self.section
        self.outbox = outbox_class(
            app.data_path(f"{OUTBOX_FOLDER}/{where}"), deliver,
            name=f"{where} ({self.sink_name} to {target})",
            retry_first_s=first, retry_max_s=max(first, most), **options)
        return self.outbox

    def _put(self, item: Any, kind: str, what: str = "record") -> bool:
        """Put ``item`` (of a ``kind`` record) into the outbox; False once it is closed (the
        bus has let go of this sink). One too big for the outbox is counted and logged
        (the first time)."""
        try:
            self.outbox.put(item)
        except ValueError as exc:  # bigger than the whole outbox
            self._rejected += 1
            if self._rejected == 1:
                self.sink_log.error("%s [%s]: a %s %s was dropped: %s (raise OutboxMaxBytes)",
                                    self.sink_name, self.section, kind, what, exc)
        except RuntimeError:  # closed
            return False
        return True

    def _outbox_status(self, max_bytes: int, st: OutboxState | None = None) -> dict[str, Any]:
        """The outbox's keys of ``state()`` (records too big for it count as dropped)."""
        if st is None:
            st = self.outbox.state()
        return {
            "connected": st.connected,
            "queued": st.queued,
            "queued_bytes": st.queued_bytes,
            "delivered": st.delivered,
            "dropped": st.dropped + self._rejected,
            "last_error": st.last_error,
            "failures": st.failures,
            "next_retry_at": st.next_retry_at,
            "disk_bytes": st.disk_bytes,
            "max_bytes": max_bytes,
        }

    def _close_outbox(self, unfinished: str) -> bool:
        """Close the outbox within :data:`CLOSE_TIMEOUT_S`; when a delivery was still under
        way, log ``unfinished`` as a warning and return False."""
        if self.outbox.close(timeout=CLOSE_TIMEOUT_S):
            return True
        self.sink_log.warning("%s [%s]: %s", self.sink_name, self.section, unfinished)
        return False
