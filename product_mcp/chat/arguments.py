"""Check a model's (or a form's) tool arguments against the tool's input schema first.

Why before the call: a clear "items[0].quantity: must be ≥ 1 (got 0)" lets the
model correct itself in the next round without a round trip to the server. A schema that
cannot be used (invalid, a dangling $ref) says nothing about the arguments: the server judges.

Numbers JSON cannot carry (NaN, an infinity: Python's JSON parser takes `NaN`, `Infinity` and
`1e400` from a model or a form) are refused first, whatever the schema: sent on, they would
reach the server as null.

The compiled validator is kept per schema object (a tool list refresh brings new ones): building
it for every call was ~10 of the ~50 µs a check costs.

No regular expression a server wrote is run here (`checker`): Python's `re` backtracks, holds
the GIL and cannot be interrupted, so `"pattern": "^(a+)+$"` against 30 characters froze web.py
for every client for half a minute. `pattern` and `patternProperties` check nothing here, and
neither do `additionalProperties` beside a `patternProperties` nor `unevaluatedProperties` in
a schema that has one anywhere (which keys the patterns take cannot be told without them).
Every other keyword is checked; the server checks its own inputs in full either way.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from product_mcp.chat.results import ToolEntry, describe_error
from product_mcp.chat.schema_errors import first_problem
from product_mcp.core.errors import encodable

log = logging.getLogger("chat")

_unusable_schemas: set[tuple[str, str]] = set()
CACHE_MAX = 1024  # compiled validators kept; the cache starts afresh when it is full
# id(schema) → (schema, its validator): the schema is held so its id cannot be reused.
_validators: dict[int, tuple[dict[str, Any], Validator]] = {}
# (jsonschema's class for a draft, whether the schema has patternProperties) → the class
# that runs no pattern (a few at most: one or two per draft)
_patternless: dict[tuple[type[Validator], bool], type[Validator]] = {}


def _unchecked(validator: Any, value: Any, instance: Any, schema: Any) -> None:
    """A keyword that checks nothing here (it would run a server's regular expression)."""
    return None


def _has_pattern_properties(schema: Any) -> bool:
    """Whether `patternProperties` appears anywhere in `schema` (a loop: schemas nest deep)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "patternProperties" in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _patternless_class(base: type[Validator], patterned: bool) -> type[Validator]:
    known = base.VALIDATORS
    additional = known.get("additionalProperties")

    def additional_properties(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        # beside patternProperties, which keys are "additional" depends on the patterns
        if additional is None or "patternProperties" in schema:
            return None
        return additional(validator, value, instance, schema)

    changed: dict[str, Any] = {
        "pattern": _unchecked,
        "patternProperties": _unchecked,
        "additionalProperties": additional_properties,
    }
    if patterned:  # evaluated keys are found through the patterns too
        changed["unevaluatedProperties"] = _unchecked
    changed = {k: f for k, f in changed.items() if k in known}
    return jsonschema.validators.extend(base, changed)  # type: ignore[no-any-return]


def checker(schema: dict[str, Any]) -> Validator:
    """A validator for a server's `schema` that runs none of the server's regular expressions
    (the module's docstring); every other keyword of the schema's draft is checked."""
    base = jsonschema.validators.validator_for(schema)
    key = (base, _has_pattern_properties(schema))
    cls = _patternless.get(key)
    if cls is None:
        cls = _patternless[key] = _patternless_class(*key)
    return cls(schema)


def validator(schema: dict[str, Any]) -> Validator:
    """The compiled validator for `schema`, built once per schema object."""
    cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    built: Validator = checker(schema)
    if len(_validators) >= CACHE_MAX:
        _validators.clear()
    _validators[id(schema)] = (schema, built)
    return built


def validate_arguments(entry: ToolEntry, args: Any) -> str | None:
    """The first schema violation as a sentence, or None when args fit the input schema."""
    if not isinstance(args, dict):
        return "arguments must be a JSON object"
    where = _unsendable(args)
    if where is not None:
        path, problem = where
        return f"invalid arguments for '{entry.name}': {path}: {problem}"
    schema = entry.input_schema
    try:
        errors = list(validator(schema).iter_errors(args))
    except Exception as e:
        # A schema jsonschema cannot use (invalid, a $ref pointing nowhere, an unknown remote
        # reference...) says nothing about the arguments: let the server judge the call.
        key = (entry.server, entry.name)
        if key not in _unusable_schemas:
            _unusable_schemas.add(key)
            log.warning(
                "tool '%s' on server '%s': input schema unusable (%s: %s); "
                "arguments go to the server unchecked",
                entry.name,
                entry.server,
                type(e).__name__,
                describe_error(e),
            )
        return None
    problem = first_problem(errors)
    return f"invalid arguments for '{entry.name}': {problem}" if problem else None


def _unsendable(args: dict[str, Any]) -> tuple[str, str] | None:
    """Where in `args` (`items[0].quantity`) the first value JSON or UTF-8 cannot carry is,
    and why: a NaN or infinite number, or text with a lone surrogate (`"\\ud800"` parses, but
    the SDK could not encode it: the whole session to that server was dropped). A loop, not
    recursion: arguments may nest as deep as the body limit allows."""
    for key in args:
        if encodable(str(key)) != str(key):
            return encodable(str(key)), "names must be valid Unicode text"
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in reversed(args.items())]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path, f"must be a finite number (got {value})"
        if isinstance(value, str) and encodable(value) != value:
            return encodable(path), "must be valid Unicode text (it holds a lone surrogate)"
        if isinstance(value, dict):
            for key in value:
                if encodable(str(key)) != str(key):
                    return encodable(f"{path}.{key}"), "names must be valid Unicode text"
            stack += [(f"{path}.{k}", v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(f"{path}[{n}]", v) for n, v in reversed(list(enumerate(value)))]
    return None
