"""The process limits a node needs for its calls (issue 21: 1,000 concurrent calls).

Every call holds a socket (its RTP port), every TLS/TCP phone a connection: a node
with 1,000 calls on hold has ~1,100 files open. A shell or a systemd service starts
with a soft RLIMIT_NOFILE of 1,024 (the hard limit is usually far higher), and at that
limit every `socket()` and `open()` fails: new calls get `503` (no RTP port), and so
does whatever else needs a descriptor then — a web client's connection, a database
file (bench/concurrent_calls_bench.py --node-nofile 1024: the node stuck at 999
descriptors and ~950 calls, a timeline batch failed). Asterisk raises its own limit at
start (`maxfiles` in asterisk.conf); so does the node: the soft limit up to the hard
one, which only the administrator can raise.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# What the node raises its soft limit to, at most: beyond the calls (the SIP core
# refuses more than SIP_MAX_CALLS, 2,000 by default) and TCP/TLS connections
# (`tcp_max_connections`, 2,000 by default) there is little use for more, and a huge
# limit slows whatever walks all descriptors (closing them in a child process).
WANTED_OPEN_FILES = 65536
# Files a node holds besides its calls and SIP connections: database, logs, web
# clients, Redis, prompts being read.
OTHER_FILES = 256


def _sip_max_calls() -> int:
    """The SIP core's call limit, read from `SipServer(max_calls=...)`'s default: one
    RTP socket each. Read, not copied, so the descriptors the node asks for follow the
    SIP core if its limit changes (a copy here would silently fall behind)."""
    import inspect

    from pbx_bridge.sip.server import SipServer

    default = inspect.signature(SipServer.__init__).parameters["max_calls"].default
    return int(default)


SIP_MAX_CALLS = _sip_max_calls()


def open_files_needed(sip_enabled: bool, tcp_max_connections: int) -> int:
    """Descriptors a node at its own limits holds: every call's RTP socket, every SIP
    TCP/TLS connection, and the rest."""
    return OTHER_FILES + (SIP_MAX_CALLS + tcp_max_connections if sip_enabled else 0)


def raise_open_files_limit(needed: int, wanted: int = WANTED_OPEN_FILES) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never lowering it, never above
    the hard limit) and return the soft limit now in force. Logs a warning when it is
    below `needed`: the node then refuses calls before its own limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %s to %s: %s",
                        soft, target, exc)
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open files limit %s (hard %s) is below the %s this node may need: calls "
            "beyond ~%s get 503 and the web server stops accepting; raise the hard "
            "limit (systemd LimitNOFILE=, docker --ulimit nofile=, ulimit -Hn)",
            soft, hard, needed, max(0, soft - OTHER_FILES))
    return soft
