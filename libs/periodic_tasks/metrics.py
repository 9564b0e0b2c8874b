"""``metrics``: recomputes every camera's and area's reports from the raw logs.

Runs every ``LiveInterval`` minutes (wall clock); each run is incremental and idempotent
(see :mod:`libs.metrics.reports`), so it is also safe to call :meth:`MetricsTask.run` once
more at shutdown.

A run that could not write some reports (disk full) says so in :attr:`MetricsTask.last_error`;
the supervisor then runs the task again soon instead of a whole interval later, and as the
state of a run is written after its reports, the next run redoes what failed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.metrics.reports import EntityResult, recompute_all
from libs.periodic_tasks import PERIODIC_TASKS, PeriodicTask

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)


class MetricsConfig(PluginConfig):
    live_interval: float = Field(
        10,
        alias="LiveInterval",
        gt=0,
        description="Minutes covered by the live report, and minutes between two runs.",
        json_schema_extra=form("a number of minutes > 0"),
    )


@PERIODIC_TASKS.register("metrics")
class MetricsTask(PeriodicTask):
    Config: ClassVar[type[PluginConfig]] = MetricsConfig

    def __init__(self, config: PluginConfig, app: LookoutConfig) -> None:
        super().__init__(config, app)
        if isinstance(config, MetricsConfig):
            self.settings = config
        else:
            self.settings = MetricsConfig.model_validate(config.model_dump(by_alias=True))
        self.last_results: list[EntityResult] = []
        self.last_error: str | None = None  # what the last run could not do (None: all done)

    @property
    def live_interval(self) -> timedelta:
        return timedelta(minutes=self.settings.live_interval)

    @property
    def interval_seconds(self) -> float:
        return self.settings.live_interval * 60.0

    def run(self) -> None:
        self.last_results = recompute_all(self.app, self.live_interval)
        failed = [r for r in self.last_results if r.error]
        self.last_error = None
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            self.last_error = f"reports of {failed[0].entity_dir.name}: {failed[0].error}{more}"
        dates = sum(len(r.recomputed_dates) for r in self.last_results)
        log.info(
            "metrics: %d cameras/areas, %d days recomputed, %d failed",
            len(self.last_results),
            dates,
            len(failed),
        )
