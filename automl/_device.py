"""Which device a run computes on."""

from __future__ import annotations


def select_device(name: str = "auto") -> str:
    """'auto' → cuda if available, else mps, else cpu; anything else is checked and returned."""
    import torch  # ~1 s: commands that fail on their settings never pay it

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available on this machine; use device=cpu or auto")
    return name
