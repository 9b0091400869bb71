"""Model bank: bank settings → validated entries (:mod:`.manifest`) → timm models with their checkpoint
weights, loaded safely (:mod:`.weights`), their input pipeline and meta-features (:mod:`.meta`); the
offline demo bank is built by :mod:`.demo`.

A bank is a list of entries, inline (``bank.models``) or a folder's ``bank.yaml`` manifest (``bank.dir``);
format in the README ("Using your own bank").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from automl.bank.demo import build_demo_bank
from automl.bank.manifest import MANIFEST, Bank, BankEntry, BankError, Source, read_bank
from automl.bank.meta import forward_mflops, model_meta, model_meta_of, resolve_data_config, training_gflop
from automl.bank.weights import create_model, file_sha256, weights_digest
from automl.settings import BankSettings

log = logging.getLogger(__name__)


def own_folder_of(name: str, cache_dir: str | os.PathLike) -> Path:
    """``cache_dir/banks/<name>``, resolved: where a bank named ``name`` is built when ``bank.dir`` is not set
    (conf/bank/demo.yaml's default ``dir``)."""
    return (Path(cache_dir) / "banks" / name).expanduser().resolve()


def load_bank(settings: BankSettings, cache_dir: str | os.PathLike) -> Bank:
    """Read and validate the bank ``settings`` describe.

    ``build: demo`` builds the offline demo bank when its manifest is missing, but only in its own folder
    ``cache_dir/banks/<name>``: a ``dir`` elsewhere without a manifest is an error, never a surprise build.
    """
    if settings.models is not None:
        return read_bank(settings.name, settings.models, None)
    own_folder = own_folder_of(str(settings.name or ""), cache_dir)
    folder = Path(settings.dir).expanduser().resolve() if settings.dir else own_folder
    if not (folder / MANIFEST).is_file() and settings.build is not None:
        if folder != own_folder or not settings.name:
            raise BankError(f"{folder / MANIFEST}: bank manifest not found (bank.dir={settings.dir}); the "
                            f"{settings.build} bank is built only in {own_folder} (build one here with "
                            f"`python -m automl.bank.demo out={folder}`)")
        log.info("bank %s: %s is missing; building the offline demo bank", settings.name, folder / MANIFEST)
        build_demo_bank(folder)
    return read_bank(settings.name, None, folder)


__all__ = [
    "MANIFEST",
    "Bank",
    "BankEntry",
    "BankError",
    "Source",
    "create_model",
    "file_sha256",
    "forward_mflops",
    "load_bank",
    "model_meta",
    "model_meta_of",
    "own_folder_of",
    "resolve_data_config",
    "training_gflop",
    "weights_digest",
]
