"""Call recording and voicemail settings: a queue's `recording:`, a voicemail node's
stop rules, and where the files live (`server.recordings`).

Why these knobs: they are the ones a contact center moving off Avaya/Mitel sets per
queue (record everything for a complaints line, nothing for HR, on the agent's request
for sales), plus the consent message that many jurisdictions require before a caller is
recorded. Retention is per queue because it is a per-purpose decision (GDPR art. 5(1)(e)).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from config.schema.base import Strict

RecordingMode = Literal["off", "always", "on_demand"]


class QueueRecording(Strict):
    """`queues[].recording`.

    - `mode`: `off` (never), `always` (from the moment the agent answers), `on_demand`
      (the agent starts it from the desktop or the API).
    - `consent_prompt`: a prompt played to the caller before the agent is connected
      ("this call may be recorded"); `decline_key`: a key the caller may press during
      it to be connected unrecorded. Setting a key is the policy allowing a refusal;
      without one the caller is told and cannot decline (a line that must record).
    - `retention_days`: files older than this are deleted by the retention job.
    """

    mode: RecordingMode = "off"
    consent_prompt: str | None = Field(None, min_length=1, max_length=200)
    decline_key: str | None = Field(None, pattern=r"^[0-9*#]$")
    retention_days: int = Field(90, ge=1, le=3650)

    @model_validator(mode="after")
    def _decline_needs_consent(self) -> QueueRecording:
        if self.decline_key is not None and self.consent_prompt is None:
            raise ValueError("decline_key needs a consent_prompt (the caller must be "
                             "told which key declines)")
        return self


class RecordingStorage(Strict):
    """`server.recordings`: where recording files are written (relative to the directory
    Centrale runs in, like the database file), and the default retention for recordings
    no queue policy covers (voicemail of a flow without a queue)."""

    path: str = Field("var/recordings", min_length=1)
    retention_days: int = Field(90, ge=1, le=3650)
    # How often the WAV header's sizes are rewritten while a call is recorded: a crash
    # (kill -9, power loss) leaves a file whose header covers all but this many seconds;
    # the rest is still in the file and any reader that trusts the file length gets it.
    header_sync_seconds: float = Field(2.0, gt=0, le=60)

