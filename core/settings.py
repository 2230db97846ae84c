"""Process settings from the environment: what differs per node and must not be in
the reviewed config files (database and Redis URLs carry passwords)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    config_dir: str = "examples/demo"
    database_url: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = "centrale"  # key prefix: several sites can share one Redis
    node_id: str = "node-1"
    log_format: str = "json"  # json | text
    pid_file: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: str | None) -> Settings:
        env = dict(os.environ) if env is None else env
        values = {
            "config_dir": env.get("CENTRALE_CONFIG", cls.config_dir),
            "database_url": env.get("CENTRALE_DATABASE_URL") or None,
            "redis_url": env.get("CENTRALE_REDIS_URL") or None,
            "redis_prefix": env.get("CENTRALE_REDIS_PREFIX") or cls.redis_prefix,
            "node_id": env.get("CENTRALE_NODE_ID") or f"{socket.gethostname()}-{os.getpid()}",
            "log_format": env.get("CENTRALE_LOG_FORMAT", cls.log_format),
            "pid_file": env.get("CENTRALE_PID_FILE") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
