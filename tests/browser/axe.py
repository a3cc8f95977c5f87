"""axe-core in the page (the copy bundled by axe-playwright-python): any browser test can call
`assert_no_serious(page)` to fail on serious or critical accessibility violations."""

from axe_playwright_python.sync_playwright import Axe

_AXE = Axe()
BLOCKING = ("serious", "critical")


def violations(page, impacts=BLOCKING):
    """Run axe on the page as it is now; return its violations of these impacts (axe's dicts)."""
    results = _AXE.run(page, options={"resultTypes": ["violations"]})
    return [v for v in results.response["violations"] if v.get("impact") in impacts]


def describe(found):
    """One readable block per violation: rule, impact, help, and the offending elements."""
    lines = []
    for v in found:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({len(v['nodes'])} element(s))")
        for node in v["nodes"][:8]:
            target = " ".join(str(t) for t in node.get("target", []))
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {target}: {summary[:300]}")
    return "\n".join(lines)


def assert_no_serious(page, label=""):
    found = violations(page)
    assert not found, f"axe-core on {label or page.url}:\n{describe(found)}"
