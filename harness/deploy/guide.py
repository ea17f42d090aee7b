"""`harness deploy-guide`: which export a platform uses, which artifact a target names, and the
Markdown rendered from the artifact's facts (`facts.collect`) with Jinja templates."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.build.artifact import BUILD_RECORD, has_build_record
from harness.errors import ConfigError, RuntimeBackendError
from harness.exporting.coreml import IO as CORE_ML_IO


@dataclass(frozen=True)
class Platform:
    format: str
    template: str
    step: str  # the export step that writes the format
    #: Decoder inputs (besides the cache) the template's decode-loop snippet names.
    decoder_inputs: tuple[str, ...]


PLATFORMS = {
    "android": Platform("tflite", "android.md.j2", "export-tflite", ("embeddings", "input_pos", "mask")),
    "ios": Platform("coreml", "ios.md.j2", "export-coreml", tuple(CORE_ML_IO["decoder"][0])),
}
SWIFT_TYPES = {"float32": ".float32", "float16": ".float16", "int32": ".int32", "float64": ".double"}


def resolve_artifact(target: Path, variant: str | None, fmt: str) -> Path:
    """The artifact folder a target names: an artifact itself, or a run folder and a variant (the
    only one with a `fmt` export when no variant is given)."""
    from harness.results import rundir

    if has_build_record(target):
        return target
    if not rundir.is_run_dir(target):
        raise ConfigError(f"'{target}' is neither a built variant (no {BUILD_RECORD}) nor a run directory; "
                          "give an artifact folder or a folder under reports/")
    run = rundir.open_run(target)
    names = run.read_plan().get("variants", [])
    artifacts = {n: Path(run.read_variant_result(n).get("artifact", "")) for n in names if run.has_result(n)}
    if variant is not None:
        if variant not in artifacts:
            raise ConfigError(f"run '{target.name}' has no built variant '{variant}' (built: {', '.join(artifacts)})")
        return artifacts[variant]
    with_format = [n for n, a in artifacts.items() if (a / "exports" / fmt).is_dir()]
    if len(with_format) != 1:
        raise ConfigError(f"run '{target.name}' has {len(with_format)} variants with a {fmt} export "
                          f"({', '.join(with_format) or 'none'}); name one with --variant")
    return artifacts[with_format[0]]


def render(facts: dict[str, Any], platform: str) -> str:
    """The guide's Markdown for `facts` (as `facts.collect` returns them)."""
    import jinja2

    chosen = PLATFORMS[platform]
    _check_decoder(facts, chosen)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(mb=lambda b: f"{b / 1e6:.3f} MB", shape=lambda s: "[" + ", ".join(map(str, s)) + "]",
                       numel=lambda s: math.prod(int(d) for d in s), quant=_quant,
                       swift_shape=lambda s: "[" + ", ".join(str(d) for d in s) + "]",
                       swift_type=lambda t: SWIFT_TYPES.get(t, f".{t}"), camel=_camel)
    return env.get_template(chosen.template).render(f=facts)


def _check_decoder(facts: dict[str, Any], platform: Platform) -> None:
    """The snippets name the decoder's inputs; an export whose decoder differs is refused, not misdescribed."""
    signatures = facts["graphs"].get("decoder", {}).get("signatures", {})
    for signature, io in signatures.items():
        names = {t["name"] for t in io["inputs"]}
        missing = [n for n in platform.decoder_inputs if n not in names]
        if missing:
            raise RuntimeBackendError(f"the {facts['format']} decoder's signature '{signature}' has inputs "
                                      f"{sorted(names)}, not {', '.join(missing)}; this guide describes exports "
                                      f"written by {platform.step}")
    for graph in ("vision", "embed", "decoder"):
        if graph not in facts["graphs"]:
            raise RuntimeBackendError(f"the {facts['format']} export of '{facts['variant']}' has no {graph} graph; "
                                      f"export all of vision, embed and decoder ({platform.step}) for an app")


def _quant(tensor: dict[str, Any]) -> str:
    q = tensor.get("quantization")
    return f" (scale {q['scale']:.6g}, zero point {q['zero_point']})" if q else ""


def _camel(name: str) -> str:
    head, *rest = re.split(r"[^A-Za-z0-9]+", name)
    return head + "".join(part.capitalize() for part in rest)


def write_guide(target: Path, platform: str, variant: str | None = None, output: Path | None = None) -> Path:
    """Collect the facts of the target's export for `platform` and write the guide; returns its path."""
    from harness.deploy.facts import collect

    if platform not in PLATFORMS:
        raise ConfigError(f"--platform '{platform}': use one of {', '.join(PLATFORMS)}")
    fmt = PLATFORMS[platform].format
    artifact = resolve_artifact(target, variant, fmt)
    facts = collect(artifact, fmt)
    if variant:
        facts["variant"] = variant
    path = output or Path(f"{facts['variant']}-{platform}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(facts, platform))
    return path
