"""`new_id` keeps its format: ids made before and after the faster encoding sort and
compare as one sequence (they are primary keys and event ids in stored data)."""

from __future__ import annotations

import random

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
    rng = random.Random(seed)
    cases = [(0, bytes(10)), (2**48 - 1, b"\xff" * 10), (1, b"\x00" * 9 + b"\x01")]
    cases += [(rng.getrandbits(rng.choice([48, 41, 20, 3])), rng.randbytes(10))
              for _ in range(2000)]
    for ms, rand in cases:
        monkeypatch.setattr(ids.time, "time", lambda ms=ms: ms / 1000 + 0.0004)
        monkeypatch.setattr(ids.os, "urandom", lambda n, rand=rand: rand)
        assert ids.new_id() == reference(ms, rand)


def test_ids_sort_by_time() -> None:
    made = [ids.new_id() for _ in range(50)]
    assert all(len(i) == 26 and set(i) <= set(ALPHABET) for i in made)
    assert [i[:10] for i in made] == sorted(i[:10] for i in made)
