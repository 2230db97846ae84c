"""Fake Asterisk peers that replay recorded wire bytes (for tests and demos).

`tests/fixtures/asterisk` (copied from the team's `../shared/fixtures/asterisk`) holds
AMI and FastAGI traffic recorded from a real Asterisk 20.20.1. These fakes speak those
bytes at the socket level:

- `FakeAmiServer` listens like Asterisk's AMI: it sends the recorded banner, answers
  actions with the recorded replies for that action (only the `ActionID` is rewritten
  to the client's, as Asterisk itself would echo it), and pushes recorded event
  chunks on demand. It can refuse the login (with the recorded error and close),
  drop the socket, go silent, or send arbitrary bytes (garbage, truncated frames).
- `FakeAgiClient` connects to a FastAGI server like res_agi does: it sends the
  recorded `agi_*` environment and answers each command with the next recorded
  reply, checking the command is the recorded one.

Nothing here is imported by production code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

CRLF = b"\r\n"
FRAME_END = b"\r\n\r\n"


# --- fixture loading -------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    t: float
    conn: int
    direction: str  # "to_peer" (from Asterisk) or "from_peer" (to Asterisk)
    data: bytes


def load_chunks(path: Path) -> list[Chunk]:
    """The chunk-level capture (`jsonl/<name>.jsonl`), directions normalised:
    `from_asterisk` is what Asterisk sent, `to_asterisk` what its peer sent."""
    out: list[Chunk] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        direction = record["dir"]
        if direction.startswith("asterisk->"):
            norm = "from_asterisk"
        elif direction.endswith("->asterisk"):
            norm = "to_asterisk"
        else:
            norm = "meta"
        out.append(
            Chunk(record["t"], int(record.get("conn") or 1), norm, record["data"].encode("utf-8"))
        )
    return out


def split_frames(data: bytes) -> list[bytes]:
    """AMI messages of a chunk, each with its CRLFCRLF terminator."""
    frames = []
    for part in data.split(FRAME_END):
        if part:
            frames.append(part + FRAME_END)
    return frames


def header(frame: bytes, name: str) -> str | None:
    prefix = name.lower().encode() + b": "
    for line in frame.split(CRLF):
        if line.lower().startswith(prefix):
            return line[len(prefix) :].decode("utf-8", "replace")
    return None


def parse_headers(frame: bytes) -> dict[str, str]:
    """Headers of one frame, names lower-cased (the last one wins)."""
    headers: dict[str, str] = {}
    for line in frame.split(CRLF):
        if b": " in line:
            key, value = line.split(b": ", 1)
            headers[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace")
    return headers


def replace_action_id(frame: bytes, action_id: str) -> bytes:
    lines = frame.split(CRLF)
    for i, line in enumerate(lines):
        if line.lower().startswith(b"actionid: "):
            lines[i] = b"ActionID: " + action_id.encode()
    return CRLF.join(lines)


@dataclass
class AmiRecording:
    """One AMI capture, cut into what the fake server needs."""

    banner: bytes
    # action name (lower) -> recorded reply frames, one list per recorded action
    replies: dict[str, list[list[bytes]]]
    login_ok: list[bytes]  # the login reply chunk (response + FullyBooted + ...)
    login_refused: list[bytes]
    # unsolicited event chunks in recorded order, each chunk a list of frames
    event_chunks: list[list[bytes]] = field(default_factory=list)
    # action name (lower) -> the recorded request headers, parallel to `replies`
    requests: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, *, conn: int = 1) -> AmiRecording:
        chunks = [c for c in load_chunks(path) if c.conn == conn]
        sent_ids: dict[str, str] = {}
        sent_headers: dict[str, dict[str, str]] = {}
        banner = b""
        for chunk in chunks:
            if chunk.direction == "to_asterisk":
                for frame in split_frames(chunk.data):
                    action = header(frame, "Action")
                    action_id = header(frame, "ActionID")
                    if action and action_id:
                        sent_ids[action_id] = action.lower()
                        sent_headers[action_id] = parse_headers(frame)
        replies: dict[str, list[list[bytes]]] = defaultdict(list)
        requests: dict[str, list[dict[str, str]]] = defaultdict(list)
        by_id: dict[str, list[bytes]] = {}
        login_ok: list[bytes] = []
        login_refused: list[bytes] = []
        event_chunks: list[list[bytes]] = []
        for chunk in chunks:
            if chunk.direction != "from_asterisk" or not chunk.data:
                continue
            if chunk.data.startswith(b"Asterisk Call Manager/"):
                banner = chunk.data
                continue
            frames = split_frames(chunk.data)
            action_ids = [header(f, "ActionID") for f in frames]
            first_action = sent_ids.get(action_ids[0] or "")
            if first_action == "login":
                target = login_ok if header(frames[0], "Response") == "Success" else login_refused
                target.extend(frames)
                continue
            unsolicited: list[bytes] = []
            for frame, action_id in zip(frames, action_ids, strict=True):
                if action_id and action_id in sent_ids:
                    if action_id not in by_id:
                        by_id[action_id] = []
                        replies[sent_ids[action_id]].append(by_id[action_id])
                        requests[sent_ids[action_id]].append(sent_headers[action_id])
                    by_id[action_id].append(frame)
                else:
                    unsolicited.append(frame)
            if unsolicited:
                event_chunks.append(unsolicited)
        return cls(banner, dict(replies), login_ok, login_refused, event_chunks, dict(requests))

    def events(self) -> list[bytes]:
        return [frame for chunk in self.event_chunks for frame in chunk]


def events_named(frames: list[bytes], *names: str) -> list[bytes]:
    wanted = {n.lower() for n in names}
    return [f for f in frames if (header(f, "Event") or "").lower() in wanted]


# --- fake AMI server -------------------------------------------------------------------
ActionHandler = Callable[[dict[str, str], str], list[bytes] | None]


class FakeAmiServer:
    """A socket-level stand-in for Asterisk's AMI, replaying `recording`."""

    def __init__(self, recording: AmiRecording, *, secret: str = "ccsecret") -> None:
        self.recording = recording
        self.secret = secret
        self.refuse_login = False
        self.login_refusal_delay = 0.0
        self.silent = False  # accept bytes, answer nothing (a hung peer)
        self.received: list[dict[str, str]] = []
        self.received_raw: list[bytes] = []
        self.connections = 0
        self.handlers: dict[str, ActionHandler] = {}
        self._used: dict[tuple[str, int], int] = defaultdict(int)
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.base_events.Server | None = None
        self._logged_in = asyncio.Event()
        self.port = 0

    async def start(self) -> FakeAmiServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def on_action(self, name: str, handler: ActionHandler) -> None:
        """Answer `name` with handler(headers, action_id) -> frames (None: recorded)."""
        self.handlers[name.lower()] = handler

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.received if a.get("action", "").lower() == name.lower()]

    async def wait_logged_in(self) -> None:
        await self._logged_in.wait()

    def push(self, data: bytes) -> None:
        """Send raw bytes to every connected client."""
        for writer in self._writers:
            if not writer.is_closing():
                writer.write(data)

    def push_frames(self, frames: list[bytes]) -> None:
        self.push(b"".join(frames))

    def drop(self) -> None:
        """Close every client socket (Asterisk restarted, network cut)."""
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
        self._logged_in.clear()

    def recorded_reply(self, headers: dict[str, str], action_id: str) -> list[bytes]:
        """The recorded reply to the recorded request that best matches `headers`
        (most equal header values; among equals, the least replayed, then the first),
        with its ActionID rewritten to the client's."""
        action = headers.get("action", "").lower()
        options = self.recording.replies.get(action)
        if not options:
            return [
                ami_frame(
                    ("Response", "Error"),
                    ("ActionID", action_id),
                    (
                        "Message",
                        f"Invalid/unknown command: {action}. "
                        "Use Action: ListCommands to show available commands.",
                    ),
                )
            ]
        requests = self.recording.requests.get(action, [{}] * len(options))

        def score(i: int) -> tuple[int, int, int]:
            same = sum(
                1
                for k, v in requests[i].items()
                if k not in ("actionid", "action") and headers.get(k) == v
            )
            return (same, -self._used[(action, i)], -i)

        best = max(range(len(options)), key=score)
        self._used[(action, best)] += 1
        return [replace_action_id(frame, action_id) for frame in options[best]]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(self.recording.banner)
        buffer = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while FRAME_END in buffer:
                    frame, buffer = buffer.split(FRAME_END, 1)
                    await self._handle(frame + FRAME_END, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, frame: bytes, writer: asyncio.StreamWriter) -> None:
        headers = parse_headers(frame)
        self.received.append(headers)
        self.received_raw.append(frame)
        if self.silent:
            return
        action = headers.get("action", "").lower()
        action_id = headers.get("actionid", "")
        if action == "login":
            if self.refuse_login or headers.get("secret") != self.secret:
                await asyncio.sleep(self.login_refusal_delay)
                writer.write(
                    b"".join(replace_action_id(f, action_id) for f in self.recording.login_refused)
                )
                await writer.drain()
                writer.close()
                return
            writer.write(
                b"".join(
                    replace_action_id(f, action_id) if header(f, "ActionID") else f
                    for f in self.recording.login_ok
                )
            )
            self._logged_in.set()
            return
        handler = self.handlers.get(action)
        frames = handler(headers, action_id) if handler else None
        if frames is None:
            frames = self.recorded_reply(headers, action_id)
        writer.write(b"".join(frames))


# --- AMI frame builders in the recorded format (for state the recordings lack) ----------
def edit_frame(frame: bytes, changes: dict[str, str]) -> bytes:
    """A recorded frame with some header values replaced (same order, same CRLF)."""
    lines = frame.split(CRLF)
    for i, line in enumerate(lines):
        if b": " in line:
            key = line.split(b": ", 1)[0].decode()
            if key in changes:
                lines[i] = f"{key}: {changes[key]}".encode()
    return CRLF.join(lines)


def ami_frame(*pairs: tuple[str, str]) -> bytes:
    return CRLF.join(f"{k}: {v}".encode() for k, v in pairs) + FRAME_END


def redirect_joining_room(server: FakeAmiServer, conference: str,
                           exten: str = "conf") -> ActionHandler:
    """A Redirect handler: the recorded reply, then — for a Redirect to `exten` — a
    `ConfbridgeJoin` for each channel moved, as Asterisk 20 sends once `ConfBridge()`
    has put the channel in the room (call control waits for it)."""
    def reply(headers: dict[str, str], action_id: str) -> list[bytes]:
        frames = server.recorded_reply(headers, action_id)
        moved = [(headers.get("channel"), headers.get("exten")),
                 (headers.get("extrachannel"), headers.get("extraexten"))]
        for channel, to in moved:
            if channel and to == exten:
                frames.append(ami_frame(("Event", "ConfbridgeJoin"),
                                        ("Privilege", "call,all"),
                                        ("Conference", conference), ("Channel", channel)))
        return frames
    return reply


def core_show_channels_reply(
    recording: AmiRecording, action_id: str, channels: list[dict[str, str]]
) -> list[bytes]:
    """A CoreShowChannels reply listing `channels`: the recorded start and complete
    frames, with entries cut from the recorded `CoreShowChannel` frame."""
    recorded = recording.replies["coreshowchannels"][0]
    start = replace_action_id(recorded[0], action_id)
    template = next(f for f in recorded if header(f, "Event") == "CoreShowChannel")
    entries = []
    for chan in channels:
        lines = []
        for line in replace_action_id(template, action_id).split(CRLF):
            key = line.split(b": ", 1)[0].decode() if b": " in line else None
            if key in chan:
                lines.append(f"{key}: {chan[key]}".encode())
            else:
                lines.append(line)
        entries.append(CRLF.join(lines))
    complete = ami_frame(
        ("Event", "CoreShowChannelsComplete"),
        ("ActionID", action_id),
        ("EventList", "Complete"),
        ("ListItems", str(len(channels))),
    )
    return [start, *entries, complete]


def getvar_reply(action_id: str, variable: str, value: str | None) -> list[bytes]:
    """Getvar's reply as recorded: Success with Variable/Value, or Error No such channel."""
    if value is None:
        return [
            ami_frame(
                ("Response", "Error"), ("ActionID", action_id), ("Message", "No such channel")
            )
        ]
    return [
        ami_frame(
            ("Response", "Success"),
            ("ActionID", action_id),
            ("Variable", variable),
            ("Value", value),
        )
    ]


# --- fake AGI client (the Asterisk side of FastAGI) --------------------------------------
@dataclass
class AgiScript:
    """One recorded FastAGI session: env block, then (command, reply lines) pairs."""

    env: bytes
    steps: list[tuple[str, bytes]]

    @classmethod
    def load(cls, path: Path) -> AgiScript:
        """Parse the .txt capture: header, env block (ends with an empty line), then
        lines. A line that starts with 3 digits, or the lone HANGUP that precedes a
        reply, is Asterisk's; 520 usage continuation lines belong to their reply."""
        raw = path.read_bytes()
        body = raw.split(b"\n\n", 1)[1]  # drop the "# " header
        env, rest = body.split(b"\n\n", 1)
        lines = rest.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        steps: list[tuple[str, bytes]] = []
        i = 0
        while i < len(lines):
            command = lines[i].decode()
            i += 1
            reply = b""
            if (
                i < len(lines)
                and lines[i] == b"HANGUP"
                and i + 1 < len(lines)
                and (lines[i + 1][:3].isdigit())
            ):
                reply += b"HANGUP\n"
                i += 1
            if i < len(lines) and lines[i].startswith(b"520-"):
                # multi-line usage reply: everything up to the "520 " line
                while i < len(lines) and not lines[i].startswith(b"520 "):
                    reply += lines[i] + b"\n"
                    i += 1
            if i < len(lines):
                reply += lines[i] + b"\n"
                i += 1
            steps.append((command, reply))
        return cls(env + b"\n\n", steps)

    def env_dict(self) -> dict[str, str]:
        out = {}
        for line in self.env.decode().splitlines():
            if ": " in line:
                key, value = line.split(": ", 1)
                out[key] = value
        return out


class AgiMismatch(AssertionError):
    """The FastAGI server sent a command other than the recorded one."""


_TWO_WORD_VERBS = frozenset(
    {
        "STREAM",
        "WAIT",
        "GET",
        "SET",
        "CHANNEL",
        "SAY",
        "RECORD",
        "DATABASE",
        "CONTROL",
        "SEND",
        "RECEIVE",
        "SPEECH",
        "TDD",
    }
)


def agi_verb(command: str) -> str:
    """`STREAM FILE x ""` -> `STREAM FILE`; `ANSWER` -> `ANSWER`."""
    words = command.split()
    if not words:
        return ""
    if words[0] in _TWO_WORD_VERBS and len(words) > 1:
        return " ".join(words[:2])
    return words[0]


class FakeAgiClient:
    """Connects to a FastAGI server like Asterisk's res_agi and replays a session.

    `steps` are the recorded (command, reply bytes) pairs. `match="text"` expects the
    recorded commands verbatim and in order. `match="verb"` answers each command
    with the first unused recorded reply of the same verb (`SET VARIABLE`, `STREAM
    FILE`, ...), so a server whose arguments differ from the recording's still gets
    Asterisk's recorded replies in Asterisk's order; a verb used more often than
    recorded gets its last recorded reply again. A mismatch is recorded in `errors`
    and ends the session. `hang_up_after` closes the socket after that many commands.
    """

    def __init__(
        self,
        env: bytes,
        steps: list[tuple[str, bytes]],
        *,
        match: str = "text",
        hang_up_after: int | None = None,
        reply_delay: float = 0.0,
    ) -> None:
        if match not in ("text", "verb"):
            raise ValueError(f"match must be 'text' or 'verb', not {match!r}")
        self.env = env
        self.steps = deque(steps)
        self.match = match
        self._last_by_verb: dict[str, bytes] = {}
        self.hang_up_after = hang_up_after
        self.reply_delay = reply_delay
        self.commands: list[str] = []
        self.errors: list[str] = []

    async def run(
        self,
        host: str,
        port: int,
        *,
        before_env: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None,
    ) -> list[str]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if before_env is not None:
                await before_env(writer)
            writer.write(self.env)
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    break
                command = line.decode().rstrip("\n")
                self.commands.append(command)
                reply = self._reply_for(command)
                if reply is None:
                    break
                if self.reply_delay:
                    await asyncio.sleep(self.reply_delay)
                writer.write(reply)
                await writer.drain()
                if self.hang_up_after is not None and len(self.commands) >= self.hang_up_after:
                    break
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return self.commands

    def _reply_for(self, command: str) -> bytes | None:
        if self.match == "text":
            if not self.steps:
                self.errors.append(f"unexpected extra command {command!r}")
                return None
            expected, reply = self.steps.popleft()
            if command != expected:
                self.errors.append(f"expected {expected!r}, got {command!r}")
                return None
            return reply
        verb = agi_verb(command)
        for step in self.steps:
            if agi_verb(step[0]) == verb:
                self.steps.remove(step)
                self._last_by_verb[verb] = step[1]
                return step[1]
        if verb in self._last_by_verb:
            return self._last_by_verb[verb]
        self.errors.append(f"no recorded reply for {command!r}")
        return None
