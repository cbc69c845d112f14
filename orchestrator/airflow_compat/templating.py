"""Jinja templates in an operator's `template_fields`, rendered with Airflow's context.

As in Airflow: undefined names are errors (StrictUndefined), a string ending in one of the
operator's `template_ext` is the path of a template file (looked up beside the DAG file and
in `template_searchpath`), the DAG's `user_defined_macros` and `user_defined_filters` are
available, and `render_template_as_native_obj=True` renders to Python objects.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orchestrator.authoring.references import Ref

if TYPE_CHECKING:
    import jinja2

_environments: dict[tuple[int, bool], jinja2.Environment] = {}


def environment(dag: Any) -> jinja2.Environment:
    """The DAG's Jinja environment (one per DAG object and process)."""
    import jinja2
    import jinja2.nativetypes

    native = bool(getattr(dag, "render_template_as_native_obj", False))
    key = (id(dag), native)
    if key not in _environments:
        folders = [os.path.dirname(dag.site.file), *getattr(dag, "template_searchpath", [])]
        kind = jinja2.nativetypes.NativeEnvironment if native else jinja2.Environment
        env = kind(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.do"],
            cache_size=0,
        )
        env.globals.update(getattr(dag, "user_defined_macros", {}))
        env.filters.update(getattr(dag, "user_defined_filters", {}))
        env.filters.setdefault("ds", lambda value: value.strftime("%Y-%m-%d"))
        env.filters.setdefault("ds_nodash", lambda value: value.strftime("%Y%m%d"))
        _environments[key] = env
    return _environments[key]


def render_value(value: Any, context: dict[str, Any], env: Any, extensions: tuple[str, ...]) -> Any:
    """`value` with every string in it rendered (files by extension, the rest inline)."""
    if isinstance(value, str):
        if extensions and value.endswith(extensions):
            return env.get_template(value).render(**context)
        if "{{" not in value and "{%" not in value:
            return value
        return env.from_string(value).render(**context)
    if isinstance(value, Ref):
        return value
    if isinstance(value, list | tuple):
        return type(value)(render_value(item, context, env, extensions) for item in value)
    if isinstance(value, dict):
        return {key: render_value(item, context, env, extensions) for key, item in value.items()}
    return value


def render_template_fields(operator: Any, context: dict[str, Any]) -> None:
    """Render each of the operator's `template_fields` in place (on the running copy)."""
    env = environment(operator.dag)
    extensions = tuple(getattr(operator, "template_ext", ()) or ())
    for name in getattr(operator, "template_fields", ()) or ():
        value = getattr(operator, name, None)
        setattr(operator, name, render_value(value, context, env, extensions))
