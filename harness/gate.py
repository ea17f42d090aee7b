"""The CI gate: exit 0 when every gated variant ran and met every target, 1 otherwise.

A target that could not be measured fails the gate (an unmeasured budget is not a met one).
Writes JUnit XML (one testcase per variant × runtime × target) for CI systems to display.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from harness.errors import RunDirError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


@dataclass
class Check:
    variant: str
    runtime: str
    target: str
    ok: bool
    message: str


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    if not path.exists():
        raise RunDirError(f"'{run_dir}' has no results.json; it is not a finished run "
                          f"(try `harness run --resume {run_dir}`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RunDirError(f"'{path}' is corrupt; re-create it with `harness report {run_dir}`") from None


def checks(summary: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    for variant in summary["variants"]:
        if not variant.get("gate", True):
            continue
        if variant["status"] != "ok":
            message = f"variant {variant['status']}: {variant.get('error')}"
            out.append(Check(variant["name"], "-", "ran", False, message))
            continue
        for runtime, data in variant["runtimes"].items():
            for target, verdict in data.get("targets", {}).items():
                ok = verdict["status"] == "pass"
                if verdict["status"] == "not measured":
                    message = f"{target} not measured ({verdict.get('why', '')})"
                else:
                    noise = " (within noise)" if verdict.get("within_noise") else ""
                    message = (f"{target}: {verdict['value']:.4g} {verdict.get('unit', '')} vs limit "
                               f"{verdict['limit']}{noise}")
                out.append(Check(variant["name"], runtime, target, ok, message))
    return out


def write_junit(results: list[Check], path: Path) -> None:
    suite = ET.Element("testsuite", name="harness-gate", tests=str(len(results)),
                       failures=str(sum(not c.ok for c in results)))
    for check in results:
        case = ET.SubElement(suite, "testcase", classname=f"{check.variant}.{check.runtime}", name=check.target)
        if not check.ok:
            ET.SubElement(case, "failure", message=check.message).text = check.message
        else:
            ET.SubElement(case, "system-out").text = check.message
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def gate(run_dir: Path, junit: Path | None = None) -> tuple[int, list[Check]]:
    results = checks(load_summary(run_dir))
    write_junit(results, junit or run_dir / "gate.junit.xml")
    return (EXIT_PASS if all(c.ok for c in results) else EXIT_FAIL), results
