"""Models: a baseline entry + a weight file -> a PyTorch module in eval (deploy) form.

Needs torch and timm/torchvision (the `torch` extra). Used by the reference backend and
by `vaccbench export`. Weight files may be a state dict, a checkpoint holding one under
`state_dict`/`model`/`state_dict_ema`, a safetensors file, or a TorchScript archive.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from .baselines import ModelEntry
from .errors import BackendError

CHECKPOINT_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema", "net")


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendError("PyTorch is not installed: pip install 'pytest-vaccbench[torch]'") from None
    return torch


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a `code/` folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def create_architecture(entry: ModelEntry) -> Any:
    """The entry's architecture at random init (pretrained=False: nothing is downloaded)."""
    if entry.library == "timm":
        import timm

        try:
            return timm.create_model(entry.arch, pretrained=False, num_classes=entry.num_classes)
        except RuntimeError as exc:
            raise BackendError(f"timm has no architecture {entry.arch!r} ({exc}); "
                               f"fix `arch` at {entry.where}") from None
    if entry.library == "torchvision":
        import torchvision

        kwargs: dict[str, Any] = {"weights": None, "num_classes": entry.num_classes}
        if entry.arch == "inception_v3":  # checkpoints carry the auxiliary head
            kwargs.update(aux_logits=True, init_weights=False)
        try:
            return torchvision.models.get_model(entry.arch, **kwargs)
        except ValueError as exc:
            raise BackendError(f"torchvision has no architecture {entry.arch!r} ({exc}); "
                               f"fix `arch` at {entry.where}") from None
    raise BackendError(f"{entry.test_name} has no architecture to build (library "
                       f"{entry.library!r}, arch {entry.arch!r}) at {entry.where}")


def read_state_dict(path: Path) -> dict[str, Any]:
    """A flat name -> tensor mapping from any of the supported weight file layouts."""
    torch = _torch()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise BackendError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from None
    for key in CHECKPOINT_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data:
        raise BackendError("no state dict in this file (expected a dict of tensors, or a "
                           f"checkpoint with one of {CHECKPOINT_KEYS})", path)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in data.items()}


def load_weights(model: Any, state: dict[str, Any], entry: ModelEntry, path: Path) -> None:
    """Load `state` into `model`; by name, or by order when the entry says key_map: by-order."""
    if entry.weights.key_map == "by-order":
        target = model.state_dict()
        if len(target) != len(state):
            raise BackendError(f"{len(state)} tensors in the file, {len(target)} in {entry.arch}: "
                               "cannot load by order", path)
        for (name, want), (src, have) in zip(target.items(), state.items()):
            if tuple(want.shape) != tuple(have.shape):
                raise BackendError(f"by-order load: {src} has shape {tuple(have.shape)} but "
                                   f"{name} needs {tuple(want.shape)}", path)
        state = dict(zip(target.keys(), state.values()))
    target = model.state_dict()
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    wrong_shape = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in state.items()
                   if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong_shape:
        raise BackendError(f"weights do not match {entry.library} {entry.arch}: "
                           f"{len(wrong_shape)} of other shape (e.g. {wrong_shape[:2]}), "
                           f"{len(missing)} missing (e.g. {missing[:3]}), "
                           f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})", path)
    model.load_state_dict(state, strict=False)

def to_deploy_form(model: Any, entry: ModelEntry) -> Any:
    """RepVGG-style models are evaluated fused (one 3x3 conv per block), as deployed."""
    if entry.deploy == "reparameterize":
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model)
    return model


def build_model(entry: ModelEntry, weights: Path | None) -> Any:
    """The model ready for inference; weights None keeps the random init (parity tests)."""
    torch = _torch()
    if weights is not None and is_torchscript(weights):
        if "qnnpack" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "qnnpack"  # quantized TorchScript from mobile
        try:
            model = torch.jit.load(str(weights), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot load TorchScript ({exc})", weights) from None
        return model.eval()
    model = create_architecture(entry)
    if weights is not None:
        load_weights(model, read_state_dict(weights), entry, weights)
    model.eval()
    return to_deploy_form(model, entry)
