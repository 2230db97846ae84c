"""Who may log in: the users of the config, with their passwords as argon2 hashes.

A demo `password:` in the config is hashed once when the directory is built, so the
clear text is never compared or kept. The directory is rebuilt when the context's config
object changes (a reload), so a removed user loses access at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from config.schema import CentraleConfig

ROLE_RANK = {"agent": 1, "supervisor": 2, "admin": 3}

# OWASP's argon2id minimum (19 MiB, t=2): strong enough, and a log-in stays ~20 ms on 2 cores.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY_HASH = HASHER.hash("centrale-no-such-user")


@dataclass(frozen=True)
class AuthUser:
    username: str
    name: str
    role: str
    agent_id: str | None
    password_hash: str | None = None
    timezone: str | None = None  # None: the site's server.timezone
    language: str | None = None  # None: the browser's language

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def public(self) -> dict[str, object]:
        return {"username": self.username, "name": self.name, "role": self.role,
                "agent_id": self.agent_id}


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def token_digest(token: str) -> str:
    # surrogateescape: a header aiohttp could not decode must not raise (500), only miss
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class UserDirectory:
    def __init__(self, config: CentraleConfig) -> None:
        self.config = config
        self.users: dict[str, AuthUser] = {}
        self._config_tokens: dict[str, str] = {}  # sha256(token) -> username
        for u in config.users:
            if u.password_hash is not None:
                pw_hash: str | None = u.password_hash.get_secret_value()
            elif u.password is not None:
                pw_hash = hash_password(u.password.get_secret_value())
            else:
                pw_hash = None
            self.users[u.username] = AuthUser(u.username, u.name or u.username, u.role,
                                              u.agent, pw_hash, u.timezone, u.language)
            if u.api_token is not None and u.api_token.get_secret_value():
                self._config_tokens[token_digest(u.api_token.get_secret_value())] = u.username

    def get(self, username: str) -> AuthUser | None:
        return self.users.get(username)

    def by_agent(self, agent_id: str) -> AuthUser | None:
        return next((u for u in self.users.values() if u.agent_id == agent_id), None)

    def verify(self, username: str, password: str) -> AuthUser | None:
        """The user if the password is right. An unknown user costs the same time as a
        wrong password, so timing does not tell which user names exist."""
        user = self.users.get(username)
        target = user.password_hash if user and user.password_hash else _DUMMY_HASH
        try:
            HASHER.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or user.password_hash is None:
            return None
        return user

    def config_token_user(self, token: str) -> AuthUser | None:
        digest = token_digest(token)
        for known, username in self._config_tokens.items():
            if hmac.compare_digest(known, digest):
                return self.users.get(username)
        return None
