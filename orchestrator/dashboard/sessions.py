"""Dashboard users, their sign-in sessions, and the limit on wrong sign-ins.

Users: one shared token (DSR_DASHBOARD_TOKEN; its user is DSR_DASHBOARD_OFFICER, else
"officer"), or a users file (DSR_DASHBOARD_USERS) giving each officer a token of their own::

    users:
      a.jansen: scrypt$16384$8$1$<salt>$<hash>   # python -m orchestrator.dashboard.sessions

Only a slow, salted hash of each token is kept (scrypt, RFC 7914). A session is a random id
(`secrets.token_urlsafe`) the server keeps with its user; it ends after `idle` without use,
after `lifetime` in any case, and at once on sign-out. Sessions live in the dashboard's
memory: a restart signs everyone out, and replicas do not share them (route a browser to one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: scrypt cost (N, r, p): about 16 MiB and tens of milliseconds per check (RFC 7914 §2).
_SCRYPT = (2**14, 8, 1)
_SCRYPT_MAXMEM = 64 * 1024 * 1024
#: The user of the single shared token (DSR_DASHBOARD_TOKEN) when DSR_DASHBOARD_OFFICER is unset.
SHARED_USER = "officer"


class SessionSettings(BaseSettings):
    """How the dashboard signs people in (DSR_DASHBOARD_* environment variables)."""

    model_config = SettingsConfigDict(env_prefix="DSR_DASHBOARD_", extra="ignore")

    users: Path | None = Field(
        default=None,
        description="A users file (name -> scrypt hash of that user's token); with it, each "
        "officer signs in with their own token and is recorded by name (DSR_DASHBOARD_USERS).",
    )
    cookie_secure: bool = Field(
        default=True,
        description="Mark the session cookie Secure (sent over HTTPS only). Turn off only for "
        "plain-HTTP use on loopback (`dsr up` does).",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-Proto and X-Forwarded-For are believed; from anyone else they are ignored.",
    )
    session_idle_minutes: float = Field(
        default=30.0, gt=0, description="A session unused this long ends."
    )
    session_max_hours: float = Field(
        default=12.0, gt=0, description="A session ends this long after sign-in."
    )
    sign_in_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Wrong tokens per client address per minute before refusing (429).",
    )

    def proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The trusted proxies as networks (a bare address is a /32 or /128)."""
        parts = [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]
        try:
            return [ipaddress.ip_network(p, strict=False) for p in parts]
        except ValueError:
            raise ValueError(
                "DSR_DASHBOARD_TRUSTED_PROXIES must be comma-separated IP addresses or networks"
            ) from None


class UsersFileError(ValueError):
    """The users file is missing or wrong; says what to fix (never echoes a hash or token)."""


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    """The users-file entry for `token`: `scrypt$N$r$p$<salt>$<hash>` (base64)."""
    n, r, p = _SCRYPT
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def token_matches(token: str, stored: str) -> bool:
    """True when `token` hashes to `stored` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            token.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def load_users(path: Path, check_name: Callable[[str], str | None]) -> dict[str, str]:
    """The users file: name -> token hash. `check_name` returns why a name is no staff id."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or not users:
        raise UsersFileError(f"{path}: expected 'users:' mapping each name to a token hash")
    for name, stored in users.items():
        problem = check_name(str(name))
        if problem is not None:
            raise UsersFileError(f"{path}: user {name!r} is not a staff id: {problem}")
        if not isinstance(stored, str) or not stored.startswith("scrypt$"):
            raise UsersFileError(
                f"{path}: user {name!r}: the token hash must be 'scrypt$...' "
                "(print one with `python -m orchestrator.dashboard.sessions`)"
            )
    return {str(name): str(stored) for name, stored in users.items()}


class Users:
    """Who a token belongs to: one shared token, or a token per user (hashed)."""

    def __init__(
        self, *, shared: str | None = None, shared_user: str = SHARED_USER, hashed: dict[str, str]
    ) -> None:
        self._shared = shared
        self._shared_user = shared_user
        self._hashed = hashed
        self._key = secrets.token_bytes(32)  # for the cache: no token is kept in clear
        self._cache: OrderedDict[bytes, str] = OrderedDict()

    @property
    def anonymous(self) -> bool:
        """True when no token opens the dashboard (anonymous access, on purpose)."""
        return self._shared is None and not self._hashed

    def user_of(self, token: str | None) -> str | None:
        """The user `token` signs in, or None. Checked hashes are cached (keyed), as scripts
        send their token with every request and scrypt is slow on purpose."""
        if not token:
            return None
        if self._shared is not None and hmac.compare_digest(token.encode(), self._shared.encode()):
            return self._shared_user
        mark = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        if (user := self._cache.get(mark)) is not None:
            self._cache.move_to_end(mark)
            return user
        found = next((n for n, h in self._hashed.items() if token_matches(token, h)), None)
        if found is not None:
            self._cache[mark] = found
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return found


@dataclass(slots=True)
class Session:
    """One signed-in browser."""

    user: str
    started: float
    last_used: float


class Sessions:
    """Server-side sessions by random id; ended by idle time, age or sign-out."""

    def __init__(
        self, *, idle: float, lifetime: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._clock = clock
        self._by_id: dict[bytes, Session] = {}

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode()).digest()  # memory holds no usable id

    def start(self, user: str) -> str:
        """A new session for `user`; returns its id (the cookie's value)."""
        now = self._clock()
        self._expire(now)
        session_id = secrets.token_urlsafe(32)
        self._by_id[self._key(session_id)] = Session(user, now, now)
        return session_id

    def user(self, session_id: str | None) -> str | None:
        """The user of a live session (and it counts as used), or None."""
        if not session_id:
            return None
        key = self._key(session_id)
        session = self._by_id.get(key)
        now = self._clock()
        if session is None:
            return None
        if now - session.last_used > self.idle or now - session.started > self.lifetime:
            del self._by_id[key]
            return None
        session.last_used = now
        return session.user

    def end(self, session_id: str | None) -> None:
        """End a session now (sign-out): its cookie opens nothing any more."""
        if session_id:
            self._by_id.pop(self._key(session_id), None)

    def _expire(self, now: float) -> None:
        dead = [
            k
            for k, s in self._by_id.items()
            if now - s.last_used > self.idle or now - s.started > self.lifetime
        ]
        for key in dead:
            del self._by_id[key]

    def __len__(self) -> int:
        return len(self._by_id)


class FailureLimit:
    """At most `limit` wrong sign-ins per client address in a sliding `window` (seconds)."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it may now."""
        failures = self._recent(client)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - self._clock()))

    def failed(self, client: str) -> None:
        """Count a wrong token from `client`."""
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque()
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
        failures.append(self._clock())

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures


def safe_next(target: str | None) -> str:
    """`target` when it is an absolute path on this site, else '/': never a redirect elsewhere.

    Refused: anything not starting with one '/', '//' (another host), backslashes (browsers
    read '/\\\\evil' as '//evil') and control characters (browsers drop a tab or line break,
    so '/\\t/evil.example' would become '//evil.example').
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(unicodedata.category(c) == "Cc" for c in target):
        return "/"
    return target


def main() -> None:
    """`python -m orchestrator.dashboard.sessions`: a token from stdin -> its users-file hash."""
    import sys

    token = sys.stdin.readline().strip()
    if len(token) < 16:
        raise SystemExit("give a token of at least 16 characters, e.g. `openssl rand -hex 32`")
    print(hash_token(token))


if __name__ == "__main__":
    main()


__all__ = [
    "SHARED_USER",
    "FailureLimit",
    "Session",
    "SessionSettings",
    "Sessions",
    "Users",
    "UsersFileError",
    "hash_token",
    "load_users",
    "safe_next",
    "token_matches",
]
