"""Voicemail as a recording on the case, with a callback task for the queue (the
IVR's `VoicemailPort`).

The SIP core's leg writes the message under the recordings directory
(`voicemail/YYYY/MM/DD/<id>.wav`, from `target`); Asterisk's `Record` AGI command
writes `centrale/recordings/<call id>.wav` under its sounds directory, which a
deployment mounts as `asterisk-voicemail/` inside Centrale's recordings directory
(docs/recording.md). Either way
`store` then makes the recording's row (kind `voicemail`), and — when the caller's
number is known and the node names a queue — a voice callback task in that queue, so
the next free agent calls back with the message on the case.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cases.identities import normalise_phone
from cases.recordings import RecordingService
from core import metrics
from core.ids import new_id
from ivr.ports import VoicemailMessage
from pbx_bridge.media.recorder import HEADER_BYTES, RATE, RecordingWriter, file_checksum

log = logging.getLogger(__name__)

ASTERISK_PREFIX = "asterisk:centrale/recordings/"


class VoicemailStore:
    def __init__(self, recordings: RecordingService, voice: Any,
                 writer: RecordingWriter | None = None) -> None:
        self.recordings = recordings
        self.voice = voice  # pbx_bridge.voice.VoiceService: config and the ACD
        self.writer = writer or RecordingWriter()

    def target(self) -> tuple[str, Path, RecordingWriter]:
        """Where the SIP core writes the next message (a reference and its path)."""
        ref = f"voicemail/{datetime.now(UTC):%Y/%m/%d}/{new_id()}.wav"
        return ref, self.recordings.root / ref, self.writer

    @staticmethod
    def rel_path(media: str) -> str:
        if media.startswith(ASTERISK_PREFIX):
            return "asterisk-voicemail/" + media[len(ASTERISK_PREFIX):]
        return media

    async def store(self, message: VoicemailMessage) -> dict[str, Any]:
        config = self.voice.config
        rel = self.rel_path(message.media)
        backend = "asterisk" if message.media.startswith("asterisk:") else "sip"
        path = self.recordings.root / rel
        seconds, checksum = message.seconds, None
        if path.is_file():  # the file's own length, not the IVR's stopwatch
            seconds = max(0, path.stat().st_size - HEADER_BYTES) / (2 * RATE)
            checksum = file_checksum(path)
        retention = message.retention_days or config.server.recordings.retention_days
        row = await self.recordings.register(
            case_id=message.case_id, kind="voicemail", backend=backend, rel_path=rel,
            retention_days=retention, seconds=seconds, call_id=message.call_id,
            queue_id=message.queue_id, customer_id=message.customer_id, checksum=checksum)
        metrics.recordings_started.labels(backend, "voicemail").inc()
        if row.status == "failed":
            metrics.recordings_failed.labels(backend, "voicemail").inc()
        task_id = None
        if message.queue_id and message.caller and message.customer_id:
            try:
                number = normalise_phone(message.caller, config.server.default_region)
                task = await self.voice.acd.enqueue(
                    queue_id=message.queue_id, channel="voice", case_id=message.case_id,
                    customer_id=message.customer_id, callback_number=number,
                    attributes={"voicemail": row.id, "recording_id": row.id,
                                "call_id": message.call_id})
                task_id = task.id
            except Exception as exc:
                log.warning("voicemail %s: no callback task (%s)", row.id, exc)
        return {"recording_id": row.id, "task_id": task_id,
                "seconds": round(row.duration_seconds or seconds, 1)}
