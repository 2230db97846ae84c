"""Fuzzing the agent desktop's websocket (issue 18): grammar-shaped frames (JSON of
any shape, hostile text, binary, oversized) from a logged-in agent.

Invariants: nothing logged at ERROR; after every frame the socket still answers a
ping (except an oversized frame, which closes it with 1009 and nothing else); when the
socket closes, the hub forgets it."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSMsgType
from hypothesis import strategies as st

from tests.fuzz_support import any_json, draw_examples, hostile_text
from tests.waiting import wait_until
from web.desktop.state import DESKTOP

frames: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    any_json.map(lambda v: ("json", v)),
    st.fixed_dictionaries({"type": hostile_text(st.sampled_from(["ping", "accept", "state"])),
                           "t": any_json}).map(lambda v: ("json", v)),
    hostile_text().map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
    st.just(("oversized", "x" * (64 * 1024 + 10))),
)


async def _pong(ws: Any, t: int) -> bool:
    await ws.send_str(json.dumps({"type": "ping", "t": t}))
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type != WSMsgType.TEXT:
            return False
        data = json.loads(msg.data)
        if data.get("type") == "pong" and data.get("t") == t:
            return True


async def test_fuzzed_desktop_frames_never_break_the_socket_or_log_errors(web_env,
                                                                           caplog) -> None:
    caplog.set_level(logging.WARNING)
    await web_env.login("anna")
    hub = web_env.client.app[DESKTOP].hub
    ws = await web_env.client.ws_connect("/ws")
    sent = 0
    for n, (kind, value) in enumerate(draw_examples(frames)):
        if kind == "oversized":
            continue  # checked once below: it ends the socket
        if kind == "json":
            await ws.send_str(json.dumps(value))
        elif kind == "text":
            await ws.send_str(value.encode("utf-8", "replace").decode("utf-8"))
        else:
            await ws.send_bytes(value)
        sent += 1
        assert await _pong(ws, n), (kind, value)
    assert sent > 0
    await ws.send_str("x" * (64 * 1024 + 10))
    msg = await ws.receive(timeout=10)
    while msg.type == WSMsgType.TEXT:
        msg = await ws.receive(timeout=10)
    assert ws.closed and ws.close_code == 1009  # message too big
    await wait_until(lambda: not hub.agents.get("anna"), timeout=10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
