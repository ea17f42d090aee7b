"""Training checkpoints that resume exactly, without pickle.

A checkpoint is a folder `step-NNNNNNN/` with `state.safetensors` (trainable parameters, every
buffer, optimizer moments, RNG states) and `state.json` (step, remaining data order, curve,
optimizer hyper-parameters, scheduler, early-stop state). It is written to a temporary name and
renamed, so a crash never leaves half a checkpoint; checkpoints are never deleted by the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREFIX = "step-"


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = sorted(p for p in Path(directory).glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit())
    return found[-1] if found else None


def _model_tensors(model: Any, extra: list[Any]) -> dict[str, Any]:
    out = {f"model.{n}": p for n, p in model.named_parameters() if p.requires_grad}
    out.update({f"model.{n}": b for n, b in model.named_buffers() if b is not None and type(b).__name__ == "Tensor"})
    out.update({f"extra.{i}": p for i, p in enumerate(extra)})
    return out


def save(directory: str | None, state: dict[str, Any], model: Any, extra: list[Any], optimizer: Any,
         scheduler: Any, generator: Any, scaler: Any, world: Any) -> Path | None:
    """Write one checkpoint (rank 0 only under DDP); returns its folder."""
    import torch
    from safetensors.torch import save_file

    if directory is None or world.rank != 0:
        return None
    path = Path(directory) / f"{PREFIX}{state['step']:07d}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in _model_tensors(model, extra).items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in opt["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = generator.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / "state.safetensors"))
    meta = {key: state[key] for key in ("step", "order", "history", "best", "bad_evals", "elapsed", "tokens",
                                        "examples")}
    meta.update(param_groups=opt["param_groups"], optimizer_scalars=scalars, scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if scaler is not None else None)
    (tmp / "state.json").write_text(json.dumps(meta))
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load(path: Path, model: Any, extra: list[Any], optimizer: Any, scheduler: Any, generator: Any,
         scaler: Any) -> dict[str, Any]:
    """Restore everything `save` wrote; returns the loop state to continue from."""
    import torch
    from safetensors.torch import load_file

    from harness.errors import ConfigError

    tensors = load_file(str(path / "state.safetensors"))
    meta = json.loads((path / "state.json").read_text())
    targets = _model_tensors(model, extra)
    missing = sorted(set(targets) - set(tensors))
    if missing:
        raise ConfigError(f"checkpoint '{path}' does not fit this model (missing {missing[:3]}); "
                          "remove it or train without resume")
    with torch.no_grad():
        for key, target in targets.items():
            if target.shape != tensors[key].shape:
                raise ConfigError(f"checkpoint '{path}': {key} has shape {tuple(tensors[key].shape)}, "
                                  f"the model {tuple(target.shape)}; remove it or train without resume")
            target.copy_(tensors[key])
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            opt_state.setdefault(int(index), {})[slot] = value
    for index, slots in meta["optimizer_scalars"].items():
        opt_state.setdefault(int(index), {}).update(slots)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.data"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return {key: meta[key] for key in ("step", "order", "history", "best", "bad_evals", "elapsed", "tokens",
                                       "examples")}
