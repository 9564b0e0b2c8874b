"""Typed settings of a plugin section."""

from __future__ import annotations

from typing import TypeVar

from libs.config.models import PluginConfig

C = TypeVar("C", bound=PluginConfig)


def plugin_settings(model: type[C], config: PluginConfig) -> C:
    """``config`` as ``model``: itself when the loader built it so, else re-validated."""
    if isinstance(config, model):
        return config
    return model.model_validate(config.model_dump(by_alias=True))
