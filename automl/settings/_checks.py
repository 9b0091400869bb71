"""Declarative checks for settings dataclasses, in the spirit of scikit-learn's ``_parameter_constraints``.

A field states its rule next to its default::

    budget: int = field(default=500, metadata=rule(integer=True, ge=4))

and the dataclass calls :func:`check_fields` in ``__post_init__``. Types are Hydra's job (structured
configs reject a string where an int belongs); ranges, choices and cross-field rules are checked here,
once per field, and every failure is a :class:`SettingsError` naming ``<group>.<field>`` and the value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from automl.errors import AutomlError


class SettingsError(AutomlError):
    """A setting with a value outside its range or choices; the message names the setting."""


def rule(*, integer: bool = False, number: bool = False, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None, choices: Sequence[Any] | None = None,
         optional: bool = False) -> dict[str, Any]:
    """Field metadata for :func:`check_fields`: the value is an int (``integer``) or a number
    (``number``) within the bounds, or one of ``choices``; ``optional`` also allows None."""
    return {"rule": {"integer": integer, "number": number or integer or any(
        bound is not None for bound in (ge, gt, le, lt)), "ge": ge, "gt": gt, "le": le, "lt": lt,
        "choices": None if choices is None else tuple(choices), "optional": optional}}


def check_fields(obj: Any, where: str) -> None:
    """Check every field of the dataclass ``obj`` that carries a :func:`rule`."""
    for field in dataclasses.fields(obj):
        spec = field.metadata.get("rule")
        if spec is not None:
            check_value(getattr(obj, field.name), f"{where}.{field.name}" if where else field.name, **spec)


def check_value(value: Any, name: str, *, integer: bool = False, number: bool = False, ge=None, gt=None,
                le=None, lt=None, choices=None, optional: bool = False) -> None:
    """Raise :class:`SettingsError` unless ``value`` satisfies the rule (see :func:`rule`)."""
    if value is None and optional:
        return
    if choices is not None:
        if value not in choices:
            raise SettingsError(f"{name}={value!r} must be one of {list(choices)}")
        return
    if not number:
        return
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        is_number = is_number and float(value).is_integer()
    bounds = [(ge, ">=", lambda v, b: v >= b), (gt, ">", lambda v, b: v > b),
              (le, "<=", lambda v, b: v <= b), (lt, "<", lambda v, b: v < b)]
    if not is_number or not all(ok(value, bound) for bound, _, ok in bounds if bound is not None):
        limits = " and ".join(f"{op} {bound:g}" for bound, op, _ in bounds if bound is not None)
        kind = "an integer" if integer else "a number"
        raise SettingsError(f"{name}={value!r} must be {kind}{' ' + limits if limits else ''}"
                            f"{' (or null)' if optional else ''}")
