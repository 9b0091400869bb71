"""Which device a run computes on, and the hardware it is."""

from __future__ import annotations

import contextlib
import os


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


def describe_hardware(device: str) -> dict[str, str | int | None]:
    """What a run computes on, for its report: ``cpu`` (model name), ``cores`` (usable by this process),
    ``gpu`` (the accelerator's name when ``device`` is one, else None), ``torch`` (version) and ``python``."""
    import platform

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
    elif device.startswith("mps"):
        gpu = "Apple GPU (mps)"
    return {"cpu": _cpu_model() or platform.processor() or platform.machine(), "cores": cores, "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None
