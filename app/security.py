"""Optional API key for the translation routes (`RETRANSLATE_API_KEY`).

Both schemes are declared to FastAPI, so the OpenAPI page documents them and its "Authorize" button works.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.errors import Unauthorized
from app.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <RETRANSLATE_API_KEY>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <RETRANSLATE_API_KEY>`")


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = bearer.credentials if bearer is not None else header_key
    # Constant-time: the comparison must not tell an attacker how much of a guess was right.
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized(
            "missing or wrong API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` with the "
            "value of RETRANSLATE_API_KEY"
        )


def check_api_key(settings: Settings, request: Request) -> None:
    """The same check as `require_api_key`, from the headers alone: run before the body is read, so that a
    keyless client costs no parsing (FastAPI reads and parses the body before it resolves dependencies)."""
    if settings.api_key is None:
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
    given = given or request.headers.get("x-api-key")
    expected = settings.api_key.get_secret_value().encode()
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized(
            "missing or wrong API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` with the "
            "value of RETRANSLATE_API_KEY"
        )
