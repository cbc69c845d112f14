"""The trigger form: typed fields from a DAG's `params`, and the run `conf` they make.

Each param gets the field its default's type calls for: a checkbox for a bool, a number for
an int or float, text for a string, JSON for a list, a dict or None. A field left as it was
rendered keeps the default; the optional "conf as JSON" box, when filled, is merged over the
fields. A field missing from the form (a script posting only some) keeps its default; a bool
is a checkbox, so a missing one is false. Every value is checked against its type, and a
wrong one names the param.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import RunError

FieldKind = Literal["bool", "int", "float", "text", "json"]
CONF_JSON = "conf_json"  # the free-form box
_PREFIX = "param."  # form names of the typed fields


@dataclass(frozen=True, kw_only=True)
class Field:
    name: str  # the param's name
    form_name: str  # the input's name in the form
    kind: FieldKind
    value: str  # as the input shows it
    checked: bool = False  # a bool's checkbox


def fields_of(params: dict[str, Any]) -> list[Field]:
    return [_field(name, default) for name, default in params.items()]


def _field(name: str, default: Any) -> Field:
    form_name = _PREFIX + name
    if isinstance(default, bool):
        return Field(name=name, form_name=form_name, kind="bool", value="true", checked=default)
    if isinstance(default, int):
        return Field(name=name, form_name=form_name, kind="int", value=str(default))
    if isinstance(default, float):
        return Field(name=name, form_name=form_name, kind="float", value=repr(default))
    if isinstance(default, str):
        return Field(name=name, form_name=form_name, kind="text", value=default)
    text = json.dumps(default, default=str)
    return Field(name=name, form_name=form_name, kind="json", value=text)


def conf_from_form(params: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The run's conf: each param's field read as its type, then the JSON box over them."""
    conf: dict[str, Any] = {}
    for field in fields_of(params):
        absent = field.kind != "bool" and field.form_name not in form
        conf[field.name] = params[field.name] if absent else _read(field, form)
    extra = form.get(CONF_JSON, "").strip()
    if extra:
        try:
            value = json.loads(extra)
        except json.JSONDecodeError as error:
            raise RunError(f"the conf box is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise RunError('the conf box must hold a JSON object, such as {"day": "today"}')
        conf.update(value)
    return conf


def _read(field: Field, form: dict[str, str]) -> Any:
    sent = form.get(field.form_name)
    if field.kind == "bool":
        return sent is not None
    text = "" if sent is None else sent.strip()
    if field.kind == "text":
        return "" if sent is None else sent
    if field.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise RunError(f"param {field.name!r} must be a whole number, got {text!r}") from None
    if field.kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise RunError(f"param {field.name!r} must be a number, got {text!r}") from None
        if not math.isfinite(number):
            raise RunError(f"param {field.name!r} must be a finite number, got {text!r}")
        return number
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError as error:
        raise RunError(f"param {field.name!r} must be JSON: {error}") from None
