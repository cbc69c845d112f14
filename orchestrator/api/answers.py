"""`JsonAnswer`: Starlette's `JSONResponse`, rendered by one encoder made once.

`JSONResponse.render` calls `json.dumps` with options other than the defaults, and `json.dumps`
then makes a new `JSONEncoder` for every answer. Every API answer is JSON (a webhook delivery's
201 among them), so this one keeps an encoder with the same options: the same bytes, the same
headers, without an encoder made per answer.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

# The options `JSONResponse.render` passes to `json.dumps`.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class JsonAnswer(JSONResponse):
    """A `JSONResponse` whose body is the same bytes, encoded without a new encoder each."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")
