"""Render a `RunComparison` as one self-contained, escaped HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_comparison(comparison: Any, out: Path) -> Path:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=4: "" if x is None else f"{x:.{d}g}"
    html = env.get_template("compare.html.j2").render(c=comparison)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
