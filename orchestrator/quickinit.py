"""A quicker `__init__` for the frozen records made by the hundred thousand.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`, one
call per field. Arming 100,000 sensors makes a task instance, a try and a trigger record for
each (and announces a `TaskChanged`), and re-arming them after a restart reads as many: the
setattr calls were about half of making each. `quick_init` replaces that `__init__` with one
that writes the same values into the instance's `__dict__` directly. The class stays what
`@dataclass` made it (frozen: setting a field still raises; equality, hash, repr, `asdict` and
`replace` unchanged).

Only for plain records: keyword-only fields with plain defaults or a `default_factory` (called
for each instance not given the field, as the dataclass's own `__init__` does), no
`__post_init__`, no slots. Anything else is refused when the class is defined.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
_MADE = object()  # the default of a field with a factory: not given, so make one


def quick_init(cls: type[T]) -> type[T]:
    """Give the frozen dataclass `cls` an `__init__` without a setattr call per field."""
    _check_plain(cls)
    namespace: dict[str, Any] = {"_MADE": _MADE}  # what the generated code refers to
    parameters, lines = [], []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        value = name
        if field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = field.default_factory
            parameters.append(f"{name}=_MADE")
            value = f"_factory_{name}() if {name} is _MADE else {name}"
        elif field.default is dataclasses.MISSING:
            parameters.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            parameters.append(f"{name}=_default_{name}")
        lines.append(f"    values[{name!r}] = {value}")
    source = (
        f"def __init__(self, *, {', '.join(parameters)}):\n"
        "    values = self.__dict__\n" + "\n".join(lines) + "\n"
    )
    exec(source, namespace)  # our own field names and defaults, as dataclasses itself does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def _check_plain(cls: type) -> None:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or hasattr(cls, "__slots__"):
        raise TypeError(f"quick_init is for frozen dataclasses without slots, not {cls!r}")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"quick_init would skip {cls.__name__}.__post_init__")
    for field in dataclasses.fields(cls):
        if not field.init or not field.kw_only:
            raise TypeError(f"quick_init takes keyword-only fields; {field.name} is not")
