"""Asterisk AMI benchmark: events/s through Centrale's AmiClient (framing, mapping to
domain events, channel registry, listener delivery) against plain panoramisk (framing
and dispatch to a no-op callback) on the same recorded byte stream, in the same run;
plus the time a resync takes with many live channels.

    .venv/bin/python bench/asterisk_ami_bench.py            # 200 recorded calls' worth
    .venv/bin/python bench/asterisk_ami_bench.py --quick

The stream is the recorded Asterisk 20.20.1 traffic (tests/fixtures/asterisk:
the answered and the abandoned call) repeated, with each repetition's Uniqueids made
distinct so that the registry really tracks (and forgets) every channel. Both
clients read from the same local fake AMI server over TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoramisk import Manager

from pbx_bridge.asterisk.ami import AmiClient, Backoff
from pbx_bridge.asterisk.testing import (
    AmiRecording,
    FakeAmiServer,
    core_show_channels_reply,
    edit_frame,
    getvar_reply,
    header,
)

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "asterisk"


def stream(calls: int) -> list[bytes]:
    answered = AmiRecording.load(FIXTURES / "jsonl" / "ami_ivr_to_queue_answered.jsonl")
    abandon = AmiRecording.load(FIXTURES / "jsonl" / "ami_queue_abandon.jsonl")
    base = answered.events() + abandon.events()
    out: list[bytes] = []
    for n in range(calls):
        for frame in base:
            changes = {}
            for key in ("Uniqueid", "Linkedid", "DestUniqueid"):
                value = header(frame, key)
                if value:
                    changes[key] = f"{value}{n:05d}"
            out.append(edit_frame(frame, changes) if changes else frame)
    return out


async def run_centrale(server: FakeAmiServer, frames: list[bytes]) -> tuple[float, int]:
    client = AmiClient(
        "127.0.0.1",
        server.port,
        "ccadmin",
        "ccsecret",
        backoff=Backoff(0.05, 0.1),
        ping_interval=3600,
    )
    delivered = 0

    def count(_event: object) -> None:
        nonlocal delivered
        delivered += 1

    client.add_listener(count)
    await client.start()
    target = client.counters.received + len(frames)
    all_in = asyncio.Event()

    def arrived(_message: object) -> None:
        if client.counters.received >= target:
            all_in.set()

    client.add_raw_listener(arrived)
    start = time.perf_counter()
    server.push(b"".join(frames))
    await all_in.wait()
    await client.drain()
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed, delivered


async def run_panoramisk(server: FakeAmiServer, frames: list[bytes]) -> float:
    loop = asyncio.get_running_loop()
    seen = 0
    target = -1
    all_in = asyncio.Event()
    manager = Manager(
        host="127.0.0.1",
        port=server.port,
        username="ccadmin",
        secret="ccsecret",
        loop=loop,
        ping_delay=3600,
    )

    def on_event(_manager: Manager, _message: object) -> None:
        nonlocal seen
        seen += 1
        if seen == target:
            all_in.set()

    manager.register_event("*", on_event)
    await manager.connect()
    await server.wait_logged_in()
    await asyncio.sleep(0.05)
    target = seen + len(frames)
    start = time.perf_counter()
    server.push(b"".join(frames))
    await all_in.wait()
    elapsed = time.perf_counter() - start
    manager.close()
    return elapsed


async def run_resync(actions: AmiRecording, channels: int) -> float:
    server = await FakeAmiServer(actions).start()
    live = [
        {
            "Channel": f"PJSIP/trunk-{i:08x}",
            "Uniqueid": f"1795700000.{i}",
            "Linkedid": f"1795700000.{i}",
        }
        for i in range(channels)
    ]
    server.on_action(
        "CoreShowChannels", lambda h, aid: core_show_channels_reply(actions, aid, live)
    )
    # half the channels are Centrale's (they carry CENTRALE_CALL_ID)
    server.on_action(
        "Getvar",
        lambda h, aid: getvar_reply(
            aid,
            h["variable"],
            "call"
            if h["variable"] == "CENTRALE_CALL_ID"
            and int(h["channel"].rsplit("-", 1)[1], 16) % 2 == 0
            else "",
        ),
    )
    client = AmiClient(
        "127.0.0.1",
        server.port,
        "ccadmin",
        "ccsecret",
        ping_interval=3600,
        start_timeout=120,
        action_timeout=60,
    )
    start = time.perf_counter()
    await client.start()
    elapsed = time.perf_counter() - start
    assert len(client.registry) == channels, len(client.registry)
    await client.close()
    await server.stop()
    return elapsed


async def main(quick: bool) -> None:
    calls = 20 if quick else 200
    frames = stream(calls)
    actions = AmiRecording.load(FIXTURES / "jsonl" / "ami_actions.jsonl")
    server = await FakeAmiServer(actions).start()
    server.on_action("CoreShowChannels", lambda h, aid: core_show_channels_reply(actions, aid, []))
    base = await run_panoramisk(server, frames)
    server.drop()
    ours, delivered = await run_centrale(server, frames)
    await server.stop()
    n = len(frames)
    print(f"recorded AMI events replayed: {n} ({calls} calls x 2 recordings)")
    print(f"  panoramisk Manager, no-op callback : {n / base:10.0f} events/s  ({base:.3f} s)")
    print(
        f"  Centrale AmiClient, full pipeline  : {n / ours:10.0f} events/s  ({ours:.3f} s)"
        f"  -> {delivered} domain events delivered"
    )
    print(f"  cost of Centrale's layer           : {ours / base:10.2f}x panoramisk alone")
    for channels in (100, 500) if quick else (100, 1000):
        took = await run_resync(actions, channels)
        print(
            f"resync with {channels:5d} live channels (half Centrale's, Getvar each): "
            f"{took * 1000:8.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
