"""Credentials of `kind: json` sources: token header, basic, or Airflow 3's JWT login."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from exporter.sources.base import PollError, PollReason
from exporter.sources.http import ApiResponse
from exporter.sources.http_status import AuthError

if TYPE_CHECKING:
    from exporter.sources.http import ApiClient
    from exporter.sources.json_config import JsonAuthModel


class JsonAuth:
    """Build request headers; log in for a JWT when configured and again on a 401."""

    def __init__(self, model: JsonAuthModel, extra: Mapping[str, str], *, token: str | None,
                 password: str | None) -> None:
        self._model = model
        self._extra = dict(extra)
        secret_token = model.token.get_secret_value() if model.token is not None else None
        secret_password = model.password.get_secret_value() if model.password else None
        self._token = token if token is not None else secret_token  # *_file: read by config
        self._password = password if password is not None else secret_password
        self._jwt: str | None = None
        self._client: ApiClient | None = None

    def bind(self, client: ApiClient) -> None:
        """Give the login its HTTP client (created after this object)."""
        self._client = client

    @property
    def uses_jwt(self) -> bool:
        """Tell whether credentials are exchanged for a token at POST login_path."""
        return self._model.login == "airflow-jwt" and self._model.username is not None

    async def headers(self) -> dict[str, str]:
        """Return the configured headers plus the credential header."""
        out = dict(self._extra)
        m = self._model
        if self._token is not None:
            out[m.header] = f"{m.scheme} {self._token}".strip()
        elif self.uses_jwt:
            if self._jwt is None:
                self._jwt = await self._login()
            out["Authorization"] = f"Bearer {self._jwt}"
        elif m.username is not None and self._password is not None:
            pair = f"{m.username}:{self._password}".encode()
            out["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return out

    async def _login(self) -> str:
        """Exchange username and password for a JWT (201 {access_token})."""
        if self._client is None:
            raise PollError(PollReason.INTERNAL, "json auth used before bind")
        response = await self._client.request(
            "POST", self._model.login_path, self._model.login_path, auth=False,
            json_body={"username": self._model.username, "password": self._password},
            expect=(200, 201))
        body = response.json()
        token = None
        if isinstance(body, dict):
            token = body.get("access_token") or body.get("jwt_token")
        if not isinstance(token, str) or not token:
            raise PollError(PollReason.AUTH, f"POST {self._model.login_path} gave no access_token")
        return token

    async def retrying(self, call: Callable[[], Awaitable[ApiResponse]]) -> ApiResponse:
        """Run a request; on a 401 with an expired JWT, log in again and retry once."""
        try:
            return await call()
        except AuthError as exc:
            if exc.status != 401 or not self.uses_jwt:
                raise
            self._jwt = None
            return await call()
