"""Ids: the table-driven encoding gives the digits the original divmod loop gave."""

from __future__ import annotations

import os

from core import ids


def _divmod_loop(value: int) -> str:
    out = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        out.append(ids._ALPHABET[rem])
    return "".join(reversed(out))


def test_ids_encode_as_the_divmod_loop_did_and_sort_by_time() -> None:
    for value in [0, 1, 1 << 127, (1 << 128) - 1,
                  *(int.from_bytes(os.urandom(16), "big") for _ in range(2000))]:
        got = "".join(ids._PAIRS[(value >> s) & 1023] for s in range(120, -1, -10))
        assert got == _divmod_loop(value)
    made = [ids.new_id() for _ in range(50)]
    assert all(len(i) == 26 for i in made) and len(set(made)) == 50
    assert [i[:10] for i in made] == sorted(i[:10] for i in made)  # the time part
