"""Which services a node runs, built from the config: the ACD, case follow-up, the voice
service with its backends, and the digital channels — each handed its dependencies.

Start order is the order of `container.services`; stop is the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cases.follow_up import CaseFollowUp
from centrale.container import Container
from centrale.observability import Observability
from config.schema import CentraleConfig
from queues import AcdEngine, SqlAcdStore
from reports import ReportService
from reports.mailer import ReportMailer

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Runs a service's `run()` coroutine as a task between start() and stop()."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]],
                 stop: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._run, self._stop = run, stop
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await self._stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)
            self._task = None


def wire(c: Container) -> None:
    """Add the services to the container, in start order."""
    config = c.config
    acd = AcdEngine(config, c.clock, c.bus, SqlAcdStore(c.db))
    c.services["acd"] = acd
    if c.settings.redis_url:
        # Redis configured = routing on shared state, always (no flag: one node on Redis
        # is the one-member case of a cluster, so what runs in production is what is
        # tested). One offer at a time and capacity cluster-wide, take-over of a dead
        # node's tasks. Before the loop, so it stops after the loop does.
        from queues.shared.wiring import attach_shared_state

        c.services["acd_shared"] = attach_shared_state(
            acd, c.settings.redis_url, node_id=c.settings.node_id,
            prefix=c.settings.redis_prefix)
        from core.bus.redis import RedisStreamsBus

        if isinstance(c.bus, RedisStreamsBus):  # the bus is on the same Redis
            acd.announce_ends_through(c.bus.atomic_stream)
    c.services["acd_loop"] = BackgroundLoop("acd", acd.run, acd.stop)
    c.services["case_follow_up"] = CaseFollowUp(c.cases, c.bus)
    reports = ReportService(c.db, c.bus, c.clock, lambda: c.config)
    c.services["reports"] = reports
    c.services["report_mailer"] = ReportMailer(reports, node_id=c.settings.node_id)

    from pbx_bridge.voice import VoiceService

    voice = VoiceService(config=config, cases=c.cases, acd=acd, bus=c.bus, clock=c.clock,
                         node_id=c.settings.node_id)
    from ivr.queue_statistics import AcdQueueStatistics

    voice.interpreter.queue_stats = AcdQueueStatistics(acd)  # queue_stats.* in conditions
    c.services["voice"] = voice
    c.services["dialer"] = voice.click_to_call
    c.services["callbacks"] = voice.schedule_callback
    prompts = _prompt_library(c)
    c.services["prompts"] = prompts
    if config.server.sip.enabled:
        voice.sip = _sip_server(config, voice, prompts, c.settings)
        c.services["sip"] = voice.sip
        if config.server.webrtc.enabled:
            _wire_browser_phone(c, voice)
    if config.server.asterisk.enabled:
        from pbx_bridge.asterisk import AsteriskBackend

        backend = AsteriskBackend(config.server.asterisk, inbound=voice.handle_agi_call,
                                  hold_announcer=voice.hold_announcement)
        backend.add_listener(voice.on_asterisk_event)
        backend.survey_handler = voice.handle_agi_survey
        voice.asterisk = backend
        c.services["asterisk"] = backend
    _wire_call_control(c, voice, acd)
    if voice.browser_phone is not None and voice.sip_control is not None:
        from pbx_bridge.webrtc.ringer import BrowserFirstRinger

        # transfers, consults, conferences and monitoring ring browser phones too
        voice.sip_control.server = BrowserFirstRinger(voice.sip, voice.browser_phone,
                                                      lambda: voice.config)

    _wire_digital(c, acd)
    _wire_assist(c)
    if c.settings.redis_url:  # desktops may sit on any node: presence cluster-wide
        from web.desktop.presence_directory import RedisPresenceDirectory

        c.services["desktop_presence"] = RedisPresenceDirectory(
            c.settings.redis_url, prefix=c.settings.redis_prefix, node_id=c.settings.node_id)
    # last: its health checks and gauges read the services above
    c.services["observability"] = Observability(c.services, c.db, c.bus,
                                                redis_configured=bool(c.settings.redis_url))


def _wire_browser_phone(c: Container, voice: Any) -> None:
    """`services["browser_phone"]`: agents' pages as phones, on the SIP core's media
    engine (the desktop's websocket attaches itself to it when the web app starts)."""
    from pbx_bridge.webrtc.ice_ports import bind_ice_in_range
    from pbx_bridge.webrtc.phone import BrowserPhone, PhoneSettings

    webrtc = c.config.server.webrtc
    sip = c.config.server.sip
    bind_ice_in_range(sip.rtp_port_min, sip.rtp_port_max)  # one range for RTP and WebRTC
    phone = BrowserPhone(voice.sip.media, PhoneSettings.from_config(webrtc))
    voice.browser_phone = phone
    c.services["browser_phone"] = phone


def _wire_assist(c: Container) -> None:
    """Agent assist, with the model's HTTP client only when the config turns it on."""
    config = c.config
    if not config.assist.enabled:
        return
    import os

    from assist import AssistService

    model = None
    if config.assist.model.enabled:
        from centrale.model_client import ChatCompletionsClient

        env = config.assist.model.api_key_env
        key = os.environ.get(env) if env else None
        if env and not key:
            log.warning("assist.model.api_key_env names %s, which is not set: the model "
                        "is called without a key", env)
        model = ChatCompletionsClient(config.assist.model, api_key=key)
    c.services["assist"] = AssistService.from_config(
        config, config_dir=Path(c.loaded.directory), cases=c.cases, db=c.db, bus=c.bus,
        clock=c.clock, node_id=c.settings.node_id, model=model)


def _wire_call_control(c: Container, voice: Any, acd: AcdEngine) -> None:
    """`services["call_control"]`: the one CallControl the desktop and API use."""
    from pbx_bridge.control import CallControlService

    backends: dict[str, Any] = {}
    if voice.sip is not None:
        from pbx_bridge.sip.control import SipCallControl

        voice.sip_control = SipCallControl(voice.sip, acd=acd,
                                           agents=lambda: voice.config.agents)
        backends["sip"] = voice.sip_control
    if voice.asterisk is not None:
        from pbx_bridge.asterisk.control import AsteriskCallControl

        backends["asterisk"] = AsteriskCallControl(voice.asterisk, acd=acd,
                                                   agents=lambda: voice.config.agents)
    control = CallControlService(voice=voice, cases=c.cases, bus=c.bus, backends=backends,
                                 node_id=c.settings.node_id)
    if voice.sip_control is not None:
        voice.sip_control.report = control.report
        voice.sip_control.service = control
        voice.sip_control.queues = lambda: voice.config.queues
        voice.sip.refer_handler = voice.sip_control  # REFER from desk phones
        voice.sip.extension_handler = voice.sip_control  # phone → colleague's extension
        voice.sip.on_remote_hold = voice.sip_control.remote_hold_changed  # hold key
    voice.call_control = control
    c.services["call_control"] = control
    _wire_recordings(c, voice, control)


def _wire_recordings(c: Container, voice: Any, control: Any) -> None:
    """Recordings (docs/recording.md): the case-side service, the retention job, and
    each backend's recorder behind `services["call_recordings"]`."""
    from cases.recordings import RecordingRetention, RecordingService
    from pbx_bridge.recording import CallRecordings

    storage = c.config.server.recordings
    recordings = RecordingService(c.db, c.cases, c.clock, Path(storage.path))
    c.services["recordings"] = recordings
    c.services["recording_retention"] = RecordingRetention(recordings)
    backends: dict[str, Any] = {}
    writer = None
    if voice.sip_control is not None:
        from pbx_bridge.sip.recording import SipCallRecorder

        recorder = SipCallRecorder(recordings,
                                   header_sync_seconds=storage.header_sync_seconds)
        recorder.control = voice.sip_control
        recorder.report = control.report
        voice.sip_control.recorder = recorder
        backends["sip"] = recorder
        c.services["sip_recorder"] = recorder  # stops (drains) the writer thread
        writer = recorder.writer
    if voice.asterisk is not None and "asterisk" in control.backends:
        from pbx_bridge.asterisk.recording import AsteriskCallRecorder

        ast_recorder = AsteriskCallRecorder(voice.asterisk, recordings)
        control.backends["asterisk"].recorder = ast_recorder
        voice.asterisk.add_listener(ast_recorder.on_event)
        backends["asterisk"] = ast_recorder
    from pbx_bridge.voicemail import VoicemailStore

    voicemail = VoicemailStore(recordings, voice, writer)  # one writer thread
    voice.interpreter.voicemail = voicemail
    if voice.sip is not None:
        voice.sip.voicemail_target = voicemail.target
    call_recordings = CallRecordings(control, backends)
    if voice.sip_control is not None:
        voice.sip_control.on_connected = call_recordings.connected
    voice.on_asterisk_connected = call_recordings.connected
    c.services["call_recordings"] = call_recordings


def _prompt_library(c: Container) -> Any:
    from ivr.prompts import PromptLibrary

    source = Path(c.loaded.directory) / c.config.server.prompts_dir
    return PromptLibrary(source if source.is_dir() else None, Path("var") / "prompt-cache")


def _sip_server(config: CentraleConfig, voice: Any, prompts: Any, settings: Any) -> Any:
    from pbx_bridge.sip.ports import TrunkConfig
    from pbx_bridge.sip.server import SipServer

    def credentials(username: str) -> str | None:
        for agent in voice.config.agents:
            if agent.sip is not None and agent.sip.username == username:
                return agent.sip.password.get_secret_value()
        return None

    trunks = [TrunkConfig(
        name=t.name, allowed_ips=frozenset(t.allowed_ips), username=t.username,
        password=t.password.get_secret_value() if t.password else None, trusted=t.trusted,
        outbound_host=t.outbound_host, outbound_port=t.outbound_port,
        outbound_transport=t.outbound_transport, tls_server_name=t.tls_server_name,
        tls_client_names=frozenset(n.lower() for n in t.tls_client_names), srtp=t.srtp)
        for t in config.server.sip.trunks]
    def music(music_class: str) -> Path | None:
        """`<prompts_dir>/moh/<class>.wav`, else the default class; else a built-in tone."""
        if prompts.source_dir is None:
            return None
        for name in (music_class, "default"):
            path = prompts.source_dir / "moh" / f"{name}.wav"
            if path.is_file():
                return path
        return None

    shared = None
    if settings.redis_url:  # several nodes: a phone registered at one rings from any
        from pbx_bridge.sip.directory import SharedRegistrations

        shared = SharedRegistrations.from_url(settings.redis_url, node_id=settings.node_id,
                                              prefix=settings.redis_prefix)
    def phone_srtp(username: str) -> str | None:
        for agent in voice.config.agents:
            if agent.sip is not None and agent.sip.username == username:
                return agent.sip.srtp
        return None

    return SipServer(config.server.sip, inbound_handler=voice.handle_sip_call,
                     credentials=credentials, trunks=trunks, prompts=prompts, music=music,
                     shared_registrations=shared, phone_srtp=phone_srtp,
                     max_calls_in_setup=config.server.sip.max_calls_in_setup,
                     max_setup_wait=config.server.sip.max_setup_wait_seconds)


def _wire_digital(c: Container, acd: AcdEngine) -> None:
    try:
        import digital
    except ImportError:  # pragma: no cover - bootstrap only
        return
    build = getattr(digital, "build", None)
    if build is None:
        return
    channels = build(c.config, c.db, c.bus, c.clock, c.cases, acd,
                     node_id=c.settings.node_id)
    c.services["digital"] = channels
