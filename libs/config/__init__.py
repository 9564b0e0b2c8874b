"""Typed, validated configuration read from the INI files users edit.

``load_config(path)`` returns a :class:`~libs.config.models.LookoutConfig` or raises
:class:`~libs.config.errors.ConfigError` naming file, section, key and the expected form.
``save_config_changes`` writes changes atomically and keeps the user's comments.  A file being
saved by hand is read only once whole (:class:`~libs.config.io.ConfigBusy` if it never settles).
"""

from libs.config.errors import ConfigError
from libs.config.io import ConfigBusy
from libs.config.loader import load_config, parse_config_text
from libs.config.models import LookoutConfig
from libs.config.writer import ConfigChange, save_config_changes

__all__ = [
    "ConfigBusy",
    "ConfigChange",
    "ConfigError",
    "LookoutConfig",
    "load_config",
    "parse_config_text",
    "save_config_changes",
]
