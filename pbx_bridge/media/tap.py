"""Recording taps: what a mixer hands to whoever records or analyses a call.

A tap is attached to a `Mixer` (`mixer.attach_tap(tap)`); on every 20 ms tick it is
called once with the parties' ids, what each party sent (decoded to 16-bit linear,
silence for a party that sent nothing) and what each party was sent (the mix it
heard, or its music on hold). Both are numpy `int16` arrays of shape
(parties, 160), rows in the order of `party_ids`; a tap must not keep them past the
call (they are reused). A recording that wants stereo takes the customer's row of
`sent` as one channel and of `heard` as the other. A tap must be cheap (it runs on
the media scheduler); a slow writer queues and writes from a thread.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class MixTap(Protocol):
    def on_tick(self, party_ids: list[str], sent: np.ndarray, heard: np.ndarray) -> None: ...

    def closed(self) -> None:
        """The mixer stopped (the call ended or left the mixer)."""


class CollectingTap:
    """Keeps every tick in memory (tests, short diagnostics)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[np.ndarray]] = {}
        self.heard: dict[str, list[np.ndarray]] = {}
        self.is_closed = False

    def on_tick(self, party_ids: list[str], sent: np.ndarray, heard: np.ndarray) -> None:
        for row, party in enumerate(party_ids):
            self.sent.setdefault(party, []).append(sent[row].copy())
            self.heard.setdefault(party, []).append(heard[row].copy())

    def closed(self) -> None:
        self.is_closed = True
