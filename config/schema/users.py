"""`users:` and `numbers:` — who logs in with which role, and which DID runs which flow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from config.schema.base import Ident, Strict

Role = Literal["agent", "supervisor", "admin"]


class User(Strict):
    """A user logs in to the web app. `password_hash` is an argon2 hash (make one with
    `centrale hash-password`); `password` is accepted for demos only and is hashed at
    load. An agent user names the agent it works as."""

    username: str = Field(pattern=r"^[A-Za-z0-9_.@\-]{1,64}$")
    name: str | None = None
    role: Role
    agent: Ident | None = None
    password_hash: SecretStr | None = None
    password: SecretStr | None = None
    api_token: SecretStr | None = None
    # The user's own time zone and language on the web pages; default: the site's
    # `server.timezone`, and the browser's language (nl or en).
    timezone: str | None = None
    language: Literal["nl", "en"] | None = None

    @model_validator(mode="after")
    def _agent_has_agent(self) -> User:
        if self.role == "agent" and not self.agent:
            raise ValueError("a user with role agent must name its agent")
        if self.password_hash is None and self.password is None and self.api_token is None:
            raise ValueError("a user needs password_hash, password or api_token")
        return self

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class NumberRoute(Strict):
    number: str = Field(pattern=r"^\+?[0-9]{2,20}$|^[A-Za-z0-9_.\-]{1,64}$")
    flow: Ident
    name: str | None = None
