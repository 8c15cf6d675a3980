"""One check for the fields of the settings dataclasses (architecture, training, conversion configs).

``check_fields(config, positive_int=("hidden_size", ...), choices={"attention": ATTENTIONS}, ...)``
raises a one-line ``ValueError`` naming the first field that breaks its rule; a config's
``__post_init__`` calls it once and adds only the rules that relate two fields.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


# rule -> (test of a value, what the message says the value must be)
_RULES = {
    "positive_int": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "optional_positive_int": (lambda v: v is None or (_is_int(v) and v >= 1), "a positive integer or None"),
    "non_negative_int": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "positive": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optional_positive": (lambda v: v is None or (_is_number(v) and v > 0), "a number > 0 or None"),
    "non_negative": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "fraction": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
}


def check_fields(
    config: Any,
    *,
    positive_int: Iterable[str] = (),
    optional_positive_int: Iterable[str] = (),
    non_negative_int: Iterable[str] = (),
    positive: Iterable[str] = (),
    optional_positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    fraction: Iterable[str] = (),
    flag: Iterable[str] = (),
    choices: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Check each named field of ``config`` against its rule; a one-line ValueError for the first that breaks it."""
    named = dict(
        positive_int=positive_int, optional_positive_int=optional_positive_int, non_negative_int=non_negative_int, positive=positive,
        optional_positive=optional_positive, non_negative=non_negative, fraction=fraction, flag=flag,
    )
    for rule, names in named.items():
        test, expected = _RULES[rule]
        for name in names:
            value = getattr(config, name)
            if not test(value):
                raise ValueError(f"{name} must be {expected}, got {value!r}")
    for name, options in (choices or {}).items():
        options = tuple(options)
        value = getattr(config, name)
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
