"""Security headers on every response, and the guard that turns away requests from
other sites and other host names (CrossSiteGuard, below).

The page loads nothing but its own files and talks to nothing but its own server,
and has no inline scripts, handlers or styles, so its Content-Security-Policy can be
strict: no 'unsafe-inline', no 'unsafe-eval'. FastAPI's /docs and /redoc pages are
the exception: they are made of an inline script and a CDN's files, so they get a
policy that allows exactly that, and nothing else on the site does.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit

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


# -- requests from other sites and other host names (issue 11) -------------------------------
#
# What this takes from Jupyter Server, which faces the same threats (a local server that
# a page on any other site can send requests to) -- facts read in jupyter_server's
# base/handlers.py, serverapp.py and log.py, not its code:
# - check_host: the Host header, its port removed and an IPv6 address's brackets
#   dropped, must be a loopback address or a name in `local_hostnames` (default
#   "localhost"), else 403: that is its answer to DNS rebinding. Jupyter switches the
#   check off when it listens on every interface (allow_remote_access defaults to True
#   then); here it stays on, and only local names pass unless CNN_LIVE_ALLOWED_HOSTS
#   names more.
# - check_origin: a request without Origin passes (scripts, curl); with one, its
#   host:port must equal the Host header or match `allow_origin`. Here the scheme must
#   match too, and Sec-Fetch-Site (which Jupyter does not read) must say same-origin.
# - Jupyter backs that with an XSRF cookie on every request that is not GET/HEAD/OPTIONS,
#   except token-authenticated ones (an Authorization header cannot cross sites without
#   a CORS preflight). This server has no cookies and no login, so instead every such
#   request must carry a Content-Type that neither an HTML form nor a no-cors fetch can
#   send (application/json; application/octet-stream for a model file): another site's
#   page would need a CORS preflight for it, and this server never grants one.
# - log.py scrubs URL parameters whose name contains "token" from the access log;
#   RedactTokens does that to uvicorn's access log.

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Always answered to: a DNS-rebinding page can only make the browser send its own name.
LOCAL_NAMES = frozenset({"localhost"})
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "*"})  # a bind address that is no name
ALLOWED_HOSTS_VARIABLE = "CNN_LIVE_ALLOWED_HOSTS"
ALLOWED_ORIGINS_VARIABLE = "CNN_LIVE_ALLOWED_ORIGINS"
JSON, OCTETS = "application/json", "application/octet-stream"
# The one state-changing route whose body is not JSON: the model file itself.
BINARY_BODY_PATHS = {"/api/model": OCTETS, "/api/drawings/import": OCTETS}
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})  # none: typed by the user
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
DEFAULT_PORTS = {"http": 80, "https": 443}

log = logging.getLogger("cnn_live.security")


def host_name(value: str) -> str | None:
    """The name in a Host header: lower case, without its port, an IP address in its
    usual form (an IPv6 one without brackets); None when it is not a host at all."""
    value = value.strip().lower()
    if value.startswith("["):
        address, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _ip(address, version=6)
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return _ip(name, version=4) or (name if _HOST_NAME.fullmatch(name) else None)


def _ip(text: str, version: int) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_allowed_hosts(raw: str) -> tuple[str, ...]:
    """CNN_LIVE_ALLOWED_HOSTS: comma-separated host names or addresses, without ports
    ("*" for any). Raises ValueError with a message for anything else."""
    hosts = []
    for item in raw.split(","):
        entry = item.strip()
        if entry == "*":
            hosts.append(entry)
            continue
        if not entry:
            raise ValueError(f"{ALLOWED_HOSTS_VARIABLE} has an empty entry in {raw!r}: "
                             "give host names separated by commas")
        if "://" in entry or "/" in entry:
            raise ValueError(f"{ALLOWED_HOSTS_VARIABLE}: {entry!r} is a URL; give the host "
                             "name alone, as in cnn.example.org")
        name = _allowed_host(entry)
        if name is None:
            raise ValueError(f"{ALLOWED_HOSTS_VARIABLE}: {entry!r} is not a host name or an "
                             "IP address (leave the port out: every port is allowed)")
        hosts.append(name)
    return tuple(hosts)


def _allowed_host(entry: str) -> str | None:
    """An allow-list entry as host_name() gives it, or None; unlike a Host header it
    has no port, and an IPv6 address may come without brackets."""
    if entry.startswith("[") and entry.endswith("]"):
        return _ip(entry[1:-1], version=6)
    if ":" in entry:
        return _ip(entry, version=6)
    return host_name(entry)


def parse_allowed_origins(raw: str) -> tuple[str, ...]:
    """CNN_LIVE_ALLOWED_ORIGINS: comma-separated origins (scheme://host[:port]) whose
    pages may change state besides the server's own. Raises ValueError for junk."""
    origins = []
    for item in raw.split(","):
        entry = item.strip()
        parsed = _origin(entry)
        if parsed is None:
            raise ValueError(f"{ALLOWED_ORIGINS_VARIABLE}: {entry!r} is not an origin; give "
                             "scheme://host[:port], as in https://cnn.example.org, with no path")
        origins.append(_format_origin(parsed))
    return tuple(origins)


def _origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header's value, the port filled in for the
    scheme's default; None for anything else ("null", a path, another scheme)."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username or parts.password):
        return None
    name = host_name(parts.netloc)
    if name is None:
        return None
    return parts.scheme, name, port or DEFAULT_PORTS[parts.scheme]


def _format_origin(origin: tuple[str, str, int]) -> str:
    scheme, name, port = origin
    host = f"[{name}]" if ":" in name else name
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class HostAllowList:
    """The host names this server answers to (against DNS rebinding): localhost, every
    loopback address, the address it listens on when that is one address (not 0.0.0.0
    or ::), and the names of CNN_LIVE_ALLOWED_HOSTS; "*" there allows any."""
    names: frozenset[str]
    any: bool = False

    @classmethod
    def for_server(cls, bind_host: str, configured: tuple[str, ...]) -> "HostAllowList":
        names = set(LOCAL_NAMES) | {name for name in configured if name != "*"}
        bind_host = bind_host.strip().lower()
        bound = _allowed_host(bind_host) if bind_host not in ANY_ADDRESS else None
        if bound:
            names.add(bound)
        return cls(frozenset(names), any="*" in configured)

    def allows(self, name: str | None) -> bool:
        if self.any:
            return True
        return name is not None and (name in self.names or _is_loopback(name))


class CrossSiteGuard:
    """Pure ASGI middleware (it must not buffer the event stream): turns away, before
    the app reads anything,
    - any request whose Host is not one this server answers to (403): DNS rebinding;
    - a request that changes state (any method but GET, HEAD, OPTIONS) sent by a page of
      another origin, as its Origin or Sec-Fetch-Site header shows (403);
    - such a request without Content-Type: application/json (application/octet-stream
      for a model file), the one thing no form and no no-cors fetch can send (415).
    Requests without Origin and Sec-Fetch-Site (scripts, curl) pass the origin check: a
    browser sends at least one of them with every cross-origin POST."""

    def __init__(self, app, settings) -> None:
        self.app = app
        self.hosts = HostAllowList.for_server(settings.host, settings.allowed_hosts)
        self.allowed_origins = frozenset(_origin(o) for o in settings.allowed_origins)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self.refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        log.warning("refused %s %s: %s", scope["method"], scope["path"], detail)
        await _send_error(send, status, detail)

    def refusal(self, scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) when the request must be turned away; None to let it in."""
        host = headers.get("host", "")
        if not self.hosts.allows(host_name(host)):
            named = f"the host name {host!r}" if host else "a request without a Host header"
            return 403, (f"this server does not answer to {named} (a guard against DNS "
                         f"rebinding): if it should, add the name to {ALLOWED_HOSTS_VARIABLE}")
        if scope["method"] in SAFE_METHODS:
            return None
        return self.cross_site(scope, headers) or _wrong_content_type(scope, headers)

    def cross_site(self, scope, headers: dict[str, str]) -> tuple[int, str] | None:
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.strip().lower() not in SAME_ORIGIN_FETCH_SITES:
            return 403, (f"the browser says this request comes from a page of another site "
                         f"(Sec-Fetch-Site: {fetch_site}): only this server's own page may "
                         f"change its state")
        origin = headers.get("origin")
        if origin is None:
            return None
        own = _origin(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
        sender = _origin(origin)
        if sender is not None and (sender == own or sender in self.allowed_origins):
            return None
        return 403, (f"a page of another origin ({origin}) may not change this server's "
                     f"state; if that page should, add its origin to "
                     f"{ALLOWED_ORIGINS_VARIABLE}")


def required_content_type(path: str) -> str:
    """The media type a state-changing request to `path` must declare."""
    return BINARY_BODY_PATHS.get(path, JSON)


def _wrong_content_type(scope, headers: dict[str, str]) -> tuple[int, str] | None:
    expected = required_content_type(scope["path"])
    given = headers.get("content-type")
    media_type = (given or "").partition(";")[0].strip().lower()
    if media_type == expected:
        return None
    got = f"got {given!r}" if given is not None else "got none"
    return 415, (f"{scope['method']} {scope['path']} needs Content-Type: {expected} (even "
                 f"without a body), {got}: a form or another site's page cannot send "
                 f"that type, so a request that changes state must")


def _headers(scope) -> dict[str, str]:
    """The request's headers by lower-case name. A header sent twice keeps both values,
    joined by a comma, which no check accepts for the four read here."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in found and name in ("host", "origin", "sec-fetch-site", "content-type"):
            value = f"{found[name]}, {value}"
        found[name] = value
    return found


async def _send_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- secrets out of the access log ------------------------------------------------------------

REDACTED = "[redacted]"


def redact_query_tokens(text: str) -> str:
    """`text` (a path with its query) with the value of every query parameter whose
    name contains "token" (decoded, any case: ?to%6Ben= too) replaced by [redacted]."""
    path, question, query = text.partition("?")
    if not question:
        return text
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        if "token" in unquote_plus(name).lower():
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


class RedactTokens(logging.Filter):
    """A logging filter for uvicorn's access log, whose lines carry each request's path
    with its query string: EventSource sends the token as ?token=, and it must not land
    in a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a
                                                  for a in record.args):
            record.args = tuple(redact_query_tokens(a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_tokens_in_access_log() -> None:
    """RedactTokens on uvicorn's access logger itself, once: it then holds however uvicorn
    was started (`uvicorn app.main:app` too; `cnn-live serve` also sets it on the handler
    from the first line on). Called at startup, after uvicorn configured its logging."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
