"""Vocdoni credentials: a static Bearer token, or email/password login with refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from exporter.sources.base import PollError, PollReason
from exporter.sources.http import ApiClient
from exporter.sources.http_status import AuthError
from exporter.sources.parse import ParseNotes
from exporter.sources.vocdoni_parse import parse_time

log = structlog.get_logger()

# Refresh once less than this share of the token lifetime is left ...
REFRESH_SHARE = 0.1
# ... or less than an hour (capped at half the lifetime, so short tokens are not refreshed on
# every request).
REFRESH_MARGIN = 3600.0
# After a failed refresh (API briefly down), wait this share of the margin before trying again,
# so a flaky API does not get one refresh attempt per request.
REFRESH_RETRY_SHARE = 0.1


class VocdoniAuth:
    """Provide Authorization headers; log in, refresh and re-login as the token ages."""

    def __init__(
        self,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        clock: Callable[[], float],
        source: str = "",
    ) -> None:
        self.source = source  # the source's config name, for log lines
        self._static = token
        self._email = email
        self._password = password
        self._clock = clock
        self._token: str | None = None
        self._issued = 0.0
        self._expires: float | None = None
        self._retry_refresh_at = 0.0
        self._lock = asyncio.Lock()
        self._client: ApiClient | None = None
        self.generation = 0  # bumped on every new token

    def __repr__(self) -> str:
        """Keep secrets out of reprs (tracebacks, debuggers)."""
        return f"VocdoniAuth(static={self._static is not None}, login={self.can_login})"

    @property
    def can_login(self) -> bool:
        """Tell whether a 401 can be cured by logging in again."""
        return self._static is None and bool(self._email) and self._password is not None

    def bind(self, client: ApiClient) -> None:
        """Attach the client used for /auth calls (it is built with this object's headers)."""
        self._client = client

    async def headers(self) -> dict[str, str]:
        """Return the Authorization header, logging in or refreshing first when due."""
        if self._static is not None:
            return {"Authorization": f"Bearer {self._static}"}
        if not self.can_login:
            return {}
        async with self._lock:
            if self._token is None:
                await self._login()
            elif self._refresh_due():
                await self._refresh()
        return {"Authorization": f"Bearer {self._token}"}

    async def relogin(self, generation: int) -> None:
        """Log in again after a 401, unless a concurrent request already did since `generation`."""
        async with self._lock:
            if self._token is None or generation == self.generation:
                await self._login()

    def _refresh_due(self) -> bool:
        """Tell whether the token is close enough to expiry to refresh it."""
        if self._expires is None:
            return False
        now = self._clock()
        return self._expires - now < self._margin() and now >= self._retry_refresh_at

    def _margin(self) -> float:
        """Return how long before expiry a refresh is due."""
        lifetime = max(0.0, self._expires - self._issued) if self._expires is not None else 0.0
        return max(REFRESH_SHARE * lifetime, min(REFRESH_MARGIN, lifetime / 2))

    def _client_or_fail(self) -> ApiClient:
        """Return the bound client."""
        if self._client is None:
            raise RuntimeError("VocdoniAuth used before bind()")
        return self._client

    async def _login(self) -> None:
        """POST /auth/login; a 401 here (40102, 40014) is a credentials problem."""
        self._token = None
        body = {"email": self._email, "password": self._password}
        resp = await self._client_or_fail().request(
            "POST", "/auth/login", "/auth/login", json_body=body, auth=False
        )
        self._store(resp.json())
        log.info("vocdoni_login", source=self.source, expires_in=self._expires_in())

    async def _refresh(self) -> None:
        """POST /auth/refresh with the current token; fall back to a login if refused."""
        try:
            resp = await self._client_or_fail().request(
                "POST", "/auth/refresh", "/auth/refresh", auth=False,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except AuthError:
            await self._login()
            return
        except PollError:
            if self._expires is not None and self._expires <= self._clock():
                raise
            self._retry_refresh_at = self._clock() + REFRESH_RETRY_SHARE * self._margin()
            log.warning("vocdoni_token_refresh_failed", source=self.source, token_still_valid=True,
                        expires_in=self._expires_in())
            return
        self._store(resp.json())
        log.debug("vocdoni_token_refreshed", source=self.source, expires_in=self._expires_in())

    def _store(self, body: Any) -> None:
        """Keep the token of a login/refresh answer and when it expires."""
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PollError(PollReason.SCHEMA, "vocdoni: login answer without token")
        self._token = token
        self.generation += 1
        self._issued = self._clock()
        self._retry_refresh_at = 0.0
        # sic, API spelling; unparsable = unknown lifetime: rely on re-login after a 401
        self._expires = parse_time(body.get("expirity"), "expirity", ParseNotes())

    def _expires_in(self) -> int | None:
        """Return whole seconds until expiry, for logs."""
        return None if self._expires is None else int(self._expires - self._clock())
