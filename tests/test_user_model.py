"""The team's own model, weights and plug-ins: a model file, checkpoints saved as training scripts save them,
TorchScript and torch.export programs, a plug-in criterion, an installed package's entry points - all written
by the test, run through the real pipeline on real runtimes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from user_code import PLUGINS_PY, import_file, write_nets

from edgebench.config import load_experiment
from edgebench.data import load_dataset
from edgebench.errors import ConfigError
from edgebench.models.cost import count_macs
from edgebench.models.source import new_model
from edgebench.models.weights import WeightsError, load_into, load_program, read_state_dict
from edgebench.pipeline import run_experiment
from edgebench.plan import plan_fp32_variants
from edgebench.store import Store
from edgebench.train import TRAIN_MACS_FACTOR

MEASURE = {"warmup_iters": 2, "min_iters": 10, "min_time_s": 0.0, "precision": None}  # fixed: no timing read


def _team_training(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 4) -> None:
    """How the team trained its weights: its own loop, not edgebench's."""
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(xt), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i : i + 32]), yt[i : i + 32]).backward()
            opt.step()
    model.eval()


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A trained model saved as a DataParallel checkpoint dict, a TorchScript file and a .pt2, with its accuracy on
    the digits test split that edgebench's default loader makes."""
    root = tmp_path_factory.mktemp("team")
    nets = import_file(write_nets(root))
    splits = load_dataset("digits")
    model = nets.build_net(num_classes=10, in_channels=1, width=8)
    _team_training(model, splits.x_train, splits.y_train)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # saved from nn.DataParallel
    torch.save({"state_dict": state, "epoch": 4, "best_acc": 0.9}, root / "ckpt.pt")
    torch.jit.save(torch.jit.script(model), root / "net.ts")
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.from_numpy(splits.x_train[:2]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, root / "net.pt2")
    (root / "plugins.py").write_text(PLUGINS_PY)
    return {"root": root, "model": model, "accuracy": _accuracy(model, splits.x_test, splits.y_test),
            "n_test": len(splits.y_test), "n_train": len(splits.y_train), "macs": count_macs(model, (1, 8, 8))}


def _experiment(root: Path, name: str, **sections: object) -> Path:
    data = {"name": name, "training": {"epochs": 0, "lr": 0.01}, "quantization": {"precisions": ["fp32", "int8"]},
            "targets": ["local-cpu"], "measurement": MEASURE, "run": {"workdir": f"runs/{name}"},
            "report": {"dir": f"reports/{name}"}, **sections}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _measured(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.chdir(path.parent)  # workdir and report are relative: they land beside the experiment
    outcome = run_experiment(load_experiment(path), render=False)
    with Store.open(outcome.store_url) as store:
        return outcome, store.measurements(outcome.run_id)


@pytest.mark.slow
def test_trained_weights_measured_as_given_then_pruned_by_a_plugin_criterion(team, monkeypatch):
    """The checkpoint is the baseline with no training: the deployed PyTorch model scores exactly what the team
    measured; oneshot pruning fine-tunes it one epoch; the plug-in criterion (L1 under another name) prunes in the
    build workers exactly as l1 does."""
    path = _experiment(
        team["root"], "from-weights",
        plugins=["plugins.py"],
        model={"file": "nets.py", "factory": "build_net", "kwargs": {"width": 8}, "weights": "ckpt.pt"},
        pruning={"criteria": ["l1", "team_l1"], "ratios": [0.5], "schedules": ["oneshot_finetune"], "finetune_epochs": 1},
    )
    outcome, df = _measured(path, monkeypatch)
    assert outcome.failed == [] and set(df["status"]) == {"ok"}
    base = df[df["label"] == "baseline/fp32"].set_index("backend")
    assert base.loc["torch", "accuracy"] == pytest.approx(team["accuracy"], abs=1e-12)
    assert abs(base.loc["onnxruntime", "accuracy"] - team["accuracy"]) <= 1 / team["n_test"]
    assert base.loc["torch", "training_macs"] == 0 and base.loc["torch", "macs"] == team["macs"]

    pruned = df[(df["criterion"].notna()) & (df["backend"] == "onnxruntime") & (df["precision"] == "fp32")]
    assert sorted(pruned["criterion"]) == ["l1", "team_l1"]
    l1, team_l1 = (pruned[pruned["criterion"] == c].iloc[0] for c in ("l1", "team_l1"))
    assert l1["macs"] == team_l1["macs"] < team["macs"] and l1["accuracy"] == team_l1["accuracy"]
    # one epoch of fine-tuning the pruned model on the training split (batches of 64; BatchNorm skips a batch of 1)
    seen = team["n_train"] - (1 if team["n_train"] % 64 == 1 else 0)
    assert l1["training_macs"] == TRAIN_MACS_FACTOR * l1["macs"] * seen
    int8 = df[df["precision"] == "int8"]
    assert len(int8) == 3 and set(int8["criterion"].fillna("baseline")) == {"baseline", "l1", "team_l1"}


@pytest.mark.slow
@pytest.mark.parametrize("program", ["net.ts", "net.pt2"])
def test_program_without_python_class_is_measured_and_quantized(team, monkeypatch, program):
    """A TorchScript or torch.export file is the model: measured on PyTorch and ONNX Runtime as given, and
    quantized to int8 by edgebench's ONNX Runtime path."""
    path = _experiment(team["root"], f"program-{program.replace('.', '-')}", model={"weights": program},
                       pruning={"criteria": []})
    outcome, df = _measured(path, monkeypatch)
    assert outcome.failed == [] and set(df["status"]) == {"ok"}
    assert set(df["label"]) == {"baseline/fp32", "baseline/int8"}
    fp32 = df[df["precision"] == "fp32"].set_index("backend")
    assert fp32.loc["torch", "accuracy"] == pytest.approx(team["accuracy"], abs=1e-12)
    assert abs(fp32.loc["onnxruntime", "accuracy"] - team["accuracy"]) <= 1 / team["n_test"]
    assert (df["macs"] == team["macs"]).all()  # counted from the program's dispatched convolutions and matmuls
    int8 = df[df["precision"] == "int8"].iloc[0]
    # quantized: its logits move off the fp32 program's (fp32 ONNX stays at rounding error), its accuracy barely
    assert int8["max_abs_diff"] > 100 * fp32.loc["onnxruntime", "max_abs_diff"]
    assert int8["accuracy"] > team["accuracy"] - 0.05


def test_variant_ids_follow_file_contents_not_locations(team, tmp_path):
    """A moved copy of the same files keeps every id (cached models are reused); an edited model file or other
    weights give new ids (a cached model is never silently reused)."""
    model = {"file": "nets.py", "factory": "build_net", "weights": "ckpt.pt"}
    pruning = {"criteria": ["l1"], "ratios": [0.5], "schedules": ["oneshot_finetune"]}

    def ids(root: Path) -> list[str]:
        return [s.id for s in plan_fp32_variants(load_experiment(_experiment(root, "ids", model=model, pruning=pruning)))]

    copy = tmp_path / "moved"
    for name in ("nets.py", "ckpt.pt"):
        (copy / name).parent.mkdir(exist_ok=True)
        shutil.copy(team["root"] / name, copy / name)
    original = ids(copy)
    assert ids(team["root"]) == original
    (copy / "nets.py").write_text((copy / "nets.py").read_text() + "\n# tuned the stem\n")
    edited = ids(copy)
    assert not set(edited) & set(original)
    torch.save({k: v + 1 for k, v in torch.load(copy / "ckpt.pt")["state_dict"].items()}, copy / "ckpt.pt")
    assert not set(ids(copy)) & set(edited + original)


def test_a_model_file_edited_during_a_run_is_not_built_under_the_old_codes_id(team, tmp_path):
    """nn.ReLU edited to nn.Tanh while the run built its variants: the model built was cached under the id of the
    ReLU code, and after the edit was reverted a later run measured the Tanh model as the ReLU one. A build checks
    the code against the digest its id carries, before and after it trains."""
    from edgebench.errors import ArtifactError
    from edgebench.sweep import DataRef, build_variant

    shutil.copy(team["root"] / "nets.py", tmp_path / "nets.py")
    model = {"file": "nets.py", "factory": "build_net"}
    exp = load_experiment(_experiment(tmp_path, "edit", model=model, training={"epochs": 1}))
    (baseline,) = [s for s in plan_fp32_variants(exp) if s.kind == "baseline"]
    assert baseline.source.code_files == (str((tmp_path / "nets.py").resolve()),)
    (tmp_path / "nets.py").write_text((tmp_path / "nets.py").read_text() + "\n# edited while the run builds\n")
    with pytest.raises(ArtifactError, match=r"baseline/fp32: the model's code \(nets.py\) changed since this run "
                                            "started, so what it would build is not the model its id names"):
        build_variant(baseline, DataRef(exp.dataset.model_dump_json()), str(tmp_path / "work"), None)
    assert not list((tmp_path / "work" / "models").glob("*.pt"))


def test_an_edited_criterion_gives_new_ids_however_it_was_named(tmp_path, monkeypatch):
    """A criterion by import path (or entry point) is code that decides what a variant is: editing its file must
    not reuse models built by the old code, while the zoo model's own ids stay as they were."""
    module = "team_crit_ids"
    (tmp_path / f"{module}.py").write_text(PLUGINS_PY.replace('@CRITERIA.register("team_l1")\n', ""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    pruning = {"criteria": [f"{module}:TeamL1"], "ratios": [0.5], "schedules": ["oneshot_finetune"]}

    def ids() -> list[str]:
        exp = _experiment(tmp_path, "crit", pruning=pruning, training={"epochs": 1})
        return [s.id for s in plan_fp32_variants(load_experiment(exp))]

    original = ids()
    assert ids() == original
    (tmp_path / f"{module}.py").write_text((tmp_path / f"{module}.py").read_text() + "\n# scores changed\n")
    assert not set(ids()) & set(original)
    zoo = _experiment(tmp_path, "zoo", pruning={"criteria": ["l1"], "ratios": [0.5]}, training={"epochs": 1})
    assert load_experiment(zoo).model_source() is None  # edgebench's own criterion: nothing of the user's to hash


def test_checkpoint_layouts_load_into_the_model(team, tmp_path):
    """A plain state dict, {'model': ...} with an optimizer beside it, DataParallel and torch.compile prefixes, a
    PyTorch Lightning checkpoint (keys under the LightningModule's attribute), an EMA-only checkpoint, a safetensors
    file: the same weights; a pickled module is refused unless trusted."""
    from safetensors.torch import save_file

    model = team["model"]
    state = model.state_dict()
    layouts = {
        "plain.pt": state,
        "model_key.pt": {"model": state, "optimizer": {"lr": 0.1}, "epoch": 3},
        "compiled.pt": {f"_orig_mod.{k}": v for k, v in state.items()},
        "dp.pt": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        "lightning.ckpt": {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 3,
                           "optimizer_states": [], "pytorch-lightning_version": "2.5.0"},
        "ema.pt": {"model_ema": {f"module.{k}": v for k, v in state.items()}},
    }
    x = torch.randn(4, 1, 8, 8)
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
    save_file(state, tmp_path / "weights.safetensors")
    for name in [*layouts, "weights.safetensors"]:
        fresh = type(model)(10, 1, 8).eval()
        load_into(fresh, read_state_dict(tmp_path / name), tmp_path / name)
        assert torch.equal(fresh(x), model(x)), name
    wrapped = nn.Sequential()  # a model that holds the network under an attribute reads the bare network's weights
    wrapped.add_module("backbone", type(model)(10, 1, 8))
    load_into(wrapped.eval(), read_state_dict(tmp_path / "plain.pt"), tmp_path / "plain.pt")
    assert torch.equal(wrapped(x), model(x))
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(WeightsError, match=r"whole.pt: needs the Python object \S*SmallNet .*trust_checkpoint"):
        read_state_dict(tmp_path / "whole.pt")
    assert read_state_dict(tmp_path / "whole.pt", trust=True).keys() == state.keys()


def test_mismatched_weights_name_the_first_key_and_both_shapes(team, tmp_path):
    nets = import_file(team["root"] / "nets.py")
    torch.save(nets.build_net(width=16).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(WeightsError, match=r"'features.0.weight' has shape \(16, 1, 3, 3\) in the weights but "
                                           r"\(8, 1, 3, 3\) in the model"):
        load_into(nets.build_net(width=8), read_state_dict(tmp_path / "wide.pt"), tmp_path / "wide.pt")
    state = nets.build_net().state_dict()
    state["head.weight"] = state.pop("fc.weight")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(WeightsError, match=r"the model's 'fc.weight' \(10, 16\) is not in the weights.*the weights' "
                                           r"'head.weight' \(10, 16\) is not in the model"):
        load_into(nets.build_net(), read_state_dict(tmp_path / "renamed.pt"), tmp_path / "renamed.pt")
    # shapes without data (init_empty_weights-style code): was "Tensor.item() cannot be called on meta tensors"
    torch.save({k: torch.empty_like(v, device="meta") for k, v in nets.build_net().state_dict().items()},
               tmp_path / "meta.pt")
    with pytest.raises(WeightsError, match=r"meta.pt: '.+' is a meta-device tensor, which holds a shape and no values"):
        load_into(nets.build_net(), read_state_dict(tmp_path / "meta.pt"), tmp_path / "meta.pt")


PACKAGE_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "team-nets"
version = "1.0"

[project.entry-points."edgebench.models"]
team_small = "team_nets:build_net"

[project.entry-points."edgebench.criteria"]
team_l1 = "team_nets.criteria:TeamL1"

[tool.setuptools]
packages = ["team_nets"]
"""


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package declaring a model and a criterion as entry points, built and installed by pip into its own
    directory (put on PYTHONPATH by the tests that use it, so this test process and its venv stay as they are)."""
    src = tmp_path_factory.mktemp("team-nets")
    (src / "pyproject.toml").write_text(PACKAGE_PYPROJECT)
    write_nets(src / "team_nets", "__init__.py")
    (src / "team_nets" / "criteria.py").write_text(PLUGINS_PY.replace('@CRITERIA.register("team_l1")\n', ""))
    site = src / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    return site


def _cli(args: list[str], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """The installed ``edgebench`` script, as a user runs it (its own directory on sys.path, not the cwd)."""
    env = {k: v for k, v in os.environ.items() if k != "EDGEBENCH_PLUGINS"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return subprocess.run([str(Path(sys.executable).with_name("edgebench")), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_installed_package_adds_model_and_criterion_by_entry_point(installed_package, tmp_path):
    """``pip install`` of a package is all it takes: its entry points name a model and a criterion."""
    exp = _experiment(tmp_path, "entry-points", model={"name": "team_small", "kwargs": {"width": 8}},
                      training={"epochs": 2}, pruning={"criteria": ["team_l1"], "ratios": [0.5], "prune_epochs": [0]})
    listed = _cli(["variants", str(exp)], tmp_path, installed_package)
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert "team_l1-0.5-while_training" in listed.stdout
    missing = _cli(["variants", str(exp)], tmp_path)  # the same experiment without the package installed
    assert missing.returncode == 2 and "model.name: unknown value 'team_small'" in missing.stdout


def test_import_path_names_a_factory_in_the_working_directory(team, tmp_path):
    """``model.name: nets:build_net`` imports the team's module as ``python -m`` would, from where edgebench runs."""
    shutil.copy(team["root"] / "nets.py", tmp_path / "nets.py")
    exp = _experiment(tmp_path, "import-path", model={"name": "nets:build_net", "kwargs": {"width": 4}},
                      training={"epochs": 1}, pruning={"criteria": []})
    listed = _cli(["variants", str(exp)], tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "baseline/fp32" in listed.stdout and "baseline/int8" in listed.stdout


def test_a_factory_may_require_what_edgebench_fills_from_the_data(tmp_path):
    """``build(num_classes: int, in_channels: int, input_size: int)`` without defaults passes the experiment check (edgebench fills
    all three from the dataset: 10, 1 and 8 for digits), and the model it builds is sized for the data; an
    ``input_size`` set in model.kwargs is still type-checked."""
    (tmp_path / "sized.py").write_text(textwrap.dedent("""
        from torch import nn

        def build(num_classes: int, in_channels: int, input_size: int):
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * input_size * input_size, num_classes))
    """))
    exp = load_experiment(_experiment(tmp_path, "sized", model={"file": "sized.py", "factory": "build"},
                                      training={"epochs": 1}, pruning={"criteria": []}))
    (spec,) = plan_fp32_variants(exp)
    model = new_model(spec, load_dataset("digits"))
    assert (model[0].in_channels, model[3].in_features, model[3].out_features) == (1, 4 * 8 * 8, 10)
    with pytest.raises(ConfigError, match=r"model.kwargs: option 'input_size': Input should be a valid integer"):
        load_experiment(_experiment(tmp_path, "sized-str", training={"epochs": 1}, pruning={"criteria": []},
                                    model={"file": "sized.py", "factory": "build", "kwargs": {"input_size": "8"}}))


def test_broken_installed_plugin_is_named(tmp_path):
    """An installed package whose entry point raises on import is named with the error where its name is asked
    for, not ignored; an experiment that asks for none of its names runs (it had stopped every experiment)."""
    site = tmp_path / "site"
    dist = site / "broken_nets-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-nets\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[edgebench.models]\nbroken = broken_nets:build\n")
    (site / "broken_nets.py").write_text("raise ImportError('needs timm')\n")
    exp = _experiment(tmp_path, "broken", model={"name": "broken"}, training={"epochs": 1})
    listed = _cli(["variants", str(exp)], tmp_path, site)
    assert listed.returncode == 2
    assert "entry point 'broken = broken_nets:build' (group edgebench.models, from broken-nets)" in listed.stdout
    assert "needs timm" in listed.stdout and len(listed.stdout.strip().splitlines()) <= 2
    other = _experiment(tmp_path, "other", model={"name": "digits_cnn"}, training={"epochs": 1})
    assert _cli(["variants", str(other)], tmp_path, site).returncode == 0


#: akamaster/pytorch_resnet_cifar10's option-A block (its shortcut a lambda kept by a LambdaLayer) in a model whose
#: class the factory defines: pickle finds neither by name
LAMBDA_NETS = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn


    class LambdaLayer(nn.Module):
        def __init__(self, lambd):
            super().__init__()
            self.lambd = lambd

        def forward(self, x):
            return self.lambd(x)


    class Block(nn.Module):
        def __init__(self, planes_in, planes):
            super().__init__()
            self.conv1 = nn.Conv2d(planes_in, planes, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            pad = (planes - planes_in) // 2
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


    def build_net(num_classes, in_channels):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                          nn.ReLU())
                self.block = Block(8, 16)
                self.fc = nn.Linear(16, num_classes)

            def forward(self, x):
                return self.fc(F.adaptive_avg_pool2d(self.block(self.stem(x)), 1).flatten(1))

        return Net()
""")


@pytest.mark.slow
def test_a_model_with_a_lambda_and_a_factory_local_class_is_pruned_and_measured(tmp_path, monkeypatch):
    """Such a model was refused ("cannot be saved whole: Can't pickle local object ... <lambda>"): whole models are
    pickled with cloudpickle, which writes both by value. The channel-padding shortcut is refused by the removal
    check with the line to add (``pruning.keep: [stem.0]``); with it, the block's first conv prunes, and the
    variants are built, exported and measured in other processes (PyTorch loads the pickled module there)."""
    (tmp_path / "lambda_nets.py").write_text(LAMBDA_NETS)
    pruning = {"criteria": ["l1"], "ratios": [0.5], "schedules": ["while_training"], "prune_epochs": [0]}
    sections = {"model": {"file": "lambda_nets.py", "factory": "build_net"}, "training": {"epochs": 2, "lr": 0.05}}
    with pytest.raises(ConfigError, match=r"pruning.keep: \[stem.0\]"):
        _measured(_experiment(tmp_path, "lambda-refused", pruning=pruning, **sections), monkeypatch)
    outcome, df = _measured(_experiment(tmp_path, "lambda", pruning={**pruning, "keep": ["stem.0"]}, **sections),
                            monkeypatch)
    assert outcome.failed == [] and set(df["status"]) == {"ok"}
    torch_rows = df[df["backend"] == "torch"].set_index("label")
    assert len(torch_rows) == 2 and torch_rows["accuracy"].min() > 0.2  # 10 classes: chance 0.1
    base, pruned = (torch_rows.loc[label] for label in sorted(torch_rows.index, key=lambda name: "l1" in name))
    assert pruned["macs"] < 0.7 * base["macs"]
    ort = df[(df["backend"] == "onnxruntime") & (df["precision"] == "fp32")].set_index("label")["accuracy"]
    assert (ort - torch_rows["accuracy"]).abs().max() <= 1 / 360  # the same model on both runtimes


def test_plugin_file_is_loaded_in_spawned_workers(team, tmp_path, monkeypatch):
    """A criterion registered by a ``plugins:`` file resolves in a fresh process started with the run's environment
    (as the warm workers are), not only in the process that read the experiment."""
    monkeypatch.setenv("EDGEBENCH_PLUGINS", "")  # restored when the test ends: reading the experiment sets it
    load_experiment(_experiment(team["root"], "plugin-env", plugins=["plugins.py"], training={"epochs": 1},
                                pruning={"criteria": ["team_l1"], "ratios": [0.5], "prune_epochs": [0]}))
    code = textwrap.dedent("""
        from edgebench.prune.criteria import CRITERIA
        print(CRITERIA.get("team_l1").__mro__[1].__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "L1Norm", out.stderr


def test_a_pruned_model_of_a_user_file_loads_with_torch_load_where_the_file_is_not(tmp_path):
    """A PyTorch artifact (or cached model) of a ``model: {file: ...}`` model named its classes by the module name
    edgebench makes up for the file, so ``torch.load`` elsewhere failed ("No module named 'edgebench_plugin_nets_..."):
    its classes are written by value, and the model loads with neither the file nor EDGEBENCH_PLUGINS."""
    from edgebench.models.whole_module import save_whole
    from edgebench.plugins import load_file

    model = load_file(write_nets(tmp_path / "code")).build_net(num_classes=10, in_channels=1, width=8).eval()
    x = torch.randn(3, 1, 8, 8)
    save_whole(model, tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", x.numpy())
    shutil.rmtree(tmp_path / "code")
    code = textwrap.dedent("""
        import numpy as np, torch
        model = torch.load("model.pt", weights_only=False)
        np.save("y.npy", model(torch.from_numpy(np.load("x.npy"))).detach().numpy())
    """)
    env = {k: v for k, v in os.environ.items() if k != "EDGEBENCH_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    with torch.no_grad():
        assert np.allclose(np.load(tmp_path / "y.npy"), model(x).numpy(), atol=1e-6)


def test_trusted_pickle_whose_module_is_missing_names_the_module(tmp_path):
    """A whole pickled model whose class's package is not installed here is not 'corrupt': the module is named."""
    (tmp_path / "teamproj_gone").mkdir()
    (tmp_path / "teamproj_gone" / "__init__.py").write_text(
        "from torch import nn\nclass TeamNet(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(2, 2)\n")
    subprocess.run([sys.executable, "-c", "import torch, teamproj_gone; torch.save(teamproj_gone.TeamNet(), 'm.pt')"],
                   cwd=tmp_path, check=True)
    with pytest.raises(WeightsError, match=r"m.pt: pickles a model whose module 'teamproj_gone' is not importable "
                                           r"here; install it .*model.state_dict\(\)") as caught:
        read_state_dict(tmp_path / "m.pt", trust=True)
    assert "corrupt" not in str(caught.value)


def test_a_torch_export_program_of_a_fixed_batch_is_refused_at_load(tmp_path):
    """A .pt2 exported without a dynamic batch guards x.size()[0] == 1: every batch of training, evaluation and
    measurement failed with the guard; it is refused when read, saying how to export it."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10)).eval()
    net(torch.randn(1, 1, 8, 8))
    torch.export.save(torch.export.export(net, (torch.randn(1, 1, 8, 8),)), tmp_path / "fixed.pt2")
    with pytest.raises(WeightsError, match=r"fixed.pt2: the torch.export program takes a fixed batch of 1; export the "
                                           r"program with a dynamic batch dimension \(dynamic_shapes="):
        load_program(tmp_path / "fixed.pt2", "exported_program")
