"""Error answers that are short and never echo the request back.

FastAPI's own 422 lists every problem with the input that caused it. Input is the
attacker's to choose: a NaN or 1e309 in it could not be written as JSON (a 500), and
a long key or value came back whole (a 500 KB answer to a 500 KB body). Here a 422
says where each problem is and what it is, for the first few, in bounded text.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_PROBLEMS = 10     # problems listed in one answer
MAX_MESSAGE = 300     # characters of one problem's message
MAX_LOCATION = 40     # characters of one part of its location (a key may be any length)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _message(problem: dict) -> str:
    # pydantic prefixes the messages of our own validators; the reader needs only ours.
    return _cut(str(problem["msg"]).removeprefix("Value error, "), MAX_MESSAGE)


def _location(part):
    return part if isinstance(part, int) else _cut(str(part), MAX_LOCATION)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    detail = [{"loc": [_location(part) for part in problem["loc"]],
               "msg": _message(problem), "type": problem["type"]}
              for problem in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        detail.append({"loc": ["body"], "msg": f"and {len(problems) - MAX_PROBLEMS} more "
                                               "problems", "type": "more"})
    return JSONResponse({"detail": detail}, status_code=422)
