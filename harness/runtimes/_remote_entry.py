"""What a remote runtime runs on the host: `python -m harness.runtimes._remote_entry` reads one JSON
request on stdin and prints one JSON answer as the last stdout line (after RESULT_MARK), so a
library that prints cannot corrupt it. Requests: `identity` (the host and its harness version),
`generate` / `encode` (one session call of the inner runtime on the copied artifact), and `job`
(a suite kind's own measuring process — the latency or memory child — run in this fresh process)."""

from __future__ import annotations

import base64
import io
import json
import sys
from dataclasses import asdict
from typing import Any

RESULT_MARK = "HARNESS-REMOTE-RESULT "


def identity() -> dict[str, Any]:
    import os
    import platform

    import harness

    return {"harness": harness.__version__, "python": platform.python_version(), "system": platform.system(),
            "release": platform.release(), "machine": platform.machine(), "processor": platform.processor(),
            "node": platform.node(), "cpus": os.cpu_count()}


def _images(encoded: list[str]) -> list[Any]:
    from PIL import Image

    return [Image.open(io.BytesIO(base64.b64decode(item))).convert("RGB") for item in encoded]


def _session(request: dict[str, Any]) -> Any:
    from pathlib import Path

    from harness.registries import RUNTIMES

    return RUNTIMES.get(request["runtime"])().load(Path(request["artifact"]))


def generate(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out = _session(request).generate(_images(request["images"]), request["questions"],
                                     max_new_tokens=request["max_new_tokens"],
                                     min_new_tokens=request.get("min_new_tokens", 0),
                                     keep_logits=request.get("keep_logits", False))
    logits = None if out.first_logits is None else np.asarray(out.first_logits, dtype=np.float32).tolist()
    return {"texts": out.texts, "token_ids": out.token_ids, "times": asdict(out.times), "first_logits": logits}


def encode(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    return {"features": np.asarray(_session(request).encode_images(_images(request["images"])), np.float32).tolist()}


def job(request: dict[str, Any]) -> Any:
    import importlib

    module, function = request["target"].split(":")
    return getattr(importlib.import_module(module), function)(request["payload"])


OPS = {"identity": lambda request: identity(), "generate": generate, "encode": encode, "job": job}


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        answer = {"ok": True, "result": OPS[request["op"]](request)}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        answer = {"ok": False, "error": f"{type(exc).__name__}: {first}"}
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
