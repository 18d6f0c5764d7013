"""``save_pretrained`` / ``from_pretrained``: a directory with ``config.json`` + ``model.safetensors``.

No pickle anywhere. Each file is written to a temporary name in the same directory and
renamed into place, so a crash never leaves a half-written checkpoint under the real name.
``from_pretrained("default")`` loads the model shipped in ``mem4d/weights/default/``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mem4d.config import Mem4DConfig

if TYPE_CHECKING:
    from mem4d.model.mem4d import Mem4D

__all__ = ["CONFIG_NAME", "DEFAULT_DIR", "WEIGHTS_NAME", "atomic_write", "load_pretrained", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARD_GLOB = "model-*-of-*.safetensors"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path`` and renames it into place (the
    usual umask permissions); on any error the temporary file is removed and ``path`` untouched."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(
    model: Mem4D, directory: str | os.PathLike, dtype: torch.dtype | None = None, about: dict | None = None,
    max_shard_mb: float | None = None,
) -> None:
    """Writes the weights (floating tensors cast to ``dtype`` when given, e.g. ``torch.float16`` to
    halve the file) and the config; ``about`` (JSON-serialisable provenance: how the weights were
    trained, their scores) is stored beside the config and ignored by the loader. With
    ``max_shard_mb``, weights larger than that go into ``model-00001-of-0000N.safetensors``
    shards of at most that size each (a tensor larger than a shard gets a shard of its own),
    e.g. to bring a checkpoint back from a machine that returns files of limited size."""
    from safetensors.torch import save_file

    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype (e.g. torch.float16), got {dtype}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        tensors[k] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
    shards = _shards(tensors, max_shard_mb)
    for stale in directory.glob(SHARD_GLOB):
        stale.unlink()
    if len(shards) == 1:
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    else:
        (directory / WEIGHTS_NAME).unlink(missing_ok=True)
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            atomic_write(directory / name, lambda tmp, shard=shard: save_file(shard, tmp, metadata={"format": "pt"}))

    def write_config(tmp: str) -> None:
        raw = {"mem4d_config": model.config.to_dict(), **({"about": about} if about else {})}
        Path(tmp).write_text(json.dumps(raw, indent=2) + "\n")

    atomic_write(directory / CONFIG_NAME, write_config)


def _shards(tensors: dict[str, torch.Tensor], max_shard_mb: float | None) -> list[dict[str, torch.Tensor]]:
    if max_shard_mb is None:
        return [tensors]
    limit = max_shard_mb * 2**20
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    return shards


def _read_weights(directory: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = directory / WEIGHTS_NAME
    paths = [single] if single.is_file() else sorted(directory.glob(SHARD_GLOB))
    if not paths:
        raise ValueError(f"{single} is missing: from_pretrained expects a directory written by Mem4D.save_pretrained")
    if len(paths) > 1 or paths[0] != single:
        count = int(paths[0].name.split("-of-")[1].split(".")[0])
        if len(paths) != count:
            raise ValueError(f"{directory} holds {len(paths)} of {count} weight shards; copy all of them")
    tensors: dict[str, torch.Tensor] = {}
    for path in paths:
        try:
            tensors.update(load_file(str(path), device=str(map_location)))
        except Exception as err:  # safetensors raises several error types for damaged files
            raise ValueError(f"{path} is corrupt or not a safetensors file ({err}); re-save the model with save_pretrained") from err
    return tensors


def load_pretrained(cls: type[Mem4D], directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> Mem4D:
    if str(directory) == "default":
        directory = DEFAULT_DIR
        if not (directory / WEIGHTS_NAME).is_file():
            raise ValueError(
                f"no shipped weights at {directory}: this install lacks the default model; reinstall mem4d, or train "
                "one (mem4d train ...) and pass its directory to Mem4D.from_pretrained(dir)"
            )
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path} is missing: from_pretrained expects a directory written by Mem4D.save_pretrained")
    try:
        raw = json.loads(cfg_path.read_text())
        config = Mem4DConfig.from_dict(raw["mem4d_config"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg_path} is not a mem4d config ({err!r}); re-save the model with save_pretrained") from err
    model = cls(config)
    tensors = _read_weights(directory, map_location)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{w_path} does not match {cfg_path} ({err}); config and weights must come from the same save") from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{w_path} does not match {cfg_path}: missing {sorted(result.missing_keys)[:8]}, unexpected "
            f"{sorted(result.unexpected_keys)[:8]}; config and weights must come from the same save_pretrained call"
        )
    return model.to(map_location)
