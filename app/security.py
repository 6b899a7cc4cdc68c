"""Security headers on every response.

The page loads nothing but its own files and talks to nothing but its own server,
and has no inline scripts, handlers or styles, so its Content-Security-Policy can be
strict: no 'unsafe-inline', no 'unsafe-eval'. FastAPI's /docs and /redoc pages are
the exception: they are made of an inline script and a CDN's files, so they get a
policy that allows exactly that, and nothing else on the site does.
"""

from __future__ import annotations

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
               "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: "
               "https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
               "base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    policy = DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]


class SecurityHeaders:
    """Pure ASGI middleware (it must not buffer the event stream): adds the headers
    to the start of every HTTP response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in names)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
