"""Record the AMI bytes Centrale and a live Asterisk exchange, in the chunk format of
tests/fixtures/asterisk/jsonl (`{"t", "conn", "dir", "data"}`) and the `.txt` format
beside it (README there). Used by the live call-control tests when
`CENTRALE_RECORD_AMI=<dir>` is set, to refresh the recorded call-control exchanges."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest


class AmiCapture:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._t0: float | None = None
        self._conn = 0

    def _add(self, direction: str, data: bytes) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self.records.append({"t": round(now - self._t0, 6), "conn": self._conn,
                             "dir": direction, "data": data.decode("utf-8", "replace")})

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pbx_bridge.asterisk import ami

        capture = self
        received = ami._Protocol.data_received
        made = ami._Protocol.connection_made

        def data_received(proto: Any, data: bytes) -> None:
            capture._add("asterisk->client", data)
            received(proto, data)

        def connection_made(proto: Any, transport: Any) -> None:
            capture._conn += 1
            write = transport.write

            def tapped(data: bytes) -> None:
                capture._add("client->asterisk", data)
                write(data)

            transport.write = tapped
            made(proto, transport)

        monkeypatch.setattr(ami._Protocol, "data_received", data_received)
        monkeypatch.setattr(ami._Protocol, "connection_made", connection_made)

    def write(self, folder: Path, name: str, header: list[str]) -> None:
        """`jsonl/<name>.jsonl` (chunks) and `<name>.txt` (the wire, cut at message
        ends, both directions interleaved) under `folder`, first connection only."""
        records = [r for r in self.records if r["conn"] == 1]
        (folder / "jsonl").mkdir(parents=True, exist_ok=True)
        with (folder / "jsonl" / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for r in records:
                out.write(json.dumps(r) + "\n")
        body = wire_text(records)
        lines = [f"# {line}" for line in header]
        (folder / f"{name}.txt").write_bytes(
            ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8"))


def wire_text(records: list[dict[str, Any]]) -> str:
    """The `.txt` body: each direction cut at message ends (`\r\n\r\n`; the banner
    is one line), the messages interleaved in the order they were complete."""
    pending = {"client->asterisk": "", "asterisk->client": ""}
    out: list[str] = []
    banner_seen = False
    for r in records:
        direction = r["dir"]
        pending[direction] += r["data"]
        if direction == "asterisk->client" and not banner_seen and "\r\n" in pending[direction]:
            line, _, rest = pending[direction].partition("\r\n")
            out.append(line + "\r\n")
            pending[direction] = rest
            banner_seen = True
        while "\r\n\r\n" in pending[direction]:
            message, _, rest = pending[direction].partition("\r\n\r\n")
            out.append(message + "\r\n\r\n")
            pending[direction] = rest
    return "".join(out) + "".join(pending.values())
