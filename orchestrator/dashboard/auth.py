"""Who may see the dashboard, and as whom: holders of a token, each a named user.

Scripts and Prometheus send their token as `Authorization: Bearer <token>`. A browser signs in
once (the sign-in form, or a link with `?token=`) and then carries a session cookie: a random
id the server keeps (see `sessions`), never the token. The cookie is HttpOnly, SameSite=Lax
and Secure unless DSR_DASHBOARD_COOKIE_SECURE=false (plain HTTP on loopback: `dsr up`).
Signing out ends the session on the server. Wrong tokens are limited per client address
(10 a minute by default; then 429 with Retry-After). Without any token the dashboard serves
no one, unless anonymous access was asked for explicitly (`dsr demo` on loopback, or behind a
proxy that authenticates).
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from orchestrator.dashboard.sessions import (
    FailureLimit,
    Sessions,
    SessionSettings,
    Users,
    safe_next,
)

COOKIE = "dsr_dashboard"
#: Where the signed-in user's name is kept on an aiohttp request.
USER = web.RequestKey("dsr_user", str)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HSTS = "max-age=31536000"


class Auth:
    """Checks requests against the users' tokens and the sessions they started."""

    def __init__(self, users: Users, settings: SessionSettings) -> None:
        self.users = users
        self.sessions = Sessions(
            idle=settings.session_idle_minutes * 60, lifetime=settings.session_max_hours * 3600
        )
        self.failures = FailureLimit(settings.sign_in_failures_per_minute)
        self.cookie_secure = settings.cookie_secure
        self._proxies = settings.proxies()

    @property
    def anonymous(self) -> bool:
        """True when no token is needed."""
        return self.users.anonymous

    # -- where a request comes from ---------------------------------------------------------

    def _from_proxy(self, request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(peer in network for network in self._proxies)

    def client(self, request: web.Request) -> str:
        """The client's address: the peer's, or the last X-Forwarded-For hop a trusted proxy
        added (a client's own X-Forwarded-For is ignored)."""
        if self._from_proxy(request):
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
            if hops and hops[-1]:
                return hops[-1]
        return request.remote or "unknown"

    def is_secure(self, request: web.Request) -> bool:
        """True over TLS, or when a trusted proxy says the browser used HTTPS."""
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https" and self._from_proxy(request)

    # -- tokens and sessions ----------------------------------------------------------------

    def retry_after(self, request: web.Request) -> int | None:
        """Seconds this client must wait after too many wrong tokens, or None."""
        return self.failures.retry_after(self.client(request))

    async def user_of_token(self, request: web.Request, token: str | None) -> str | None:
        """The user `token` belongs to; a wrong one counts against the client's address."""
        user = await asyncio.to_thread(self.users.user_of, (token or "").strip())
        if user is None:
            self.failures.failed(self.client(request))
        return user

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        """The token of an `Authorization: Bearer` header, if there is one."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None

    def session_user(self, request: web.Request) -> str | None:
        """The user of the request's session cookie, if it is live.

        A cookie alone does not allow a state-changing request from another site."""
        user = self.sessions.user(request.cookies.get(COOKIE))
        if user is None:
            return None
        return user if request.method in _SAFE_METHODS or same_origin(request) else None

    def sign_in(self, response: web.StreamResponse, request: web.Request, user: str) -> None:
        """Start a session for `user` and set its cookie on `response`."""
        self.sessions.end(request.cookies.get(COOKIE))  # a new id at each sign-in (fixation)
        response.set_cookie(
            COOKIE,
            self.sessions.start(user),
            max_age=int(self.sessions.lifetime),
            httponly=True,
            samesite="Lax",
            secure=self.cookie_secure,
            path="/",
        )

    def sign_out(self, response: web.StreamResponse, request: web.Request) -> None:
        """End the request's session on the server and remove its cookie."""
        self.sessions.end(request.cookies.get(COOKIE))
        response.del_cookie(COOKIE, path="/")


def same_origin(request: web.Request) -> bool:
    """True unless the browser says the request comes from another site."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request: those send Origin on POST
    return urlsplit(origin).netloc == request.host


def local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else '/': never redirect elsewhere."""
    return safe_next(target)


__all__ = ["COOKIE", "HSTS", "USER", "Auth", "local_path", "same_origin"]
