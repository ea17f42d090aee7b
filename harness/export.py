"""Results as a table: one row per variant × runtime × metric, to CSV or parquet (pandas).

The rows are the same flat records the history database stores, plus run and recipe ids and
per-group accuracy, corpus-level numbers (`<suite>.corpus.<name>`: POPE F1, MME acc+, CIDEr), failed
item counts and the mean paired change of graded metrics, so a notebook can join runs without parsing report JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError

FORMATS = ("csv", "parquet")


def rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    from harness.store import flatten

    out = [{"run_id": summary["run_id"], "recipe": summary["recipe"], "variant": variant, "runtime": runtime,
            "metric": metric, "value": value, "ci_low": low, "ci_high": high}
           for variant, runtime, metric, value, low, high in flatten(summary)]
    for variant in summary["variants"]:
        for runtime, data in variant["runtimes"].items():
            for suite, acc in data.get("accuracy", {}).items():
                extra = {f"corpus.{k}": v for k, v in (acc.get("corpus") or {}).items()}
                extra |= {k: acc.get(k) for k in ("failed_items", "mean_diff") if acc.get(k) is not None}
                for name, value in extra.items():  # POPE F1, MME acc+, CIDEr...; failed item count
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        low, high = (acc.get("mean_diff_ci") or [None, None])[:2] if name == "mean_diff" \
                            else (None, None)
                        out.append({"run_id": summary["run_id"], "recipe": summary["recipe"],
                                    "variant": variant["name"], "runtime": runtime, "metric": f"{suite}.{name}",
                                    "value": float(value), "ci_low": low, "ci_high": high})
                for group, result in acc.get("groups", {}).items():
                    low, high = (result.get("ci") or [None, None])[:2]
                    out.append({"run_id": summary["run_id"], "recipe": summary["recipe"], "variant": variant["name"],
                                "runtime": runtime, "metric": f"{suite}.{group}.score", "value": result["score"],
                                "ci_low": low, "ci_high": high})
        if variant["status"] != "ok":
            out.append({"run_id": summary["run_id"], "recipe": summary["recipe"], "variant": variant["name"],
                        "runtime": "-", "metric": "failed", "value": 1.0, "ci_low": None, "ci_high": None})
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
