"""Bank specs and safe checkpoint loading, with real timm tiny models and real files in tmp dirs."""

from __future__ import annotations

import hashlib
import os
import pickle

import huggingface_hub.constants
import pytest
import safetensors.torch
import timm
import torch
import yaml

import automl.bank
from automl.bank import (
    BankError,
    create_model,
    load_bank,
    model_meta,
    model_meta_of,
    resolve_data_config,
    weights_digest,
)
from automl.bank import demo as demo_bank
from automl.bank.meta import forward_mflops
from automl.settings import BankSettings, compose, resolve

ARCH = "test_resnet"


def save_weights(path, arch=ARCH, num_classes=5, seed=0, **kwargs):
    """A random-init timm model's state dict at ``path`` (.safetensors or torch.save); returns the state."""
    torch.manual_seed(seed)
    state = timm.create_model(arch, num_classes=num_classes, **kwargs).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


def entry_cfg(weights, name="m", arch=ARCH, num_classes=5, **extra):
    return {"name": name, "arch": arch, "weights": str(weights), "num_classes": num_classes, **extra}


def one_entry(*models):
    return load_bank(BankSettings(name="b", models=list(models)), "unused").entries[0]


def write_manifest(folder, models):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.yaml").write_text(yaml.safe_dump({"name": "mine", "models": models}))
    return folder


# ----------------------------------------------------------------------------------------- loading
def test_safetensors_roundtrip_keeps_the_checkpoint_head(tmp_path, monkeypatch):
    state = save_weights(tmp_path / "w.safetensors")
    monkeypatch.chdir(tmp_path)  # inline banks resolve relative paths against the working directory
    entry = one_entry(entry_cfg("w.safetensors"))
    assert entry.weights == str(tmp_path / "w.safetensors")
    model = create_model(entry)
    assert model.num_classes == 5
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_weights_only_torch_file_loads(tmp_path):
    state = save_weights(tmp_path / "w.pt")
    model = create_model(one_entry(entry_cfg(tmp_path / "w.pt")))
    torch.testing.assert_close(model.state_dict()["fc.weight"], state["fc.weight"])


def test_manifest_paths_are_relative_to_the_manifest(tmp_path, monkeypatch):
    folder = write_manifest(tmp_path / "bank", [entry_cfg("weights/a.safetensors", source={"name": "x"})])
    save_weights(folder / "weights" / "a.safetensors")
    monkeypatch.chdir(tmp_path / "bank" / "weights")  # anywhere but the manifest's folder
    bank = load_bank(BankSettings(dir=str(folder)), tmp_path / "cache")
    assert bank.name == "mine" and bank.root == folder.resolve() and len(bank) == 1
    assert bank.entries[0].weights == str((folder / "weights" / "a.safetensors").resolve())
    assert bank.entries[0].source.name == "x" and bank.entries[0].origin == str(folder.resolve() / "bank.yaml")
    create_model(bank.entries[0])


def test_missing_manifest_is_built_when_asked(tmp_path, monkeypatch):
    built = []

    def fake_build(out_dir, seed=0):  # the real builder takes minutes; its own test is below
        built.append(out_dir)
        save_weights(out_dir / "a.safetensors")
        write_manifest(out_dir, [entry_cfg("a.safetensors")])

    monkeypatch.setattr(automl.bank, "build_demo_bank", fake_build)  # where load_bank looks it up
    bank = load_bank(BankSettings(name="demo", build="demo"), tmp_path / "cache")
    assert built == [(tmp_path / "cache" / "banks" / "demo").resolve()]
    assert bank.name == "mine" and bank.entries[0].name == "m"  # the manifest's own name
    load_bank(BankSettings(name="demo", build="demo"), tmp_path / "cache")
    assert len(built) == 1  # the manifest exists now
    # bank.dir pointing elsewhere (a typo, an empty folder) is an error, not a surprise demo build there
    with pytest.raises(BankError, match=r"bank manifest not found .*built only in .*python -m automl.bank.demo"):
        load_bank(BankSettings(name="demo", build="demo", dir=str(tmp_path / "elsewhere")), tmp_path / "cache")
    assert len(built) == 1


def test_num_classes_replaces_or_removes_the_head(tmp_path):
    save_weights(tmp_path / "w.safetensors")
    entry = one_entry(entry_cfg(tmp_path / "w.safetensors"))
    assert create_model(entry, num_classes=3).get_classifier().out_features == 3
    assert create_model(entry, num_classes=0).num_classes == 0


def test_headless_checkpoint(tmp_path):
    save_weights(tmp_path / "w.safetensors", num_classes=0)
    model = create_model(one_entry(entry_cfg(tmp_path / "w.safetensors", num_classes=0)))
    assert model.num_classes == 0
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, model.num_features)


# --------------------------------------------------------------------------------------- bad weights
def test_sha256_is_verified(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = one_entry(entry_cfg(path, sha256=digest.upper()))
    assert weights_digest(entry) == digest
    create_model(entry)
    with pytest.raises(BankError, match=r"model 'm': sha256 mismatch .* the manifest says 0{64}, the file has " + digest):
        create_model(one_entry(entry_cfg(path, sha256="0" * 64)))


class Evil:
    """Unpickling this runs a shell command (creates ``marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes pickle.dump's protocol 4
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = {"fc.weight": Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file)
    assert not marker.exists()
    with pytest.raises(BankError, match=r"model 'm': .*evil\.pt is not a plain state dict.*weights_only=False"):
        create_model(one_entry(entry_cfg(path)))
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    save_weights(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BankError, match=r"model 'm': cannot read .*w\S* \(truncated or not a checkpoint\?\)"):
        create_model(one_entry(entry_cfg(path)))


def test_wrong_shapes_name_the_key_and_both_shapes(tmp_path):
    save_weights(tmp_path / "w.safetensors", num_classes=5)
    with pytest.raises(BankError, match=r"model 'm': .*'fc\.weight' has shape \[5, 96\] in the checkpoint but \[7, 96\]"):
        create_model(one_entry(entry_cfg(tmp_path / "w.safetensors", num_classes=7)))


def test_checkpoint_of_another_architecture(tmp_path):
    save_weights(tmp_path / "w.safetensors", arch="test_efficientnet")
    with pytest.raises(BankError, match=r"does not fit test_resnet"):
        create_model(one_entry(entry_cfg(tmp_path / "w.safetensors")))


def test_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "state_dict": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(BankError, match=r"flat \{name: tensor\} state dict"):
        create_model(one_entry(entry_cfg(tmp_path / "ckpt.pt")))


def test_unknown_architecture_and_missing_file(tmp_path):
    with pytest.raises(BankError, match=r"model 'm': unknown timm architecture 'test_resnett'.*test_resnet"):
        create_model(one_entry(entry_cfg(tmp_path / "w.safetensors", arch="test_resnett")))
    with pytest.raises(BankError, match=r"model 'm': weights file .*w\.safetensors not found"):
        create_model(one_entry(entry_cfg(tmp_path / "w.safetensors")))


def test_bad_kwargs(tmp_path):
    save_weights(tmp_path / "w.safetensors")
    with pytest.raises(BankError, match=r"model 'm': timm.create_model\('test_resnet', \*\*\{'bogus': 1\}\) failed"):
        create_model(one_entry(entry_cfg(tmp_path / "w.safetensors", kwargs={"bogus": 1})))


def test_hub_weights_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    entry = one_entry(entry_cfg("timm:r160_in1k", num_classes=1000))
    assert not entry.is_local and weights_digest(entry) == "timm:r160_in1k"
    with pytest.raises(BankError, match=r"model 'm': .*Hugging Face cache.*local \.safetensors"):
        create_model(entry)


# -------------------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([entry_cfg("a.pt"), entry_cfg("b.pt")], r"duplicate model name 'm' \(models\[0\] and models\[1\]\)"),
        ([entry_cfg("a.pt", colour="red")], r"models\[0\] \('m'\): unknown field\(s\) \['colour'\]"),
        ([{"name": "m", "weights": "a.pt", "num_classes": 1}], r"models\[0\] \('m'\): missing required field `arch`"),
        ([{"name": "m", "arch": ARCH, "num_classes": 1}], r"missing required field `weights`"),
        ([entry_cfg("a.pt", num_classes="ten")], r"num_classes must be an integer >= 0, got 'ten'"),
        ([entry_cfg("a.pt", num_classes=-1)], r"num_classes must be an integer >= 0"),
        ([entry_cfg("a.pt", sha256="abc")], r"sha256 must be 64 hex digits"),
        ([entry_cfg("timm", sha256="0" * 64)], r"sha256 can only be verified for local weight files"),
        ([entry_cfg("a.pt", kwargs={"num_classes": 3})], r"\['num_classes'\] are set by automl"),
        ([entry_cfg("a.pt", kwargs=[1])], r"kwargs: expected a mapping"),
        ([entry_cfg("a.pt", source={"name": "x", "size": 3})], r"source: unknown field\(s\) \['size'\]"),
        ([entry_cfg("a.pt", data_config={"input_size": [32, 32]})], r"input_size must be \[channels, height, width\]"),
        ([entry_cfg("a.pt", data_config={"mean": [0.5]})], r"mean must be 3 numbers"),
        ([entry_cfg("a.pt", data_config={"std": [0.5, 0, 0.5]})], r"std must be positive"),
        ([entry_cfg("a.pt", data_config={"interpolation": "fancy"})], r"interpolation must be one of"),
        ([entry_cfg("a.pt", name="a/b")], r"name 'a/b' may only use"),
        ([], r"`models` must be a non-empty list"),
        (["resnet18"], r"models\[0\]: expected a mapping"),
    ],
)
def test_manifest_errors_name_the_file_and_entry(tmp_path, models, message):
    folder = write_manifest(tmp_path / "bank", models)
    with pytest.raises(BankError, match=r"bank\.yaml: .*" + message):
        load_bank(BankSettings(dir=str(folder)), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bank.models=[]", "bank.dir=x", "bank.build=null"], r"either `models` .* or `dir`"),
        (["bank.dir=null", "bank.build=null"], r"set `models` .* or `dir`"),
        (["+bank.colour=1"], r"bank.colour: unknown setting"),
        (["bank.build=big"], r"bank.build='big' must be one of \[None, 'demo'\]"),
    ],
)
def test_bank_settings_errors_name_the_setting(overrides, message):
    with pytest.raises(Exception, match=message) as error:
        resolve(compose(overrides))
    assert error.type.__name__ in ("SettingsError", "ConfigCompositionException")


def test_missing_manifest_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BankError, match=r"nowhere/bank\.yaml: bank manifest not found"):
        load_bank(BankSettings(name="b", dir="nowhere"), tmp_path)


def test_yaml_syntax_error_names_the_file(tmp_path):
    (tmp_path / "bank.yaml").write_text("name: x\nmodels: [\n")
    with pytest.raises(BankError, match=r"bank\.yaml: cannot read the bank manifest"):
        load_bank(BankSettings(dir=str(tmp_path)), tmp_path)


# ----------------------------------------------------------------------------------- input and meta
def test_data_config_overrides_timm_defaults(tmp_path):
    save_weights(tmp_path / "w.safetensors")
    plain = one_entry(entry_cfg(tmp_path / "w.safetensors"))
    model = create_model(plain)
    assert resolve_data_config(plain, model) == timm.data.resolve_model_data_config(model)
    custom = one_entry(entry_cfg(tmp_path / "w.safetensors", data_config={
        "input_size": [3, 24, 24], "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "interpolation": "bilinear"}))
    config = resolve_data_config(custom, model)
    assert config["input_size"] == (3, 24, 24) and config["mean"] == (0.1, 0.2, 0.3)
    assert config["std"] == (0.4, 0.5, 0.6) and config["interpolation"] == "bilinear"
    assert config["crop_pct"] == model.pretrained_cfg["crop_pct"]  # unspecified keys: timm's
    assert resolve_data_config(custom, model, image_size=40)["input_size"] == (3, 40, 40)


def test_model_meta_of_an_entry_needs_no_weights(tmp_path):
    entry = one_entry(entry_cfg(tmp_path / "absent.safetensors", source={"name": "x", "num_images": 9}))
    meta = model_meta_of(entry)
    model = timm.create_model(ARCH, num_classes=5)
    side = timm.data.resolve_model_data_config(model)["input_size"][-1]  # its pretrained input
    assert meta == {**model_meta(model), "mflops": pytest.approx(forward_mflops(model, (3, side, side))),
                    "num_classes": 5, "source_num_images": 9, "source_num_classes": None}
    small = one_entry(entry_cfg(tmp_path / "absent.safetensors", data_config={"input_size": [3, 32, 32]}))
    assert model_meta_of(small)["mflops"] == pytest.approx(meta["mflops"] * 32**2 / side**2, rel=0.1)
    with pytest.raises(BankError, match="unknown timm architecture"):
        model_meta_of(one_entry(entry_cfg("w.pt", arch="nope")))


def test_flops_of_a_vit_with_an_attention_pool_on_the_meta_device():
    """test_vit3 pools with a learned latent (as SigLIP's "map" pool): a parameter fed straight into a layer,
    on which the FLOP counter's autograd hooks used to fail; counting leaves the model trainable."""
    with torch.device("meta"):
        model = timm.create_model("test_vit3", num_classes=5, img_size=32, patch_size=8)
    assert forward_mflops(model, (3, 32, 32)) > 0
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_model_meta_counts_weight_layers_without_the_head():
    with_head, headless = timm.create_model(ARCH, num_classes=5), timm.create_model(ARCH, num_classes=0)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in headless.modules())
    assert model_meta(with_head)["depth"] == model_meta(headless)["depth"] == convs
    assert model_meta(with_head)["num_params"] == sum(p.numel() for p in with_head.parameters())


# -------------------------------------------------------------------------------------- demo bank
@pytest.mark.slow
def test_demo_bank_build_is_deterministic_resumable_and_valid(tmp_path):
    # The real recipe, shrunk: one architecture, one epoch (the full build takes minutes).
    quick = {"archs": ["effnet"], "epochs": 1}
    manifest = demo_bank.build_demo_bank(tmp_path / "a", seed=0, **quick)
    bank = load_bank(BankSettings(dir=str(manifest.parent)), tmp_path)
    assert [e.source.name for e in bank] == ["photos", "symbols", "textures"]  # sources only, no targets
    for entry in bank:
        assert entry.sha256 and entry.data_config["input_size"] == (3, 32, 32) and entry.source.num_images > 0
        assert create_model(entry).num_classes == entry.num_classes == entry.source.num_classes
    mtimes = [os.stat(e.weights).st_mtime_ns for e in bank]
    demo_bank.build_demo_bank(tmp_path / "a", seed=0, **quick)  # resumed: nothing retrained
    assert [os.stat(e.weights).st_mtime_ns for e in bank] == mtimes
    again = load_bank(BankSettings(dir=str(demo_bank.build_demo_bank(tmp_path / "b", seed=0, **quick).parent)),
                      tmp_path)
    assert [e.sha256 for e in again] == [e.sha256 for e in bank]
