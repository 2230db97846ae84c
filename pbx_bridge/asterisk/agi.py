"""FastAGI server on `panoramisk.fast_agi`, hardened for what res_agi really sends.

panoramisk's `Application` does the routing; what it leaves out, measured against
Asterisk 20.20.1, is handled here:

- **Unsolicited `HANGUP`.** When the channel hangs up during a session, res_agi
  sends a lone `HANGUP` line *before the reply to the next command*. panoramisk
  reads it as the reply and leaves the real one in the buffer, so every later reply
  is off by one. `AgiSession.command` notes the hang-up and reads on to the reply.
- **Multi-line usage errors.** A `520-` reply runs until `520 End of proper usage.`
  and may arrive across several reads; panoramisk reads one extra line only.
- **Garbage and dead peers.** A reply that is not `NNN ...` raises `AgiProtocolError`
  (panoramisk raises ValueError from int('')); every read has a timeout; an env block
  that never ends or EOF before it closes the socket instead of spinning (panoramisk
  loops forever on EOF).
- **Handlers must be coroutines.** panoramisk wraps plain functions with
  `asyncio.coroutine`, which Python 3.11 no longer has: we refuse them up front.
- **Hang-up during a command.** `200 result=-1` (panoramisk: AGIAppError), `511`
  on a dead channel, EOF, or a seen `HANGUP` line all become `AgiHangup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

log = logging.getLogger(__name__)

MAX_ENV_BYTES = 64 * 1024
_REPLY = re.compile(r"^(\d{3})([ -])(.*)$")


class AgiError(Exception):
    """A FastAGI command failed."""


class AgiHangup(AgiError):
    """The channel is gone (caller hung up, or the socket closed)."""


class AgiCommandError(AgiError):
    """Asterisk refused the command (510 unknown, 520 usage, other codes)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class AgiProtocolError(AgiError):
    """What came back is not FastAGI."""


@dataclass(frozen=True)
class AgiReply:
    """A `200` reply: `result` and its parenthesised `data`, plus extra key=values
    (`endpos`). `timeout` is True for `result= (timeout)` (GET DATA)."""

    result: str
    data: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    timeout: bool = False
    raw: str = ""

    @property
    def number(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0


def parse_reply(line: str) -> AgiReply:
    """Parse one `200 ...` line via panoramisk's parser, guarded."""
    try:
        parsed = parse_agi_result(line)
    except (ValueError, TypeError, AttributeError) as exc:
        raise AgiProtocolError(f"not a FastAGI reply: {line!r}") from exc
    if parsed.get("error") in ("AGIAppError", "AGIResultHangup"):
        raise AgiHangup(parsed.get("msg", "hangup"))
    value, data = parsed.get("result", ("", ""))
    extra = {k: v[0] for k, v in parsed.items() if isinstance(v, tuple) and k != "result"}
    return AgiReply(result=value, data=data, extra=extra, timeout="(timeout)" in line, raw=line)


class AgiSession(Request):
    """One FastAGI connection: the `agi_*` env and a command/reply channel."""

    def __init__(
        self,
        app: Application,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        reply_timeout: float = 3600.0,
    ) -> None:
        super().__init__(app, headers, reader, writer)
        self.reply_timeout = reply_timeout
        self.hung_up = False  # Asterisk told us (HANGUP line / 511) the channel is gone
        self.closed = False  # the socket is gone
        self._lock = asyncio.Lock()

    @property
    def env(self) -> dict[str, str]:
        return self.headers

    @property
    def args(self) -> list[str]:
        """`AGI(agi://host/route,arg1,arg2)` arguments, in order."""
        out = []
        i = 1
        while f"agi_arg_{i}" in self.headers:
            out.append(self.headers[f"agi_arg_{i}"])
            i += 1
        return out

    async def send_command(self, command: str) -> dict[str, Any]:  # panoramisk's API
        reply = await self.command(command)
        return {"status_code": 200, "result": (reply.result, reply.data), "msg": reply.raw}

    async def command(self, command: str, *, reply_timeout: float | None = None) -> AgiReply:
        """Send one command and return its 200 reply; raise on anything else."""
        if "\n" in command or "\r" in command:
            raise ValueError(f"AGI command must be one line: {command!r}")
        if self.closed:
            raise AgiHangup("FastAGI socket closed")
        async with self._lock:
            try:
                self.writer.write(command.encode(self.encoding) + b"\n")
                await self.writer.drain()
                return await asyncio.wait_for(
                    self._read_reply(command), reply_timeout or self.reply_timeout
                )
            except TimeoutError as exc:
                self.closed = True
                raise AgiHangup(f"no reply to {command!r} in time") from exc
            except (ConnectionError, OSError) as exc:
                self.closed = True
                raise AgiHangup(f"FastAGI socket lost: {exc}") from exc

    async def _readline(self) -> str:
        raw = await self.reader.readline()
        if not raw:
            self.closed = True
            raise AgiHangup("FastAGI socket closed by Asterisk")
        return raw.decode(self.encoding, "replace").rstrip("\r\n")

    async def _read_reply(self, command: str) -> AgiReply:
        while True:
            line = await self._readline()
            if line == "HANGUP":
                self.hung_up = True  # unsolicited; the real reply follows
                continue
            if not line:
                continue
            match = _REPLY.match(line)
            if match is None:
                raise AgiProtocolError(f"garbage in reply to {command!r}: {line[:80]!r}")
            code, sep, text = int(match.group(1)), match.group(2), match.group(3)
            if code == 100:  # "100 result=0 Trying..."
                continue
            if sep == "-":
                lines = [text]
                while True:
                    more = await self._readline()
                    if more.startswith(f"{code} "):
                        lines.append(more[4:])
                        break
                    lines.append(more)
                raise AgiCommandError(code, "\n".join(lines))
            if code == 200:
                return parse_reply(line)
            if code == 511:
                self.hung_up = True
                raise AgiHangup(f"{command!r}: {text}")
            raise AgiCommandError(code, text)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()


AgiRoute = Callable[[AgiSession], Awaitable[None]]


class AgiServer(Application):
    """panoramisk's FastAGI `Application` with a robust connection handler."""

    def __init__(self, *, env_timeout: float = 10.0, reply_timeout: float = 3600.0) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.env_timeout = env_timeout
        self.reply_timeout = reply_timeout
        self.sessions: set[AgiSession] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.rejected = 0
        self._server: asyncio.base_events.Server | None = None

    def add_route(self, path: str, endpoint: AgiRoute) -> None:
        if not asyncio.iscoroutinefunction(endpoint):
            # panoramisk would call asyncio.coroutine(), gone in Python 3.11
            raise TypeError(f"FastAGI route {path!r} needs an async handler, got {endpoint!r}")
        super().add_route(path.strip("/"), endpoint)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self.handler, host, port)
        bound = self._server.sockets[0].getsockname()[1]
        log.info("FastAGI listening on %s:%s", host, bound)
        return int(bound)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        # Sessions still running (a caller in the IVR) end now, rather than be cancelled
        # by the loop's shutdown, which asyncio's stream callback logs as an error.
        handlers = [t for t in self._handlers if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _read_env(self, reader: asyncio.StreamReader) -> dict[str, str]:
        env: dict[str, str] = {}
        size = 0
        while True:
            raw = await reader.readline()
            if not raw:
                raise AgiProtocolError("EOF before the end of the agi_* environment")
            size += len(raw)
            if size > MAX_ENV_BYTES:
                raise AgiProtocolError("agi_* environment too large")
            line = raw.decode(self.default_encoding, "replace").rstrip("\r\n")
            if not line:
                if not env:
                    raise AgiProtocolError("empty agi_* environment")
                return env
            key, sep, value = line.partition(": ")
            if not sep or not key.startswith("agi_"):
                raise AgiProtocolError(f"not an agi_* line: {line[:80]!r}")
            env[key] = value

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            env = await asyncio.wait_for(self._read_env(reader), self.env_timeout)
        except (TimeoutError, AgiProtocolError, ConnectionError, OSError) as exc:
            self.rejected += 1
            log.warning("FastAGI: dropped connection from %r: %s", peer, exc)
            writer.close()
            return
        script = env.get("agi_network_script", "").split("?", 1)[0].strip("/")
        route = self._route.get(script)
        if route is None:
            self.rejected += 1
            log.error("FastAGI: no route %r (request %r)", script, env.get("agi_request"))
            writer.close()
            return
        session = AgiSession(self, env, reader, writer, reply_timeout=self.reply_timeout)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await route(session)
        except AgiHangup as exc:
            log.info("FastAGI %s on %s: channel gone (%s)", script, env.get("agi_channel"), exc)
        except asyncio.CancelledError:
            # Only `stop()` (or the loop's shutdown) cancels a connection's task, and
            # nothing awaits it: end quietly, the session is closed below.
            log.info("FastAGI %s on %s: stopped", script, env.get("agi_channel"))
        except Exception:
            log.exception("FastAGI route %r failed on %s", script, env.get("agi_channel"))
        finally:
            self.sessions.discard(session)
            if task is not None:
                self._handlers.discard(task)
            session.close()
