"""Reading PyTorch / Hugging Face state dicts as numpy arrays, without torch where possible.

  read_state_dict(path) -> {key: np.ndarray}

`path` may be
  * a `.safetensors` file: read with `safetensors.numpy` (no torch needed);
  * a `.pt` / `.pth` / `.bin` file (`torch.save` of a state dict, e.g. the PyTorch RAHF
    reproduction's `rahf_model.pt` or an HF `pytorch_model.bin`): read with torch, which comes
    with the `rahf-jax[torch]` extra; memory-mapped, so a 2.6 GB checkpoint is not copied twice;
  * a Hugging Face model folder: its `model.safetensors` (or sharded `model-*.safetensors`),
    else its `pytorch_model.bin`.
bfloat16 / float16 tensors are returned as float32 (the converters cast to the model's dtype).
"""

import glob
import os

import numpy as np

TORCH_EXTRA_HINT = "install the torch extra: pip install 'rahf-jax[torch]'"


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # noqa: PLC0415

  try:
    return load_file(path)
  except (TypeError, ValueError) as e:  # bf16 has no numpy dtype: read through torch instead
    if "bfloat16" not in str(e) and "dtype" not in str(e):
      raise ValueError(f"{path!r} is not a readable safetensors file ({e}).") from e
    torch = _import_torch(path)
    from safetensors.torch import load_file as load_torch  # noqa: PLC0415

    return {k: _to_numpy(torch, v) for k, v in load_torch(path).items()}


def _import_torch(path: str):
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    raise ImportError(f"reading {path!r} needs PyTorch; {TORCH_EXTRA_HINT}.") from None
  return torch


def _to_numpy(torch, tensor) -> np.ndarray:
  if tensor.dtype in (torch.bfloat16, torch.float16):
    tensor = tensor.float()
  return tensor.detach().cpu().numpy()


def _read_torch(path: str) -> dict[str, np.ndarray]:
  torch = _import_torch(path)
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  except RuntimeError:  # an old (non-zip) serialisation cannot be memory-mapped
    obj = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]  # a training checkpoint that wraps the state dict
  if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
    raise ValueError(
      f"{path!r} does not hold a state dict (a mapping of names to tensors); save the model "
      "with torch.save(model.state_dict(), path)."
    )
  return {k: _to_numpy(torch, v) for k, v in obj.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A state dict from a .safetensors / .pt / .bin file or an HF model folder (module doc)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    shards = sorted(glob.glob(os.path.join(path, "model*.safetensors")))
    if shards:
      out = {}
      for shard in shards:
        out.update(_read_safetensors(shard))
      return out
    if os.path.exists(os.path.join(path, "pytorch_model.bin")):
      return _read_torch(os.path.join(path, "pytorch_model.bin"))
    raise FileNotFoundError(
      f"{path!r} holds neither model.safetensors nor pytorch_model.bin; pass a Hugging Face "
      "model folder or the weights file itself."
    )
  if not os.path.exists(path):
    raise FileNotFoundError(f"weights file {path!r} not found; pass an existing file or folder.")
  if path.endswith(".safetensors"):
    return _read_safetensors(path)
  if path.endswith((".pt", ".pth", ".bin", ".ckpt")):
    return _read_torch(path)
  raise ValueError(
    f"{path!r}: unknown weights format; pass a .safetensors, .pt/.pth/.bin file or an HF folder."
  )
