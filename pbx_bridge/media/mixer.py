"""`Mixer`: N legs, one 20 ms mix per tick — conferences, hold, mute and monitoring.

Each tick the mixer takes at most one frame from every party (frames arrive on their
own clocks and wait in a short per-party queue, at most `MAX_QUEUED` of them), decodes
them to 16-bit linear through a 256-entry table, and sends each party the sum of what
the parties it hears sent — its own voice subtracted — clipped to 16 bits and encoded
in the party's own law through a 16k-entry table (the top 14 bits of the sample).

Who hears whom is one rule per party, `speaks_to`: None (everyone: a conference or a
barge), a set of party ids (whisper: the supervisor speaks to the agent only), or the
empty set (listen, or a muted agent). A party given a `hears` source (music on hold)
hears that instead of the mix, and its voice is not mixed in: a held customer neither
hears nor is heard. The common case — everyone hears everyone — is computed as the
total minus each party's own row; any other rule as one small matrix product.

Mixers run on `MediaEngine`'s scheduler: the mixers of one scheduler phase are
ticked together by a `MixerGroup`, which mixes every plain conference of that phase
in one set of array operations (one decode, one sum per conference by
`np.add.reduceat`, one clip, one encode for all parties) — numpy's per-call overhead
paid once per tick instead of once per conference. Mixers with a custom rule or a
music source are mixed one by one (`Mixer.tick`). Taps (`media.tap.MixTap`) see
every tick's decoded input and output; a plain mixer with a tap (a recorded call)
stays in the batch and its tap is handed its rows of the batch's arrays, so a
recorded call costs a row copy, not a mix of its own.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pbx_bridge.media import g711
from pbx_bridge.media.audio import FRAME_SAMPLES
from pbx_bridge.media.g711 import PCMA, PCMU
from pbx_bridge.media.leg import MediaLeg
from pbx_bridge.media.rtp import AudioSource
from pbx_bridge.media.tap import MixTap

log = logging.getLogger(__name__)

MAX_QUEUED = 4  # frames a party may be ahead of the mix (80 ms of arrival jitter)

_DECODE = {
    PCMU: np.array(g711.ULAW_DECODE, dtype=np.int32),
    PCMA: np.array(g711.ALAW_DECODE, dtype=np.int32),
}


def _encode_table(law: int) -> np.ndarray:
    """Index = (sample >> 2) + 8192 for a clipped 16-bit sample: the 14 bits that
    decide a G.711 code (µ-law keeps 14, A-law 13)."""
    samples = (np.arange(16384, dtype=np.int32) - 8192) << 2
    table = g711._ULAW_ENCODE if law == PCMU else g711._ALAW_ENCODE
    return np.frombuffer(table, dtype=np.uint8)[samples & 0xFFFF].copy()


_ENCODE = {PCMU: _encode_table(PCMU), PCMA: _encode_table(PCMA)}
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int32)


def decode_frame(payload: bytes, payload_type: int) -> np.ndarray:
    """One G.711 frame as int32 linear samples (padded/trimmed to 160)."""
    codes = np.frombuffer(payload[:FRAME_SAMPLES], dtype=np.uint8)
    samples = _DECODE[payload_type][codes]
    if len(samples) < FRAME_SAMPLES:
        samples = np.concatenate([samples, _SILENCE[: FRAME_SAMPLES - len(samples)]])
    return samples


def encode_frame(samples: np.ndarray, payload_type: int) -> bytes:
    """Clipped linear samples (int32) as a G.711 frame."""
    return _ENCODE[payload_type][(samples >> 2) + 8192].tobytes()


@dataclass(eq=False)
class Party:
    party_id: str
    leg: MediaLeg
    speaks_to: frozenset[str] | None = None  # None: everyone; empty: nobody
    hears: AudioSource | None = None  # music on hold: heard instead of the mix
    inbox: collections.deque[tuple[bytes, int]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_QUEUED))


class Mixer:
    """A bridge of N legs (2-party calls under control, conferences, monitoring)."""

    def __init__(self, engine: Any, name: str = "mix") -> None:
        self.engine = engine  # media.rtp.MediaEngine: its scheduler ticks us
        self.name = name
        self.phase = engine.assign_phase()
        self.closed = False
        self._group: MixerGroup | None = None
        self.parties: list[Party] = []
        self._by_leg: dict[int, Party] = {}
        self._taps: list[MixTap] = []
        self._links: np.ndarray | None = None  # None: everyone hears everyone
        self.ticks = 0

    # -- membership ---------------------------------------------------
    def add(self, party_id: str, leg: MediaLeg, *,
            speaks_to: frozenset[str] | None = None) -> Party:
        if any(p.party_id == party_id for p in self.parties):
            raise ValueError(f"party {party_id!r} is in the mix already")
        party = Party(party_id, leg, speaks_to)
        self.parties.append(party)
        self._by_leg[id(leg)] = party
        leg.sink = self
        self._relink()
        if self._group is None and hasattr(self.engine, "sessions"):  # a MediaEngine
            self._group = MixerGroup.of(self.engine, self.phase)
            self._group.join(self)
        elif self._group is None:
            self.engine.activate(self)  # a stand-in engine: tick on our own
        return party

    def remove(self, party_id: str) -> Party | None:
        party = self.party(party_id)
        if party is None:
            return None
        self.parties.remove(party)
        self._by_leg.pop(id(party.leg), None)
        if party.leg.sink is self:
            party.leg.sink = None
        self._relink()
        return party

    def party(self, party_id: str) -> Party | None:
        return next((p for p in self.parties if p.party_id == party_id), None)

    def set_speaks_to(self, party_id: str, speaks_to: frozenset[str] | None) -> None:
        party = self.party(party_id)
        if party is not None:
            party.speaks_to = speaks_to
            self._relink()

    def play_to(self, party_id: str, source: AudioSource | None) -> None:
        """The party hears `source` (music on hold) instead of the mix; None: the mix."""
        party = self.party(party_id)
        if party is not None:
            if party.hears is not None and party.hears is not source:
                party.hears.finish()
            party.hears = source
            self._relink()

    def attach_tap(self, tap: MixTap) -> None:
        self._taps.append(tap)
        self._relink()

    def detach_tap(self, tap: MixTap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)
            tap.closed()
            if self._group is not None:
                self._group.dirty = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for party in list(self.parties):
            if party.hears is not None:
                party.hears.finish()
            self.remove(party.party_id)
        for tap in self._taps:
            tap.closed()
        self._taps.clear()
        if self._group is not None:
            self._group.dirty = True

    @property
    def plain(self) -> bool:
        """Everyone hears everyone, nothing else: mixed in the group's batch (taps
        included: they get their rows of the batch)."""
        return self._links is None

    def feed_taps(self, sent: np.ndarray, heard: np.ndarray) -> None:
        """Hand this tick's rows (int32, this mixer's parties) to the taps."""
        ids = [p.party_id for p in self.parties]
        sent16, heard16 = sent.astype(np.int16), heard.astype(np.int16)
        for tap in list(self._taps):
            try:
                tap.on_tick(ids, sent16, heard16)
            except Exception:  # a failing recorder must not stop the call's audio
                log.exception("tap failed on mixer %s; detached", self.name)
                self._taps.remove(tap)

    def _relink(self) -> None:
        """Rebuild the who-hears-whom matrix (links[i, j] = 1: j hears i)."""
        if self._group is not None:
            self._group.dirty = True
        n = len(self.parties)
        if all(p.speaks_to is None and p.hears is None for p in self.parties):
            self._links = None
            return
        links = np.ones((n, n), dtype=np.int32) - np.eye(n, dtype=np.int32)
        for i, speaker in enumerate(self.parties):
            if speaker.hears is not None:  # on hold: not heard either
                links[i, :] = 0
            elif speaker.speaks_to is not None:
                for j, listener in enumerate(self.parties):
                    if listener.party_id not in speaker.speaks_to:
                        links[i, j] = 0
        self._links = links

    # -- media --------------------------------------------------------
    def frame_received(self, leg: MediaLeg, payload: bytes, payload_type: int) -> None:
        party = self._by_leg.get(id(leg))
        if party is not None and payload_type in _DECODE:
            party.inbox.append((payload, payload_type))

    def digit_received(self, leg: MediaLeg, digit: str) -> None:
        """A key pressed on one leg is regenerated to every party that hears it (an
        agent dialling a third party's IVR; ConfBridge's dtmf_passthrough)."""
        sender = self._by_leg.get(id(leg))
        if sender is None:
            return
        i = self.parties.index(sender)
        for j, party in enumerate(self.parties):
            if j != i and (self._links is None or self._links[i, j]):
                party.leg.send_digit(digit)

    def tick(self, now: float) -> bool:
        """One 20 ms mix; False once closed (the scheduler then forgets us)."""
        if self.closed:
            return False
        parties = self.parties
        n = len(parties)
        if n == 0:
            return True
        sent = np.zeros((n, FRAME_SAMPLES), dtype=np.int32)
        for i, party in enumerate(parties):
            if party.inbox:
                payload, pt = party.inbox.popleft()
                sent[i] = decode_frame(payload, pt)
        if self._links is None:
            heard = sent.sum(axis=0, keepdims=True) - sent
        else:
            heard = self._links.T @ sent
        np.clip(heard, -32768, 32767, out=heard)
        for i, party in enumerate(parties):
            law = party.leg.payload_type if party.leg.payload_type in _ENCODE else PCMU
            if party.hears is not None:
                frame = party.hears.next_frame(law)
                if frame is None:
                    continue
                if self._taps:
                    heard[i] = decode_frame(frame, law)
            else:
                frame = encode_frame(heard[i], law)
            party.leg.send_frame(frame)
        self.ticks += 1
        if self._taps:
            self.feed_taps(sent, heard)
        return True


class MixerGroup:
    """The mixers of one scheduler phase, ticked as one (see the module docstring)."""

    def __init__(self, engine: Any, phase: int) -> None:
        self.engine = engine
        self.phase = phase
        self.closed = False
        self.mixers: list[Mixer] = []
        self.dirty = True
        self._parties: list[Party] = []
        self._starts = np.zeros(0, dtype=np.intp)
        self._owner = np.zeros(0, dtype=np.intp)
        self._pcma_rows = np.zeros(0, dtype=np.intp)
        self._tapped: list[tuple[Mixer, int, int]] = []  # (mixer, first row, rows)
        # Stereo recorders (taps with `on_stereo` and a `customer` party): their
        # customer's row of `sent` and `heard`, gathered for all of them at once.
        self._stereo_taps: list[tuple[Any, Mixer]] = []
        self._stereo_rows = np.zeros(0, dtype=np.intp)

    @classmethod
    def of(cls, engine: Any, phase: int) -> MixerGroup:
        groups: dict[int, MixerGroup] | None = getattr(engine, "mixer_groups", None)
        if groups is None:
            groups = {}
            engine.mixer_groups = groups  # the engine's own: it dies with it
        group = groups.get(phase)
        if group is None:
            group = groups[phase] = cls(engine, phase)
        return group

    def join(self, mixer: Mixer) -> None:
        self.mixers.append(mixer)
        self.dirty = True
        self.engine.activate(self)

    def _rebuild(self) -> None:
        self.mixers = [m for m in self.mixers if not m.closed]
        parties: list[Party] = []
        starts: list[int] = []
        owner: list[int] = []
        tapped: list[tuple[Mixer, int, int]] = []
        stereo_taps: list[tuple[Any, Mixer]] = []
        stereo_rows: list[int] = []
        for index, mixer in enumerate(m for m in self.mixers if m.plain and m.parties):
            starts.append(len(parties))
            ids = [p.party_id for p in mixer.parties]
            general = []
            for tap in mixer._taps:
                customer = getattr(tap, "customer", None)
                if hasattr(tap, "on_stereo") and customer in ids:
                    stereo_taps.append((tap, mixer))
                    stereo_rows.append(len(parties) + ids.index(customer))
                else:
                    general.append(tap)
            if general:
                tapped.append((mixer, len(parties), len(mixer.parties)))
            parties.extend(mixer.parties)
            owner.extend([index] * len(mixer.parties))
        self._tapped = tapped
        self._stereo_taps = stereo_taps
        self._stereo_rows = np.array(stereo_rows, dtype=np.intp)
        self._parties = parties
        self._starts = np.array(starts, dtype=np.intp)
        self._owner = np.array(owner, dtype=np.intp)
        self._pcma_rows = np.array([i for i, p in enumerate(parties)
                                    if p.leg.payload_type == PCMA], dtype=np.intp)
        self.dirty = False

    def tick(self, now: float) -> bool:
        if self.dirty:
            self._rebuild()
        if not self.mixers:
            return False  # idle: the scheduler forgets us until a mixer joins
        for mixer in self.mixers:
            if not mixer.plain and not mixer.closed:
                mixer.tick(now)
        parties = self._parties
        if not parties:
            return True
        silence = bytes([g711.ULAW_SILENCE]) * FRAME_SAMPLES
        frames = []
        for party in parties:
            if party.inbox:
                payload, pt = party.inbox.popleft()
                if pt == PCMA:
                    payload = g711.alaw_to_ulaw(payload)
                frames.append(payload[:FRAME_SAMPLES].ljust(FRAME_SAMPLES, b"\xff"))
            else:
                frames.append(silence)
        codes = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_SAMPLES)
        sent = _DECODE[PCMU][codes]
        totals = np.add.reduceat(sent, self._starts, axis=0)
        heard = totals[self._owner] - sent
        np.clip(heard, -32768, 32767, out=heard)
        for mixer, first, rows in self._tapped:
            mixer.feed_taps(sent[first:first + rows], heard[first:first + rows])
        if self._stereo_taps:
            rows = self._stereo_rows
            stereo = np.empty((len(rows), FRAME_SAMPLES, 2), dtype=np.int16)
            stereo[:, :, 0] = sent[rows]
            stereo[:, :, 1] = heard[rows]
            for j, (tap, mixer) in enumerate(self._stereo_taps):
                try:
                    tap.on_stereo(stereo[j])
                except Exception:  # a failing recorder must not stop anyone's audio
                    log.exception("tap failed on mixer %s; detached", mixer.name)
                    if tap in mixer._taps:
                        mixer._taps.remove(tap)
                    self.dirty = True
        index = (heard >> 2) + 8192
        out = _ENCODE[PCMU][index]
        if len(self._pcma_rows):
            out[self._pcma_rows] = _ENCODE[PCMA][index[self._pcma_rows]]
        for row, party in enumerate(parties):
            party.leg.send_frame(out[row].tobytes())
        for mixer in self.mixers:
            if mixer.plain:
                mixer.ticks += 1
        return True
