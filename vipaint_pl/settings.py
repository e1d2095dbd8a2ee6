"""Typed settings with checks: every method's config is a ``Settings`` dataclass.

A field's ``Literal`` type lists its choices and ``bounded`` gives its range; both are checked when the
config is built, so a typo or an impossible value fails at once with a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import yaml

from .errors import ConfigError


def bounded(default, low=None, high=None, low_open: bool = False):
    """A dataclass field with a range: ``low <= value`` (``<`` with ``low_open``) and ``value <= high``."""
    return dataclasses.field(default=default, metadata={"low": low, "high": high, "low_open": low_open})


def _literal_choices(tp) -> tuple | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    for arg in typing.get_args(tp):  # Optional[Literal[...]]
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


def _settings_type(tp):
    for cand in (tp, *typing.get_args(tp)):
        if isinstance(cand, type) and issubclass(cand, Settings):
            return cand
    return None


def _coerce(value, tp):
    """Values typed on the command line arrive as strings: read them as YAML scalars where a number is due."""
    if isinstance(value, str) and any(t in (int, float, bool) for t in (tp, *typing.get_args(tp))):
        return yaml.safe_load(value)
    return value


@dataclasses.dataclass
class Settings:
    """Base of every config dataclass: checks choices and ranges of its fields after construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, where = getattr(self, f.name), f"{type(self).__name__}.{f.name}"
            choices = _literal_choices(hints.get(f.name))
            if choices is not None and value is not None and value not in choices:
                raise ConfigError(f"{where} must be one of {', '.join(map(repr, choices))}; got {value!r}")
            low, high = f.metadata.get("low"), f.metadata.get("high")
            if value is None or (low is None and high is None):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            too_low = low is not None and (value <= low if f.metadata.get("low_open") else value < low)
            if too_low or (high is not None and value > high):
                lo = "" if low is None else f"{'>' if f.metadata.get('low_open') else '>='} {low}"
                hi = "" if high is None else f"<= {high}"
                raise ConfigError(f"{where} must be {' and '.join(p for p in (lo, hi) if p)}; got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None):
        """Build from a plain dict (YAML, the command line); unknown keys are refused by name."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            nested = _settings_type(hints[key])
            if nested is not None and isinstance(value, dict):
                values[key] = nested.from_dict(value)
            else:
                values[key] = _coerce(value, hints[key])
        return cls(**values)

    def replace(self, **changes):
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def quick(self, budget: int = 4):
        """A cheap version for smoke tests: every ``steps``, ``*_steps`` or ``*_iters`` count capped at ``budget``."""
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Settings):
                changes[f.name] = value.quick(budget)
            elif (f.name == "steps" or f.name.endswith(("_steps", "_iters"))) and isinstance(value, int) \
                    and not isinstance(value, bool):
                changes[f.name] = min(value, budget)
        return dataclasses.replace(self, **changes)


def merge_dicts(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied, nested dicts merged key by key (config overrides)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge_dicts(out.get(key, {}), value) if isinstance(value, dict) else value
    return out
