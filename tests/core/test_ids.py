"""`new_id` keeps its format: ids made before and after the faster encoding sort and
compare as one sequence (they are primary keys and event ids in stored data)."""

from __future__ import annotations

import os
import random
import threading

import pytest

from core import ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def reference(ms: int, rand: bytes) -> str:
    """The original encoding: 26 base-32 digits of (ms << 80) | rand, most significant
    first."""
    value = (ms << 80) | int.from_bytes(rand, "big")
    out = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        out.append(ALPHABET[rem])
    return "".join(reversed(out))


@pytest.mark.parametrize("seed", range(4))
def test_new_id_equals_the_reference_encoding(monkeypatch: pytest.MonkeyPatch,
                                              seed: int) -> None:
    """The time digits and the random digits are those of the original encoding of
    (ms, the 80 random bits the 16 random digits stand for)."""
    rng = random.Random(seed)
    cases = [0, 2**48 - 1, 1] + [rng.getrandbits(rng.choice([48, 41, 20, 3]))
                                 for _ in range(2000)]
    for ms in cases:
        monkeypatch.setattr(ids.time, "time", lambda ms=ms: ms / 1000 + 0.0004)
        made = ids.new_id()
        rand = int("".join(f"{ALPHABET.index(c):05b}" for c in made[10:]), 2)
        assert made == reference(ms, rand.to_bytes(10, "big"))


def test_random_digits_are_the_pools_bytes_one_digit_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each random digit is one urandom byte's low 5 (base 32) or 4 (hex) bits: every
    digit equally likely, and a fresh pool after the old one is used up."""
    blocks = [bytes(range(256)) * 16, bytes(reversed(range(256))) * 16]
    monkeypatch.setattr(ids.os, "urandom", lambda n: blocks.pop(0)[:n])
    monkeypatch.setattr(ids, "_base32_pool", ids._DigitPool(ids._BASE32_OF_BYTE))
    made = "".join(ids.new_id()[10:] for _ in range(4096 // 16))
    assert made == "".join(ALPHABET[b & 31] for b in range(256)) * 16
    assert ids.new_id()[10:] == "".join(ALPHABET[b & 31] for b in range(255, 239, -1))
    hex_pool = ids._DigitPool(ids._HEX_OF_BYTE)
    blocks.append(bytes(range(256)) * 16)
    assert hex_pool.take(32) == "0123456789abcdef" * 2


def test_ids_are_unique_across_threads_and_pool_refills() -> None:
    made: list[str] = []

    def make() -> None:
        made.extend(ids.new_id() for _ in range(3000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == len(made) == 12000
    hexes = [ids.random_hex(12) for _ in range(2000)]
    assert len(set(hexes)) == 2000
    assert all(len(h) == 12 and set(h) <= set("0123456789abcdef") for h in hexes)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    """Ids from the pool the parent had filled before the fork must not appear in the
    child too (duplicate primary keys across worker processes)."""
    ids.new_id()  # the parent's pool is filled and partly used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its next ids, then exit without running pytest's teardown
        os.close(read)
        os.write(write, "".join(ids.new_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = "".join(ids.new_id() for _ in range(20))
    child_random = {child[i + 10:i + 26] for i in range(0, len(child), 26)}
    parent_random = {parent[i + 10:i + 26] for i in range(0, len(parent), 26)}
    assert len(child_random) == 20
    assert not child_random & parent_random


def test_ids_sort_by_time() -> None:
    made = [ids.new_id() for _ in range(50)]
    assert all(len(i) == 26 and set(i) <= set(ALPHABET) for i in made)
    assert [i[:10] for i in made] == sorted(i[:10] for i in made)
