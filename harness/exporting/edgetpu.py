"""The Edge TPU op-mapping report of a full-int8 LiteRT graph, from Coral's `edgetpu_compiler`
where it is installed (x86-64 Debian/Ubuntu; it is not a pip package and is not on these machines).

The compiler maps each op of a fully int8-quantized graph to the Edge TPU or leaves it on the CPU and
prints why. The harness runs it into a temporary folder and keeps only the report (the compiled graph
runs only on an Edge TPU, so it is not part of the artifact): compiler version, on-chip / off-chip
parameter memory, subgraphs, ops on the TPU and on the CPU, and the per-op table with each status.
Without the compiler nothing is run and the reason is recorded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

COMPILER = "edgetpu_compiler"
TIMEOUT_S = 600
NOT_INSTALLED = (f"{COMPILER} is not on PATH: the Edge TPU op mapping was not run (Coral's compiler installs from "
                 "its apt repository on x86-64 Debian/Ubuntu; see docs/deployment/android.md, Edge TPU)")
_FIELDS = {"version": r"Edge TPU Compiler version (\S+)", "compile_ms": r"compiled successfully in (\d+) ms",
           "on_chip_memory": r"On-chip memory used for caching model parameters: (\S+)",
           "off_chip_memory": r"Off-chip memory used for streaming uncached model parameters: (\S+)",
           "subgraphs": r"Number of Edge TPU subgraphs: (\d+)", "total_ops": r"Total number of operations: (\d+)",
           "tpu_ops": r"Number of operations that will run on Edge TPU: (\d+)",
           "cpu_ops": r"Number of operations that will run on CPU: (\d+)"}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"
PARTIAL = "not all operations are supported by the Edge TPU"


def parse(text: str) -> dict[str, Any]:
    """The compiler's stdout → the report; ValueError when it is not a compiler report."""
    out: dict[str, Any] = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, text)
        if match:
            value = match.group(1)
            out[key] = int(value) if value.isdigit() else value
    if "total_ops" not in out:
        raise ValueError(f"not an {COMPILER} report (no 'Total number of operations' line)")
    table = text.split("\nOperator", 1)[1].splitlines()[1:] if "\nOperator" in text else []
    out["ops"] = [{"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)}
                  for line in table if (m := _ROW.match(line.strip()))]
    if "tpu_ops" not in out and PARTIAL not in text:  # the split is printed only when some ops stay on the CPU
        out["tpu_ops"], out["cpu_ops"] = out["total_ops"], 0
    return out


def installed() -> bool:
    return shutil.which(COMPILER) is not None


def compile_report(graph: Path) -> dict[str, Any]:
    """Compile `graph` for the Edge TPU in a temporary folder and return the parsed report, or
    `{"not_run": reason}` without the compiler, or `{"error": line}` when it fails."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        return {"not_run": NOT_INSTALLED}
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run([compiler, "-s", "-o", folder, str(graph)], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"{COMPILER} did not finish within {TIMEOUT_S} s on {graph.name}"}
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        return {"error": f"{COMPILER} failed on {graph.name} (exit {done.returncode}): {last[-1] if last else ''}"}
    try:
        return parse(done.stdout)
    except ValueError as exc:
        return {"error": f"{graph.name}: {exc}"}


def summary_line(name: str, report: dict[str, Any]) -> str:
    """One note line per graph: what ran where, or why nothing ran."""
    if "not_run" in report or "error" in report:
        return f"Edge TPU {name}: {report.get('not_run') or report['error']}"
    on_cpu = sorted({r["op"] for r in report["ops"] if r["status"] != MAPPED})
    cpu = report.get("cpu_ops", "?")
    return (f"Edge TPU {name}: {report.get('tpu_ops', '?')}/{report['total_ops']} ops on the TPU, {cpu} on the CPU"
            f"{' (' + ', '.join(on_cpu) + ')' if on_cpu else ''}; {report.get('subgraphs', '?')} subgraph(s), "
            f"on-chip parameters {report.get('on_chip_memory', '?')}, off-chip {report.get('off_chip_memory', '?')} "
            f"(compiler {report.get('version', '?')})")
