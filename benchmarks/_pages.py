"""The pages of ``docs/results/``: every benchmark command writes the page that holds its figures, headed
by the command that wrote it, the machine and the date, so that a page is regenerated, never hand-edited."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

from automl._fileio import atomic_write_text

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def machine() -> str:
    """The machine a figure was measured on: CPU, cores, accelerator, and the torch build."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    gpu = (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
           else ", no GPU")
    return f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def write_page(name: str, title: str, body: str, command: str | None = None, folder: Path = RESULTS) -> Path:
    """``folder/<name>.md``: ``title``, how it was made (``command``, default the running command line),
    then ``body`` (Markdown). Returns the page's path."""
    command = command or "python -m " + " ".join([_module_of_main(), *map(shlex.quote, sys.argv[1:])])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# {title}\n\n"
              f"Written by `{command}` on {stamp} ({machine()}). Run the command again to regenerate this page.\n\n")
    return atomic_write_text(folder / f"{name}.md", header + body.strip() + "\n")


def _module_of_main() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec is not None else Path(sys.argv[0]).name
