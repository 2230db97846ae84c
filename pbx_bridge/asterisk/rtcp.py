"""RTP loss and jitter on Asterisk's channels, read from the RTCP reports Asterisk
publishes on AMI — no polling, no extra action per call.

Asterisk sends `RTCPSent` (class `reporting`, which Centrale's manager user reads) each
time it sends an RTCP report on a channel, about every 5 s per call (`rtcpinterval`).
Its report blocks describe what Asterisk *received* from the other side: per source SSRC
the `CumulativeLost` count since the stream started and the interarrival jitter
(`IAJitter`, in seconds since Asterisk 16). The same reading as the embedded core's
counter (inbound packets missing by sequence number), so both backends feed
`centrale_rtp_packets_lost_total`, labelled by backend. The cumulative count is turned
into increments per (channel, SSRC); a channel's state is dropped at its `Hangup`.

RTCP has no "late" count: Asterisk's side of `centrale_rtp_late_sends_total` does not
exist; the jitter gauge is what an operator watches instead (docs/kpis.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

MAX_REPORTS = 31  # RTCP's report count is 5 bits


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


class RtcpLossCounter:
    """A raw AMI listener (`AmiClient.add_raw_listener`): `lost(n)` for every n packets
    newly lost; `worst_jitter(seconds)` with the largest jitter the latest reports of the
    calls up now show (0 once none is up)."""

    def __init__(self, lost: Callable[[int], None],
                 worst_jitter: Callable[[float], None] | None = None) -> None:
        self._lost = lost
        self._worst_jitter = worst_jitter
        self._last: dict[tuple[str, str], int] = {}  # (uniqueid, source SSRC) -> cumulative
        self._jitter: dict[str, float] = {}  # uniqueid -> its latest report's jitter

    def __call__(self, message: Mapping[str, Any]) -> None:
        name = message.get("Event")
        if name == "Hangup":
            uniqueid = str(message.get("Uniqueid", ""))
            for key in [k for k in self._last if k[0] == uniqueid]:
                del self._last[key]
            if self._jitter.pop(uniqueid, None) is not None:
                self._report_jitter()
            return
        if name != "RTCPSent":
            return
        uniqueid = str(message.get("Uniqueid", ""))
        count = _int(message.get("ReportCount")) or 0
        jitters: list[float] = []
        for i in range(min(max(count, 0), MAX_REPORTS)):
            ssrc = str(message.get(f"Report{i}SourceSSRC", ""))
            cumulative = _int(message.get(f"Report{i}CumulativeLost"))
            if cumulative is not None:
                key = (uniqueid, ssrc)
                # RTCP's cumulative loss may go down (duplicates count negative): only
                # a rise is new loss, and the highest value seen stays the base
                last = self._last.get(key, 0)
                if cumulative > last:
                    self._lost(cumulative - last)
                    self._last[key] = cumulative
                else:
                    self._last.setdefault(key, last)
            jitter = _float(message.get(f"Report{i}IAJitter"))
            if jitter is not None:
                jitters.append(jitter)
        if jitters:
            self._jitter[uniqueid] = max(jitters)
            self._report_jitter()

    def _report_jitter(self) -> None:
        if self._worst_jitter is not None:
            self._worst_jitter(max(self._jitter.values(), default=0.0))

    @property
    def tracked(self) -> int:
        """(channel, SSRC) pairs and channels held: back to 0 once they hung up."""
        return len(self._last) + len(self._jitter)
