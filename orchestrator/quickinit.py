"""A quicker `__init__` for the frozen records made by the hundred thousand.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`, one
call per field. Arming 100,000 sensors makes a task instance, a try and a trigger record for
each (and announces a `TaskChanged`), and re-arming them after a restart reads as many: the
setattr calls were about half of making each. `quick_init` replaces that `__init__` with one
that writes the same values into the instance's `__dict__` directly. The class stays what
`@dataclass` made it (frozen: setting a field still raises; equality, hash, repr, `asdict` and
`replace` unchanged).

Only for plain records: keyword-only fields with plain defaults, no `__post_init__`, no
`default_factory`, no slots. Anything else is refused when the class is defined.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give the frozen dataclass `cls` an `__init__` without a setattr call per field."""
    _check_plain(cls)
    defaults: dict[str, Any] = {}
    parameters, lines = [], []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.default is dataclasses.MISSING:
            parameters.append(field.name)
        else:
            defaults[f"_default_{field.name}"] = field.default
            parameters.append(f"{field.name}=_default_{field.name}")
        lines.append(f"    values[{field.name!r}] = {field.name}")
    source = (
        f"def __init__(self, *, {', '.join(parameters)}):\n"
        "    values = self.__dict__\n" + "\n".join(lines) + "\n"
    )
    namespace = dict(defaults)
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
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"quick_init takes plain defaults; {field.name} has a factory")
