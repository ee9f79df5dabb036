"""The one place that gathers the plug-ins: every algorithm of relgan/algorithms (each module registers its own)
and every metric of relgan/metrics/registry.py, handed to the config engine of relgan/config.py.

Load configs here: ``load_config`` and ``config_from_dict`` check a config against every plug-in there is, at the
time of the call (an algorithm defined later, in a test say, counts as soon as its class exists).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from relgan.algorithms import registered
from relgan.config import Catalogue, Config, build_config, read_config
from relgan.config import describe_keys as describe
from relgan.errors import ConfigError
from relgan.metrics.registry import METRICS


def catalogue() -> Catalogue:
    """Every algorithm and metric, as the config engine knows them."""
    algorithms = {name: cls.spec() for name, cls in registered().items()}
    _check_shared_options(algorithms.values())
    return Catalogue(algorithms, {name: metric.spec() for name, metric in METRICS.items()})


def _check_shared_options(specs: Any) -> None:
    """Two algorithms may declare an option of the same name only as the same setting: the key then means one
    thing in every config."""
    seen: dict[str, tuple[str, Any, Any]] = {}
    for spec in specs:
        for option in dataclasses.fields(spec.options):
            declared = (option.type, option.default)
            if option.name in seen and seen[option.name][1:] != declared:
                raise ConfigError(
                    f"adversarial.{option.name} is declared twice, differently: by {seen[option.name][0]} and by "
                    f"{spec.name} (give one of them another name)"
                )
            seen.setdefault(option.name, (spec.name, *declared))


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply ``key=value`` overrides, validate."""
    return read_config(path, overrides, catalogue=catalogue())


def config_from_dict(raw: dict[str, Any], where: str) -> Config:
    """Build and validate a config from an already-parsed mapping (e.g. a run's saved config)."""
    return build_config(raw, where, catalogue=catalogue())


def describe_keys() -> str:
    """Every config key, algorithm and metric, for ``--help``."""
    return describe(catalogue())
