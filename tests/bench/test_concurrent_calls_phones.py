"""The phones of `bench/concurrent_calls_bench.py`: what they count is what was sent,
and they answer a new stream with the caller's digits from the same socket (so a node
with symmetric RTP keeps sending to them)."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from concurrent_calls_bench import Phones, count_lost, gap_buckets_p


def test_losses_come_from_sequence_numbers_across_the_wrap() -> None:
    assert count_lost(65535, 0) == 0
    assert count_lost(65534, 1) == 2
    assert count_lost(10, 10) == 0  # a repeat
    assert count_lost(10, 7) == 0  # late, not lost


def test_gap_quantiles_are_the_buckets_upper_edges() -> None:
    buckets = [0] * 2001
    buckets[20] = 98
    buckets[45] = 2
    assert gap_buckets_p(buckets, 0.5) == 21.0
    assert gap_buckets_p(buckets, 0.99) == 46.0
    assert gap_buckets_p([0] * 2001, 0.99) == float("inf")


def test_a_window_counts_the_streams_packets_and_losses_and_the_digits_come_back() -> None:
    phones = Phones(caller_audio=False)
    node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # plays the node's RTP port
    node.bind(("127.0.0.1", 0))
    node.settimeout(20)
    try:
        assert phones.ask("start") is True
        for seq in (1, 2, 3, 6, 7, 10):  # 4, 5, 8 and 9 never sent
            node.sendto(struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 7) + b"\xff" * 160,
                        ("127.0.0.1", phones.port))
        events: list[tuple[int, int]] = []  # (RTP timestamp, event) per digit packet
        source = None
        while len(events) < 20:  # two digits of 8 packets, the end one sent 3 times
            data, source = node.recvfrom(2048)
            if data[1] & 0x7F == 101:
                events.append((struct.unpack_from("!I", data, 4)[0], data[12]))
        assert source == ("127.0.0.1", phones.port)  # from the socket the SDP names
        assert sorted({ts for ts, _ in events}) == [8000, 16000]  # two digits, not a repeat
        assert {event for _, event in events} == {1}
        window = phones.ask("collect")
        assert isinstance(window, dict)
        # the first packet opens the stream; the five after it are measured
        assert (window["streams"], window["packets"], window["lost"]) == (1, 5, 4)
        assert sum(window["buckets"]) == 5
    finally:
        phones.stop()
        node.close()
