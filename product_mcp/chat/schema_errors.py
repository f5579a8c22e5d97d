"""JSON Schema violations as the sentence a person (or a model) needs: "minPrice: must be ≥ 0
(got -5)", not jsonschema's "-5 is not valid under any of the given schemas".

Why: an optional field is `anyOf: [{...}, {"type": "null"}]` in every pydantic schema, so the
raw message for any bad optional value names no reason at all. Here the null branch is set
aside and the reason from the branch that was meant is told in plain words, with the value.
Used for tool arguments (arguments.py) and for answers to a server's question (elicitation.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

SHOWN = 60  # characters of a bad value quoted back
TYPES = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def where(path: Sequence[Any], root: str) -> str:
    """`items[0].quantity`, prefixed by `root` when it is given ("content.quantity")."""
    out = root
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _sort_key(err: ValidationError) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in err.absolute_path]


def _null_branch(err: ValidationError) -> bool:
    """The "or null" half of an optional field failed (the value simply is not null)."""
    return err.validator == "type" and err.validator_value == "null"


def _meant(err: ValidationError) -> ValidationError:
    """For anyOf/oneOf, the error of the branch the value was meant for."""
    while err.validator in ("anyOf", "oneOf") and err.context:
        rest = [e for e in err.context if not _null_branch(e)]
        if not rest:
            break
        err = best_match(rest)
    return err


def _size(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def reason(err: ValidationError) -> tuple[list[Any], str]:
    """The path of the offending value and why it is wrong, in words."""
    err = _meant(err)
    path = list(err.absolute_path)
    v, got = err.validator_value, err.instance
    kind = err.validator
    if kind == "required" and isinstance(got, dict):
        missing = next((k for k in v if k not in got), None)  # type: ignore[union-attr]
        if missing is not None:
            return [*path, missing], "is required"
    if kind == "type":
        types = v if isinstance(v, list) else [v]
        want = " or ".join(TYPES.get(str(t), str(t)) for t in types)
        return path, f"must be {want} (got {shown(got)})"
    bounds = {
        "minimum": "≥",
        "maximum": "≤",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return path, f"must be {bounds[kind]} {shown(v)} (got {shown(got)})"
    if kind in ("minLength", "maxLength") and isinstance(got, str):
        least = "at least" if kind == "minLength" else "at most"
        return path, f"must be {least} {_size(v, 'character')} long (got {len(got)})"
    if kind in ("minItems", "maxItems") and isinstance(got, list):
        least = "at least" if kind == "minItems" else "at most"
        return path, f"must have {least} {_size(v, 'item')} (got {len(got)})"
    if kind == "enum" and isinstance(v, list):
        choices = ", ".join(shown(c) for c in v[:20]) + (", …" if len(v) > 20 else "")
        return path, f"must be one of {choices} (got {shown(got)})"
    if kind == "const":
        return path, f"must be {shown(v)} (got {shown(got)})"
    if kind == "multipleOf":
        return path, f"must be a multiple of {shown(v)} (got {shown(got)})"
    if kind == "pattern":
        return path, f"must match the pattern {v} (got {shown(got)})"
    if kind == "format":
        return path, f"must be a valid {v} (got {shown(got)})"
    if kind == "uniqueItems":
        return path, "must not repeat an item"
    if kind == "additionalProperties" and isinstance(got, dict):
        allowed = (err.schema or {}).get("properties") or {}
        extra = [k for k in got if k not in allowed]
        names = ", ".join(repr(k) for k in extra[:5])
        known = f" (known: {', '.join(allowed)})" if allowed else ""
        return path, f"unknown field{'s' if len(extra) > 1 else ''} {names}{known}"
    return path, err.message


def first_problem(errors: Iterable[ValidationError], root: str = "") -> str | None:
    """The first violation (in path order) as `where: reason`, or None when there is none."""
    ordered = sorted(errors, key=_sort_key)
    if not ordered:
        return None
    path, why = reason(ordered[0])
    return f"{where(path, root) or '(the arguments)'}: {why}"
