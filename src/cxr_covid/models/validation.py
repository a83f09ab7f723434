"""The one schema check of a model record's decision rule: what `predict` will trust.

A record is written by us, or by anyone who sends a pack. Its stored temperature and operating
point decide every answer the model gives, so they are held to the same types and ranges as
the command-line options that would set them (`calibrate`, `predict --threshold`), on every
load and on import (docs/hostile-input.md, issue 22 case 6). A bad value is the record's
fault: ModelError (exit 6) with the field and the value, never a ValueError deep in `predict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# A temperature outside this range is no calibration `calibrate` fitted: it searches
# e^-5 to e^5 (0.0067 to 148, inference/calibration.py), and a tiny 1-epoch test model does
# end near 0.0067. The bounds leave a margin around that search range.
MIN_TEMPERATURE = 0.005
MAX_TEMPERATURE = 200.0


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _temperature_problem(where: str, data: Mapping[str, Any]) -> str | None:
    if "temperature" not in data:
        return None
    value = data["temperature"]
    number = _finite_number(value)
    if number is None or not MIN_TEMPERATURE <= number <= MAX_TEMPERATURE:
        return (
            f"{where}.temperature should be a number between {MIN_TEMPERATURE:g} and "
            f"{MAX_TEMPERATURE:g}, not {value!r}"
        )
    return None


def _unit_problem(where: str, value: object) -> str | None:
    number = _finite_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        return f"{where} should be a number between 0 and 1, not {value!r}"
    return None


def _operating_point_problem(point: Mapping[str, Any], classes: Sequence[str]) -> str | None:
    if not point:
        return None
    cls = point.get("class")
    if not isinstance(cls, str):
        return f"operating_point.class should be a class name, not {cls!r}"
    if cls not in classes:
        return f"operating_point.class {cls!r} is not a class of this model ({', '.join(classes)})"
    if "threshold" not in point:
        return "operating_point has no threshold"
    for key in ("threshold", "target"):
        if key in point:
            problem = _unit_problem(f"operating_point.{key}", point[key])
            if problem:
                return problem
    return _temperature_problem("operating_point", point)


def decision_rule_problem(
    calibration: object, operating_point: object, classes: Sequence[str]
) -> str | None:
    """Why a record's stored calibration or operating point cannot be used, or None.

    `calibration` and `operating_point` are the record's fields as read (JSON objects, empty
    when absent); `classes` its class list, which an operating point must name a class of."""
    if not isinstance(calibration, Mapping):
        return f"calibration should be an object, not {calibration!r}"
    if not isinstance(operating_point, Mapping):
        return f"operating_point should be an object, not {operating_point!r}"
    return _temperature_problem("calibration", calibration) or _operating_point_problem(
        operating_point, classes
    )
