"""The contract between the media layer and whatever carries audio (RTP today,
WebRTC later): a leg is an abstract audio endpoint exchanging 20 ms G.711 frames.

- A leg sends what it is given: `send_frame(payload)` sends one 20 ms frame (160
  bytes) in the leg's own law (`payload_type`, PCMU 0 or PCMA 8), with the leg's own
  sequence numbers and clock.
- A leg hands what it receives to its `sink` when one is set: the bridge or mixer it
  takes part in sets itself as the sink and gets `frame_received(leg, payload,
  payload_type)` for every audio frame as it arrives (DTMF and non-audio are not
  frames). With no sink, the leg does whatever it did before (plays prompts, relays).
- Digits (RFC 4733 on RTP) go the same way: `sink.digit_received(leg, digit)` for a
  key pressed on the leg, `send_digit(digit)` to regenerate one another party pressed.
- `leg_id` names the leg in taps and statistics; it is unique while the leg lives.

A `pbx_bridge/sip` RTP session satisfies it (`media.rtp.RtpSession`); a WebRTC leg
will by relaying SRTP payloads. Nothing here knows SIP.
"""

from __future__ import annotations

from typing import Protocol


class FrameSink(Protocol):
    """Receives a leg's audio frames (a mixer or a recording stage)."""

    def frame_received(self, leg: MediaLeg, payload: bytes, payload_type: int) -> None: ...

    def digit_received(self, leg: MediaLeg, digit: str) -> None: ...


class MediaLeg(Protocol):
    leg_id: str
    payload_type: int  # the G.711 law this leg sends (and expects)
    sink: FrameSink | None

    def send_frame(self, payload: bytes) -> None: ...

    def send_digit(self, digit: str) -> None: ...
