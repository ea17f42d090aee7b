"""What did not get measured in a run: every failed variant and every failed or unavailable
suite, with its one-line reason — what `harness run` prints last and turns into its exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness import exits


@dataclass(frozen=True)
class Unmeasured:
    variant: str
    runtime: str  # "-" for a variant that failed as a whole
    suite: str  # "-" likewise
    status: str  # failed / error / unavailable
    reason: str

    def line(self) -> str:
        if self.runtime == "-":
            return f"variant {self.variant} {self.status}: {self.reason}"
        return f"{self.variant} on {self.runtime}: suite '{self.suite}' {self.status}: {self.reason}"


def unmeasured(summary: dict[str, Any]) -> list[Unmeasured]:
    out: list[Unmeasured] = []
    for variant in summary["variants"]:
        if variant["status"] != "ok":
            out.append(Unmeasured(variant["name"], "-", "-", variant["status"], str(variant.get("error"))))
            continue
        for runtime, data in variant["runtimes"].items():
            for status, key in (("error", "errors"), ("unavailable", "unavailable")):
                out += [Unmeasured(variant["name"], runtime, suite, status, str(reason))
                        for suite, reason in (data.get(key) or {}).items()]
    return out


def run_exit_code(summary: dict[str, Any]) -> int:
    return exits.INCOMPLETE if unmeasured(summary) else exits.OK
