"""Who may see the dashboard: holders of the configured token.

Scripts and Prometheus send it as `Authorization: Bearer <token>`. A browser signs in once
(the sign-in form, or a link with `?token=`) and then carries an HttpOnly, SameSite=Strict
cookie holding a keyed hash of the token, never the token itself. Changing the token signs
every browser out. Without a token the dashboard serves no one, unless anonymous access was
asked for explicitly (`dsr demo` on loopback, or behind a proxy that authenticates).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "dsr_dashboard"
COOKIE_MAX_AGE = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Auth:
    """Checks requests against the token (None: anonymous access, on purpose)."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self._session = (
            hmac.new(token.encode(), b"dsr-dashboard-session-v1", hashlib.sha256).hexdigest()
            if token
            else None
        )

    @property
    def anonymous(self) -> bool:
        """True when no token is needed."""
        return self._token is None

    def token_ok(self, candidate: str | None) -> bool:
        """True for the configured token (compared in constant time)."""
        if self._token is None:
            return True
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self._token.encode()
        )

    def allows(self, request: web.Request) -> bool:
        """True when the request carries the token or a valid session cookie.

        A cookie alone does not allow a state-changing request from another site.
        """
        if self._token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credentials.strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        if cookie is None or self._session is None:
            return False
        if not hmac.compare_digest(cookie.encode(), self._session.encode()):
            return False
        return request.method in _SAFE_METHODS or same_origin(request)

    def sign_in(self, response: web.StreamResponse, request: web.Request) -> None:
        """Set the session cookie on `response`."""
        if self._session is None:
            return
        response.set_cookie(
            COOKIE,
            self._session,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )

    @staticmethod
    def sign_out(response: web.StreamResponse) -> None:
        """Remove the session cookie."""
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
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = ["COOKIE", "Auth", "local_path", "same_origin"]
