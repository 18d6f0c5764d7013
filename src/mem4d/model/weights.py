"""Safe checkpoint reading and CUT3R encoder weight loading.

Checkpoints are read without running arbitrary pickle code:

- ``.safetensors``: via :mod:`safetensors` (no code at all);
- ``.pth`` / ``.pt`` / ``.ckpt``: ``torch.load(..., weights_only=True)`` with a short, explicit
  allow-list of extra globals. CUT3R's training script stores its run configuration next to
  the weights (``{"model": state_dict, "args": ..., "epoch": ...}``); depending on how it was
  launched that is an ``argparse.Namespace`` (allowed as is) or an OmegaConf/Hydra config.
  Config objects are never needed here, so OmegaConf classes (and ``typing.Any``, which their
  metadata references) are mapped to :class:`_InertConfig`, a placeholder that only stores
  what it is given and runs no code; omegaconf need not be installed. Every other non-tensor
  global (``os.system``, ``builtins.eval``, arbitrary classes, ...) makes the load fail with a
  ``ValueError`` *before* anything is unpickled.

Example:
    >>> enc = ImageEncoder(width=1024, depth=24, num_heads=16)       # doctest: +SKIP
    >>> load_encoder_weights(enc, "cut3r_512_dpt_4_64.pth")            # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import pickletools
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "ENCODER_PREFIXES",
    "extract_encoder_state",
    "load_encoder_weights",
    "load_state_dict_file",
    "unwrap_state_dict",
]

#: State-dict prefixes of CUT3R's image encoder. The trailing dot matters: CUT3R also has
#: ``patch_embed_ray_map.*``, ``enc_blocks_ray_map.*`` and ``enc_norm_ray_map.*`` (ray-map encoder).
ENCODER_PREFIXES = ("patch_embed.", "enc_blocks.", "enc_norm.")

_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")
_KEY_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


class _InertConfig:
    """Stand-in for a config object (OmegaConf, ``typing.Any``) found in a checkpoint.

    Unpickling only ever stores data on it: constructing, ``__setstate__`` and item
    assignment keep their arguments and do nothing else.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: object) -> None:
        self.state = state

    def __setitem__(self, key: object, value: object) -> None:
        self.__dict__.setdefault("items", {})[key] = value

    def __repr__(self) -> str:
        return "<config object skipped by mem4d (not needed to load weights)>"


# Real objects that are harmless to construct during unpickling.
_ALLOWED_GLOBALS: dict[str, object] = {
    "argparse.Namespace": argparse.Namespace,
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.set": set,
    "builtins.int": int,
    "builtins.float": float,
    "builtins.str": str,
    "builtins.bool": bool,
    "collections.defaultdict": collections.defaultdict,
}


def _inert_name(name: str) -> bool:
    return name.startswith("omegaconf.") or name == "typing.Any"


def _safe_globals_for(names: list[str], path: Path) -> list:
    refused = [n for n in names if n not in _ALLOWED_GLOBALS and not _inert_name(n)]
    if refused:
        raise ValueError(
            f"refusing to load {path}: its pickle references {', '.join(sorted(refused))}, which could run "
            "arbitrary code. mem4d only loads tensors (plus argparse/OmegaConf run configs). If you trust "
            "this file, convert it once to .safetensors (e.g. safetensors.torch.save_file(state_dict, ...)) "
            "in a separate trusted script and load that instead."
        )
    return [(_ALLOWED_GLOBALS[n], n) if n in _ALLOWED_GLOBALS else (_InertConfig, n) for n in names]


def _torch_load(path: Path) -> object:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format: the weights-only unpickler below still guards it
        names = []
    extra = _safe_globals_for(list(names), path)
    extra += [(v, k) for k, v in _ALLOWED_GLOBALS.items() if k not in names]
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        named = _scan_pickle_globals(path)
        if named:
            reason = f"it references {', '.join(named)}"
        raise ValueError(
            f"refusing to load {path}: it is not a plain tensor checkpoint ({reason}). mem4d never runs "
            "arbitrary pickle code; if you trust the file, convert it to .safetensors in a separate script."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"could not read {path} as a PyTorch checkpoint: {err}") from None


def _scan_pickle_globals(path: Path, limit: int = 1 << 26) -> list[str]:
    """Best-effort list of the globals a raw pickle file names, found by parsing (never running) it."""
    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(io.BytesIO(f.read(limit))):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # truncated or not a pickle: keep what was found
        pass
    harmless = ("torch.", "collections.OrderedDict")
    return sorted({n for n in names if n not in _ALLOWED_GLOBALS and not n.startswith(harmless)})


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """Return the tensor mapping inside a checkpoint object.

    Unwraps ``{"model": ...}`` / ``{"state_dict": ...}`` (repeatedly) and strips a ``module.``
    (DDP) or ``_orig_mod.`` (torch.compile) prefix from every key that has it.
    """
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            keys = ", ".join(repr(k) for k in list(obj)[:10])
            raise ValueError(
                f"checkpoint is not a state dict and has no 'model'/'state_dict' entry (top-level keys: {keys})"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        for prefix in _KEY_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        if key in out:
            raise ValueError(f"checkpoint has key {key!r} both with and without a 'module.' prefix")
        out[key] = value
    return out


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a (safely unpickled) ``.pth/.pt/.ckpt``.

    Returns:
        ``{key: tensor}`` on the CPU, wrapper entries and ``module.`` prefixes removed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown format, unreadable file, or a pickle that would run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ValueError(f"could not read {path} as safetensors: {err}") from None
    elif suffix in _TORCH_SUFFIXES:
        obj = _torch_load(path)
    else:
        raise ValueError(f"unknown checkpoint format {suffix!r} for {path}: use .safetensors, .pth, .pt or .ckpt")
    return unwrap_state_dict(obj)


def extract_encoder_state(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Pick the image-encoder entries (``patch_embed.*``, ``enc_blocks.N.*``, ``enc_norm.*``).

    Args:
        state_dict: a full model state dict (e.g. CUT3R's).
        prefix: where the encoder sits in ``state_dict`` (``""`` for CUT3R; e.g. ``"encoder."``
            for a model that wraps it); the prefix is removed from the returned keys.

    Raises:
        ValueError: no encoder entries under ``prefix`` (the message lists prefixes that would work).
    """
    wanted = tuple(prefix + p for p in ENCODER_PREFIXES)
    out = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(wanted)}
    if not out:
        anchor = "patch_embed.proj.weight"
        found = sorted(k[: -len(anchor)] for k in state_dict if k.endswith(anchor))
        hint = (
            f" Encoder-like entries exist under prefix(es) {found}: pass prefix=..."
            if found
            else f" First keys: {list(state_dict)[:5]}."
        )
        raise ValueError(f"no image-encoder weights ({'/'.join(wanted)}*) in this state dict.{hint}")
    return out


def _describe(state: Mapping[str, Tensor]) -> str:
    w = state.get("patch_embed.proj.weight")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("enc_blocks.") and k.split(".")[1].isdigit()}
    width = w.shape[0] if w is not None else "?"
    patch = w.shape[-1] if w is not None else "?"
    return f"width={width}, depth={max(blocks) + 1 if blocks else 0}, patch_size={patch}"


def load_encoder_weights(encoder: nn.Module, path: str | Path, prefix: str = "") -> None:
    """Load the image-encoder part of a checkpoint into ``encoder`` (strict: every key, every shape).

    The number of heads cannot be read from the weights: CUT3R's ViT-L uses 16 (head dim 64).

    Args:
        encoder: an :class:`mem4d.model.encoder.ImageEncoder`.
        path: CUT3R (or compatible) checkpoint, ``.pth`` or ``.safetensors``.
        prefix: where the encoder sits in the checkpoint (see :func:`extract_encoder_state`).

    Raises:
        ValueError: the checkpoint does not fit ``encoder``; the message names the missing,
            unexpected and mis-shaped keys and both architectures.
    """
    state = extract_encoder_state(load_state_dict_file(path), prefix)
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mis_shaped:
        parts = [f"checkpoint {path} does not fit this encoder"]
        parts.append(f"checkpoint encoder: {_describe(state)}; this encoder: {_describe(own)}")
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if items:
                more = f" ... (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"{len(items)} {label} key(s): " + "; ".join(items[:8]) + more)
        parts.append(
            "build the encoder with the size of the checkpoint (CUT3R ViT-L: width=1024, depth=24, num_heads=16)"
        )
        raise ValueError("\n  ".join(parts))
    on_meta = any(t.is_meta for t in own.values())
    encoder.load_state_dict(state, strict=True, assign=on_meta)
