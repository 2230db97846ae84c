"""An agent's desk phone that is picked up when the test says so: pyVoIP 1.6.8 (the
virtual phone Centrale's own tests and demo use), registered with digest auth. Its
INVITE callback runs in a pyVoIP thread; it waits there for `answer()` so the test can
look at the ringing offer on the desktop first, then answers (200 OK, RTP)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.pbx_bridge.sip.sip_testkit import PyVoipAgentPhone


class AnsweringPhone(PyVoipAgentPhone):
    def __init__(self, server_port: int, username: str, password: str) -> None:
        super().__init__(server_port, username, password)
        self._pick_up = threading.Event()
        self._rang = threading.Event()

    def _on_call(self, call: Any) -> None:  # pyVoIP thread
        self._rang.set()
        if self._pick_up.wait(60):
            super()._on_call(call)

    async def ringing(self, timeout: float = 15) -> None:
        """Until an INVITE reached the phone (or the timeout)."""
        assert await asyncio.to_thread(self._rang.wait, timeout), "the phone never rang"

    def answer(self) -> None:
        self._pick_up.set()
