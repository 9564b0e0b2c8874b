"""Periodic tasks run by the supervisor (``[PeriodicTask_N]``): reports, backups..."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from libs.config.models import PluginConfig
from libs.registry import Registry

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

PERIODIC_TASKS: Registry[type[PeriodicTask]] = Registry("periodic task", __name__)


class PeriodicTask(ABC):
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig, app: LookoutConfig) -> None:
        self.config = config
        self.app = app

    @property
    @abstractmethod
    def interval_seconds(self) -> float:
        """Wall-clock seconds between two runs."""

    @abstractmethod
    def run(self) -> None:
        """Do one round of work; must be safe to repeat (idempotent)."""
