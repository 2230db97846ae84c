"""The node raises its open files limit itself (a shell's 1,024 holds ~900 calls)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from centrale.limits import OTHER_FILES, SIP_MAX_CALLS, open_files_needed

PROBE = """
import json, logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from centrale.limits import raise_open_files_limit
now = raise_open_files_limit(int(sys.argv[1]), wanted=int(sys.argv[2]))
print(json.dumps({"returned": now, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))
"""


def _probe(start_soft: int, needed: int, wanted: int) -> tuple[dict[str, int], str]:
    """Run the function in a child started with `start_soft` (the test process keeps
    its own limit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (start_soft, hard))

    proc = subprocess.run([sys.executable, "-c", PROBE, str(needed), str(wanted)],
                          preexec_fn=lower, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout), proc.stderr


def _hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_a_node_started_with_a_low_soft_limit_raises_it_towards_the_hard_one() -> None:
    wanted = min(_hard(), 4096)
    assert wanted > 512, "the machine's hard limit leaves nothing to raise"
    result, stderr = _probe(512, needed=wanted, wanted=wanted)
    assert result == {"returned": wanted, "soft": wanted}
    assert "below" not in stderr


def test_a_limit_it_cannot_reach_is_logged_with_how_to_raise_it() -> None:
    hard = _hard()
    result, stderr = _probe(256, needed=hard + 1, wanted=hard + 100)
    assert result["soft"] == hard  # as far as the hard limit lets it
    assert f"open files limit {hard}" in stderr and "LimitNOFILE" in stderr


def test_a_higher_soft_limit_is_never_lowered() -> None:
    start = min(_hard(), 3000)
    result, _ = _probe(start, needed=100, wanted=200)
    assert result["soft"] == start


def test_what_a_node_needs_counts_every_call_and_connection() -> None:
    assert open_files_needed(True, 500) == OTHER_FILES + SIP_MAX_CALLS + 500
    assert open_files_needed(False, 500) == OTHER_FILES
