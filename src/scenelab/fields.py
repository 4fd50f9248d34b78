"""Typed configuration fields: `option` (a dataclass field with its flag's help text), the
conversion of values from flags, YAML and checkpoints to a field's type, with clear errors, and
`override_sections`, which applies such values to a configuration of section dataclasses."""

import math
import re
from dataclasses import Field, field, fields, replace
from typing import Any, get_type_hints


def option(default: Any, help: str, **extra: Any) -> Any:
    """A config field: its default, its flag's help, and metadata: `choices`, and for numbers
    the bounds `low` and `high` (inclusive) or `above` (exclusive) that `out_of_bounds`
    checks wherever a value comes in (flag, YAML, checkpoint)."""
    return field(default=default, metadata={"help": help, **extra})


def out_of_bounds(f: Field, value: Any) -> str | None:
    """Why `value` is not allowed in the field `f`, or None. Floats must be finite; the bounds
    of numbers, and the `pattern` (a regular expression, described by `allowed`) of strings,
    come from the field's metadata."""
    meta = f.metadata
    if isinstance(value, str) and "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        return f"is not {meta['allowed']}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if "low" in meta and value < meta["low"]:
        return f"must be at least {meta['low']}"
    if "above" in meta and value <= meta["above"]:
        return f"must be greater than {meta['above']}"
    if "high" in meta and value > meta["high"]:
        return f"must be at most {meta['high']}"
    return None


def field_kind(hint: Any) -> type:
    """bool, int, float, str or tuple (of ints) for a field annotated `T` or `T | None`."""
    if hint in (tuple[int, ...], tuple[int, ...] | None):
        return tuple
    return next(t for t in (bool, int, float, str) if hint in (t, t | None))


def parse_ints(value: Any) -> tuple[int, ...]:
    """(1, 3) from "1,3", "1 3", [1, 3] or 1; () from "" (e.g. no windowed blocks)."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    elif not isinstance(value, list | tuple):
        value = [value]
    if any(isinstance(v, bool) or float(v) != int(float(v)) for v in value):
        raise ValueError
    return tuple(int(float(v)) for v in value)


def coerce_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (from YAML) checked and converted against the fields of the dataclass `cls`."""
    hints, known = get_type_hints(cls), {f.name: f for f in fields(cls)}
    return {k: coerce(known[k], hints[k], v) for k, v in values.items()}


def parse_duration(text: str) -> float:
    """Seconds from "90s", "30m", "1.5h" or a plain number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise ValueError(f"expected a duration such as 30m, 90s or 1.5h, got {text!r}") from None
    if seconds <= 0:
        raise ValueError(f"a time budget must be positive, got {text!r}")
    return seconds


def parse_number(value: Any) -> float:
    """A float from 0.03, "0.03" or a fraction such as "8/255"."""
    if isinstance(value, str) and "/" in value:
        num, den = (float(v) for v in value.split("/", 1))
        if den == 0:
            raise ValueError(f"zero denominator in {value!r}")
        return num / den
    return float(value)


def coerce(f: Field, hint: Any, value: Any) -> Any:
    """Check a value from YAML or a checkpoint against the field's type (YAML reads 1e-3 as str)."""
    kind = field_kind(hint)
    if value is None and hint is not kind:
        return value
    if kind is tuple:
        try:
            return parse_ints(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"config key {f.name!r}: expected integers such as 1,3, got {value!r}"
            ) from None
    try:
        if kind is bool and not isinstance(value, bool):
            raise ValueError
        if kind is int and (isinstance(value, bool) or float(value) != int(float(value))):
            raise ValueError
        value = parse_number(value) if kind is float else kind(value) if kind is int else value
    except (TypeError, ValueError):
        raise ValueError(
            f"config key {f.name!r}: expected {kind.__name__}, got {value!r}"
        ) from None
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        raise ValueError(f"config key {f.name!r}: {value!r} is not one of {f.metadata['choices']}")
    problem = out_of_bounds(f, value)
    if problem:
        raise ValueError(f"config key {f.name!r}: {value!r} {problem}")
    return value


def override_sections(
    config: Any, sections: dict[str, type], values: dict[str, Any]
) -> dict[str, Any]:
    """The section dataclasses of `config` (its attributes named as in `sections`), copied with
    `values` (nested by section or flat field names) replacing their fields."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in sections and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    unknown = set(flat) - {f.name for sec in sections.values() for f in fields(sec)}
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    updated = {}
    for name, cls in sections.items():
        current = getattr(config, name)
        hints = get_type_hints(cls)
        mine = {
            f.name: coerce(f, hints[f.name], flat[f.name]) for f in fields(cls) if f.name in flat
        }
        updated[name] = replace(current, **mine)
    return updated
