"""Recordings on the case record: their rows, who may hear them, the audit, retention.

The voice backends write the files (`pbx_bridge.media.recorder`, Asterisk's
MixMonitor); this service is the one door to what is known about them:

- `begin` creates the row (status `recording`) and says where the file goes: always a
  path relative to the recordings directory, `YYYY/MM/DD/<id>.wav`;
- `finish` stores duration, size, checksum, parties, pauses and markers;
- `open_for` is the access rule (docs/recording.md): the agents who handled the case,
  supervisors and admins; anyone else is refused (403) — and every play, download
  and refusal is written to `recording_access` and the `centrale.audit` log;
- `apply_retention` deletes files past their retention and `erase_customer` deletes a
  customer's (GDPR art. 17); both keep the row with `deleted_at` and the reason, and
  say so on the case timeline, so the deletion itself is on the record.

A row whose path would resolve outside the recordings directory is treated as absent
(404): a tampered row can never serve another file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlmodel import col, select

from cases.recording_tables import Recording, RecordingAccess
from cases.service import CaseService, NotFound
from cases.tables import Case
from core.clock import Clock
from core.db import Database
from core.ids import new_id

log = logging.getLogger(__name__)
audit = logging.getLogger("centrale.audit")


class Forbidden(Exception):
    """The user may not hear this recording (HTTP 403)."""


class Viewer(Protocol):
    username: str
    role: str  # agent | supervisor | admin
    agent_id: str | None


@dataclass
class RecordingFile:
    recording: Recording
    path: Path


class RecordingService:
    def __init__(self, db: Database, cases: CaseService, clock: Clock, root: Path) -> None:
        self.db = db
        self.cases = cases
        self.clock = clock
        self.root = root

    # -- files ----------------------------------------------------------------
    def absolute(self, recording: Recording) -> Path | None:
        """The recording's file, or None when its path leaves the recordings directory."""
        root = self.root.resolve()
        candidate = (root / recording.path).resolve()
        if not candidate.is_relative_to(root) or candidate == root:
            return None
        return candidate

    # -- life cycle -----------------------------------------------------------
    def plan(self) -> tuple[str, Path]:
        """A new recording's id and file, before its row exists: the media side starts
        writing at once and the row follows (no audio lost to a database round trip)."""
        rec_id = new_id()
        return rec_id, self.root / self._rel(rec_id)

    def _rel(self, rec_id: str) -> str:
        return f"{self.clock.now():%Y/%m/%d}/{rec_id}.wav"

    async def begin(self, *, case_id: str, kind: str, backend: str, retention_days: int,
                    call_id: str | None = None, queue_id: str | None = None,
                    agent_id: str | None = None, customer_id: str | None = None,
                    planned: tuple[str, Path] | None = None) -> tuple[Recording, Path]:
        now = self.clock.now()
        rec_id = planned[0] if planned else new_id()
        if customer_id is None:
            with contextlib.suppress(NotFound):
                customer_id = (await self.cases.get_case(case_id)).customer_id
        rel = (planned[1].relative_to(self.root).as_posix() if planned
               else self._rel(rec_id))
        parties = [{"agent_id": agent_id, "from": 0.0, "to": None}] if agent_id else []
        row = Recording(id=rec_id, case_id=case_id, customer_id=customer_id, call_id=call_id,
                        kind=kind, backend=backend, queue_id=queue_id, parties=parties,
                        pauses=[], markers=[], status="recording", path=rel, started_at=now,
                        retention_days=retention_days,
                        expires_at=now + timedelta(days=retention_days))
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
            await s.refresh(row)
        return row, self.root / rel

    async def register(self, *, case_id: str, kind: str, backend: str, rel_path: str,
                       retention_days: int, seconds: float, call_id: str | None = None,
                       queue_id: str | None = None, customer_id: str | None = None,
                       checksum: str | None = None) -> Recording:
        """A file already written (a voicemail): its row, complete at once."""
        row, _ = await self.begin(case_id=case_id, kind=kind, backend=backend,
                                  retention_days=retention_days, call_id=call_id,
                                  queue_id=queue_id, customer_id=customer_id)
        async with self.db.session() as s:
            fresh = await s.get(Recording, row.id)
            assert fresh is not None
            fresh.path = rel_path
            s.add(fresh)
            await s.commit()
        row.path = rel_path
        path = self.absolute(row)
        size = path.stat().st_size if path is not None and path.is_file() else 0
        return await self.finish(row.id, seconds=seconds, size_bytes=size, checksum=checksum,
                                 error=None if size else "the file is missing")

    async def finish(self, recording_id: str, *, seconds: float, size_bytes: int,
                     checksum: str | None, error: str | None = None,
                     parties: list[dict[str, Any]] | None = None,
                     pauses: list[dict[str, Any]] | None = None,
                     markers: list[dict[str, Any]] | None = None) -> Recording:
        async with self.db.session() as s:
            row = await s.get(Recording, recording_id)
            if row is None:
                raise NotFound(f"recording {recording_id} not found")
            row.ended_at = self.clock.now()
            row.duration_seconds = round(seconds, 2)
            row.size_bytes = size_bytes
            row.checksum = checksum
            row.error = error[:300] if error else None
            row.status = "failed" if error and not size_bytes else "complete"
            if parties is not None:
                row.parties = parties
            if pauses is not None:
                row.pauses = pauses
            if markers is not None:
                row.markers = markers
            s.add(row)
            await s.commit()
            await s.refresh(row)
        return row

    async def get(self, recording_id: str) -> Recording:
        async with self.db.session() as s:
            row = await s.get(Recording, recording_id)
        if row is None:
            raise NotFound(f"recording {recording_id} not found")
        return row

    async def for_case(self, case_id: str) -> list[Recording]:
        async with self.db.session() as s:
            return list(await s.exec(select(Recording).where(Recording.case_id == case_id)
                                     .order_by(col(Recording.started_at))))

    # -- access ---------------------------------------------------------------
    async def handled_case(self, agent_id: str, case_id: str) -> bool:
        """Did this agent work the case: a recording they are in, the case's last
        agent, or a timeline entry (call, task, message) carrying their id?"""
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
            if case is None:
                return False
            if case.last_agent_id == agent_id:
                return True
            recs = await s.exec(select(Recording).where(Recording.case_id == case_id))
            for rec in recs:
                if any(p.get("agent_id") == agent_id for p in rec.parties or []):
                    return True
        for entry in await self.cases.timeline(case_id):
            meta = entry.meta or {}
            if agent_id in (meta.get("agent_id"), meta.get("to_agent_id")):
                return True
        return False

    async def may_access(self, viewer: Viewer, recording: Recording) -> bool:
        if viewer.role in ("supervisor", "admin"):
            return True
        if viewer.role != "agent" or not viewer.agent_id:
            return False
        return await self.handled_case(viewer.agent_id, recording.case_id)

    async def open_for(self, recording_id: str, viewer: Viewer, action: str) -> RecordingFile:
        """The file for a play or download, audited; NotFound (404) or Forbidden (403)."""
        try:
            row = await self.get(recording_id)
        except NotFound:
            raise
        if not await self.may_access(viewer, row):
            await self._audit(row.id, viewer, "denied")
            raise Forbidden(f"{viewer.username} may not hear recording {row.id}")
        path = self.absolute(row)
        if row.deleted_at is not None or path is None or not path.is_file():
            if path is None:
                log.warning("recording %s: path %r leaves the recordings directory; refused",
                            row.id, row.path)
            raise NotFound(f"recording {recording_id} has no file")
        await self._audit(row.id, viewer, action)
        return RecordingFile(row, path)

    async def _audit(self, recording_id: str, viewer: Viewer, action: str) -> None:
        now = self.clock.now()
        async with self.db.session() as s:
            s.add(RecordingAccess(id=new_id(), recording_id=recording_id,
                                  username=viewer.username[:64], role=viewer.role[:16],
                                  action=action, at=now))
            await s.commit()
        audit.info("recording %s recording=%s by=%s role=%s", action, recording_id,
                   viewer.username, viewer.role)

    async def accesses(self, recording_id: str) -> list[RecordingAccess]:
        async with self.db.session() as s:
            return list(await s.exec(select(RecordingAccess).where(
                RecordingAccess.recording_id == recording_id).order_by(col(RecordingAccess.at))))

    # -- deletion -------------------------------------------------------------
    async def _delete(self, rows: list[Recording], reason: str) -> int:
        deleted = 0
        now = self.clock.now()
        for row in rows:
            path = self.absolute(row)
            if path is not None:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.error("recording %s: cannot delete %s: %s", row.id, path, exc)
                    continue  # stays due: the next run tries again
            async with self.db.session() as s:
                fresh = await s.get(Recording, row.id)
                if fresh is None or fresh.deleted_at is not None:
                    continue
                fresh.deleted_at = now
                fresh.deleted_reason = reason
                fresh.status = "deleted"
                s.add(fresh)
                await s.commit()
            deleted += 1
            audit.info("recording deleted recording=%s reason=%s", row.id, reason)
            with contextlib.suppress(Exception):
                await self.cases.add_timeline(
                    row.case_id, kind="recording", channel="voice", direction="internal",
                    body=f"Recording deleted ({reason})",
                    meta={"event": "recording_deleted", "recording_id": row.id,
                          "reason": reason, "started_at": row.started_at.isoformat()})
        return deleted

    async def apply_retention(self, now: datetime | None = None) -> int:
        """Delete every recording past its retention; returns how many."""
        now = now or self.clock.now()
        async with self.db.session() as s:
            rows = list(await s.exec(select(Recording).where(
                col(Recording.deleted_at).is_(None), col(Recording.status) != "recording",
                col(Recording.expires_at) <= now)))
        return await self._delete(rows, "retention")

    async def erase_customer(self, customer_id: str) -> int:
        """A customer's erasure request: every recording of theirs goes, now."""
        async with self.db.session() as s:
            case_ids = [c.id for c in await s.exec(select(Case).where(
                Case.customer_id == customer_id))]
            rows = list(await s.exec(select(Recording).where(
                col(Recording.deleted_at).is_(None),
                (col(Recording.customer_id) == customer_id)
                | col(Recording.case_id).in_(case_ids or [""]))))
        return await self._delete(rows, "erasure")


class RecordingRetention:
    """The retention job: `apply_retention` at start and then every `every_seconds`
    (hourly: a file is gone within the hour after its last retention day)."""

    def __init__(self, recordings: RecordingService, every_seconds: float = 3600.0) -> None:
        self.recordings = recordings
        self.every_seconds = every_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recording-retention")

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.recordings.apply_retention()
                if deleted:
                    log.info("retention deleted %d recording(s)", deleted)
            except Exception:
                log.exception("recording retention run failed; retried next time")
            await asyncio.sleep(self.every_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
