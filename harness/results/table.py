"""Results as a table: one row per variant × runtime × metric, to CSV or parquet (pandas).

The rows are the same flat records the history database stores, plus run and recipe ids and what
each suite kind adds for tables (`SuiteKind.export_rows`; scored kinds: per-group accuracy,
corpus-level numbers `<suite>.corpus.<name>` such as POPE F1, MME acc+, CIDEr, failed item counts
and the mean paired change of graded metrics), so a notebook can join runs without parsing JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError

FORMATS = ("csv", "parquet")


def rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    from harness.results.history import flatten
    from harness.results.kinds import sections

    def row(variant: str, runtime: str, metric: str, value: Any, ci: Any) -> dict[str, Any]:
        low, high = (ci or [None, None])[:2]
        return {"run_id": summary["run_id"], "recipe": summary["recipe"], "variant": variant, "runtime": runtime,
                "metric": metric, "value": value, "ci_low": low, "ci_high": high}

    out = [row(variant, runtime, metric, value, [low, high])
           for variant, runtime, metric, value, low, high in flatten(summary)]
    for variant in summary["variants"]:
        name = variant["name"]
        for runtime, data in variant["runtimes"].items():
            for section, kind in sections().items():
                for suite, entry in data.get(section, {}).items():
                    out += [row(name, runtime, metric, value, ci)
                            for metric, value, ci in kind.export_rows(suite, entry)]
        if variant["status"] != "ok":
            out.append(row(name, "-", "failed", 1.0, None))
    return out


def export(summary: dict[str, Any], path: Path, fmt: str | None = None) -> int:
    """Write the table; the format comes from `fmt` or the file suffix. Returns the row count."""
    import pandas as pd

    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"export format '{fmt}' is not supported; use --format csv or parquet "
                          "(or a .csv / .parquet file name)")
    table = pd.DataFrame(rows(summary), columns=["run_id", "recipe", "variant", "runtime", "metric", "value",
                                                 "ci_low", "ci_high"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return len(table)
