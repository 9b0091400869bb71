"""The command line of the benchmark scripts: ``key=value`` settings, as every automl command takes them
(unknown keys and wrong types are errors), and ``--help`` listing them with their defaults."""

from __future__ import annotations

import sys
from typing import TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


def parse(schema: type[T], doc: str) -> T:
    """The script's settings from ``sys.argv`` (``key=value``), or its help printed (``--help``)."""
    args = sys.argv[1:]
    if any(arg in ("-h", "--help") for arg in args):
        print(f"{doc.strip()}\n\nSettings (key=value) and their defaults:\n{OmegaConf.to_yaml(OmegaConf.structured(schema))}")
        raise SystemExit(0)
    bad = [arg for arg in args if "=" not in arg]
    if bad:
        raise SystemExit(f"arguments are key=value settings, got {bad}; --help lists them")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(args)))
