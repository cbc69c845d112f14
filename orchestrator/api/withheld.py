"""The daemon's environment with the webhook secrets taken out, so no task inherits them.

Tasks run in worker processes the daemon spawns, which inherit its environment, or in the
daemon itself (`async def` and in-process tasks), which share it. A `--secret-env` variable
left there would be readable by every task and printed by any task that dumps its
environment into its log. So the daemon moves each such variable out of `os.environ` into
this mapping before the first worker starts, and webhooks read their secrets here.

Also withheld: `ORCHESTRATOR_*` variables whose name says they hold a secret (`TOKEN`,
`SECRET`, `PASSWORD`, `KEY`, `CREDENTIAL`). The other `ORCHESTRATOR_*` variables are
settings (the state directory, the API's port), which a task running `orchestrator trigger`
needs to reach the same daemon, and the per-task ones (`ORCHESTRATOR_RUN_ID`, ...); they stay.

What this cannot reach: a variable first named by a webhook added while the daemon runs is
withheld at once, but worker processes started before keep their copy until replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping

_SECRET_SETTING = re.compile(r"ORCHESTRATOR_\w*(TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL)\w*")


class WithheldEnviron(Mapping[str, str]):
    """`environ` as it is, plus the variables withheld from it; a variable set again wins."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self._environ = environ
        self._withheld: dict[str, str] = {}

    def withhold(self, names: Iterable[str]) -> None:
        """Move these variables out of the environment tasks inherit, keeping their values."""
        for name in names:
            value = self._environ.pop(name, None)
            if value is not None:
                self._withheld[name] = value

    def withhold_secret_settings(self) -> None:
        """Withhold every `ORCHESTRATOR_*` variable whose name says it is a secret."""
        self.withhold([name for name in self._environ if _SECRET_SETTING.fullmatch(name)])

    def __getitem__(self, name: str) -> str:
        if name in self._environ:
            return self._environ[name]
        return self._withheld[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._environ
        yield from (name for name in self._withheld if name not in self._environ)

    def __len__(self) -> int:
        return len(set(self._environ) | set(self._withheld))


def withhold_webhook_secrets(environ: WithheldEnviron, variables: Iterable[str | None]) -> None:
    """Withhold the `--secret-env` variables of these webhooks, and the secret settings."""
    environ.withhold(name for name in variables if name is not None)
    environ.withhold_secret_settings()
