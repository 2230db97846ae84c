"""Centrale's configuration: schema, loader with file:line errors, validation, reload."""

from config.errors import ConfigError, ConfigIssue
from config.loader import LoadedConfig, load_config, load_config_with_sources
from config.schema import CentraleConfig

__all__ = [
    "CentraleConfig",
    "ConfigError",
    "ConfigIssue",
    "LoadedConfig",
    "load_config",
    "load_config_with_sources",
]
