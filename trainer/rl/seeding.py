"""Seeds and random-number-generator states, captured into checkpoints and restored from them.

Everything captured is a tensor, number, string, list, tuple or dict, so it survives
`torch.load(weights_only=True)`: NumPy's legacy state carries a uint32 ndarray, stored here as an
int64 tensor.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python's, NumPy's (legacy global) and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch (CPU, and CUDA when present) global RNG states."""
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state()` captured (CUDA only when CUDA is available here)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = state["numpy"]
    key = legacy["key"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state(
        (
            legacy["kind"],
            key.astype(np.uint32),
            legacy["pos"],
            legacy["has_gauss"],
            legacy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator of its own on `device`, seeded."""
    return torch.Generator(device=device).manual_seed(seed)


def restore_generator(gen: torch.Generator, state: torch.Tensor | None) -> bool:
    """Put `state` back into `gen`; False (and `gen` unchanged) when there is none or it was
    captured on another kind of device (a CPU checkpoint resumed on a GPU)."""
    if state is None:
        return False
    try:
        gen.set_state(state)
    except (RuntimeError, TypeError):
        return False
    return True
