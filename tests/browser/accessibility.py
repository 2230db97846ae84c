"""axe-core in the page: the accessibility check of the browser tests (labels, focus,
contrast, landmarks). Any `serious` or `critical` violation fails the test, with what
and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


async def serious_violations(page: Any) -> list[str]:
    """Run axe-core on the page as it is now; the serious and critical findings."""
    await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})")
    out = []
    for v in result["violations"]:
        if v.get("impact") in ("serious", "critical"):
            targets = ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            out.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    return out


async def assert_accessible(page: Any) -> None:
    found = await serious_violations(page)
    assert not found, "axe-core: " + "; ".join(found)
