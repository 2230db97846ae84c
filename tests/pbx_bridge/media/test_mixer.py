"""The G.711 mixer on in-memory legs: who hears whom, measured with an FFT; the
encode/decode tables against the reference codec; clipping; taps."""

from __future__ import annotations

import numpy as np

from pbx_bridge.media import g711
from pbx_bridge.media.audio import EncodedAudio
from pbx_bridge.media.g711 import PCMA, PCMU
from pbx_bridge.media.mixer import Mixer, decode_frame, encode_frame
from pbx_bridge.media.rtp import AudioSource
from pbx_bridge.media.tap import CollectingTap
from tests.tones import hears, tone_levels, tone_linear


class FakeEngine:
    def __init__(self) -> None:
        self.active: set[object] = set()

    def assign_phase(self) -> int:
        return 0

    def activate(self, ticker: object) -> None:
        self.active.add(ticker)


class MemoryLeg:
    """A leg that plays a tone into the mixer and keeps what it is sent."""

    def __init__(self, name: str, frequency: float, law: int = PCMU) -> None:
        self.leg_id = name
        self.payload_type = law
        self.sink = None
        encode = g711.encode_ulaw if law == PCMU else g711.encode_alaw
        from array import array
        self.voice = encode(array("h", tone_linear(frequency, 2.0).tobytes())) \
            if frequency else bytes([g711.ULAW_SILENCE if law == PCMU else g711.ALAW_SILENCE]
                                    ) * 16000
        self.position = 0
        self.received: list[bytes] = []
        self.digits = ""

    def speak(self) -> None:
        frame = self.voice[self.position:self.position + 160]
        self.position += 160
        self.sink.frame_received(self, frame, self.payload_type)

    def send_frame(self, payload: bytes) -> None:
        self.received.append(payload)

    def send_digit(self, digit: str) -> None:
        self.digits += digit

    def heard(self) -> np.ndarray:
        table = g711.ULAW_DECODE if self.payload_type == PCMU else g711.ALAW_DECODE
        return np.array([table[b] for b in b"".join(self.received[5:])])


def run(mixer: Mixer, legs: list[MemoryLeg], ticks: int = 60) -> None:
    for _ in range(ticks):
        for leg in legs:
            leg.speak()
        mixer.tick(0.0)


def test_three_party_conference_each_hears_the_other_two_and_not_itself() -> None:
    mixer = Mixer(FakeEngine())
    legs = [MemoryLeg("customer", 440), MemoryLeg("agent", 1000, PCMA),
            MemoryLeg("third", 1750)]
    for leg in legs:
        mixer.add(leg.leg_id, leg)
    run(mixer, legs)
    freqs = {"customer": 440, "agent": 1000, "third": 1750}
    for leg in legs:
        levels = tone_levels(leg.heard(), list(freqs.values()))
        for name, f in freqs.items():
            if name == leg.leg_id:
                assert levels[f] < 0.01, (leg.leg_id, levels)
            else:
                assert levels[f] > 0.2, (leg.leg_id, levels)


async def test_whisper_listen_and_hold_rules() -> None:
    mixer = Mixer(FakeEngine())
    customer, agent, sup = (MemoryLeg("customer", 440), MemoryLeg("agent", 1000),
                            MemoryLeg("supervisor", 1750))
    for leg in (customer, agent):
        mixer.add(leg.leg_id, leg)
    mixer.add("supervisor", sup, speaks_to=frozenset({"agent"}))  # whisper
    run(mixer, [customer, agent, sup])
    assert hears(agent.heard(), 1750) and hears(agent.heard(), 440)
    assert not hears(customer.heard(), 1750) and hears(customer.heard(), 1000)
    assert hears(sup.heard(), 440) and hears(sup.heard(), 1000)

    for leg in (customer, agent, sup):
        leg.received.clear()
    mixer.set_speaks_to("supervisor", frozenset())  # listen
    run(mixer, [customer, agent, sup])
    assert not hears(agent.heard(), 1750) and not hears(customer.heard(), 1750)
    assert hears(sup.heard(), 440) and hears(sup.heard(), 1000)

    for leg in (customer, agent, sup):
        leg.received.clear()
    music = EncodedAudio(*(lambda a: (g711.encode_ulaw(a), g711.encode_alaw(a)))(
        __import__("array").array("h", tone_linear(300, 1.0).tobytes())))
    mixer.play_to("customer", AudioSource(music, loop=True))  # hold
    run(mixer, [customer, agent, sup])
    assert hears(customer.heard(), 300) and not hears(customer.heard(), 1000)
    assert not hears(agent.heard(), 440), "a held customer is not heard either"


def test_mix_clips_instead_of_wrapping_and_tables_match_the_codec() -> None:
    loud = np.full(160, 30000, dtype=np.int32)
    assert decode_frame(encode_frame(np.clip(loud * 3, -32768, 32767), PCMU), PCMU).min() > 30000
    for law, enc in ((PCMU, g711.encode_ulaw), (PCMA, g711.encode_alaw)):
        samples = np.arange(-32768, 32768, 97, dtype=np.int32)[:160]
        from array import array
        assert encode_frame(samples, law) == enc(array("h", samples.astype(np.int16).tobytes()))


def test_a_tap_sees_what_each_party_sent_and_heard() -> None:
    mixer = Mixer(FakeEngine())
    a, b = MemoryLeg("a", 500), MemoryLeg("b", 1500)
    mixer.add("a", a)
    mixer.add("b", b)
    tap = CollectingTap()
    mixer.attach_tap(tap)
    run(mixer, [a, b], 50)
    mixer.close()
    assert tap.is_closed
    assert hears(np.concatenate(tap.sent["a"]), 500)
    assert hears(np.concatenate(tap.heard["a"]), 1500)
    assert a.sink is None and b.sink is None


def test_digits_go_to_the_parties_that_hear_the_presser() -> None:
    mixer = Mixer(FakeEngine())
    customer, agent, sup = (MemoryLeg("customer", 440), MemoryLeg("agent", 1000),
                            MemoryLeg("supervisor", 1750))
    mixer.add("customer", customer)
    mixer.add("agent", agent)
    mixer.add("supervisor", sup, speaks_to=frozenset())  # listening
    mixer.digit_received(agent, "5")
    mixer.digit_received(sup, "9")  # a listener is not heard: nobody gets it
    assert (customer.digits, agent.digits, sup.digits) == ("5", "", "5")
