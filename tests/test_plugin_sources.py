"""Where each plug-in comes from: ``edgebench doctor`` lists every one with its source and the entry points that do
not load, a name that a plug-in file and an installed entry point both register names both, and the store commands
find their default store without loading plug-ins. Each test installs a distribution of its own (a dist-info folder
on sys.path) and gives the registries a fresh start, so they load its entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from store_fixtures import fill_run
from typer.testing import CliRunner

from edgebench.cli import app
from edgebench.doctor import plugin_registries
from edgebench.plugins import PLUGINS_ENV, PluginError, load_file
from edgebench.store import Store

CRITERION = """from edgebench.prune.criteria.base import Criterion

class L2(Criterion):
    def module_scores(self, module, role):
        return module.weight.detach().flatten(1).norm(dim=1) if role == "out" else None
"""
#: a plug-in file registering the name the installed package's entry point gives its criterion
SAME_NAME = """from edgebench.prune import CRITERIA
from edgebench.prune.criteria.base import Criterion

@CRITERIA.register("team_l2")
class MyOwnL2(Criterion):
    def module_scores(self, module, role):
        return module.weight.detach().flatten(1).norm(dim=1) if role == "out" else None
"""
BACKEND = """from edgebench.runtimes.base import BACKENDS
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend

@BACKENDS.register("team_ort")
class TeamOrt(OnnxRuntimeBackend):
    pass
"""

Install = Callable[[str], None]


@pytest.fixture()
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Installs the distribution ``teamplug`` with the given entry_points.txt (its modules: ``teamplug_crit``, a
    criterion; ``teamplug_broken``, which fails to import), and lets every registry load entry points again."""
    site = tmp_path / "site"
    monkeypatch.setenv(PLUGINS_ENV, "")  # --plugins and plugins: set it for the process
    monkeypatch.chdir(tmp_path)
    for reg in plugin_registries():
        reg.names()  # edgebench's own loaded once, then kept in the copies
        # without what earlier tests in this process registered (plug-in files of the bad-input battery)
        own = {k: v for k, v in reg._items.items() if (getattr(v, "__module__", "") or "").startswith("edgebench.")}
        monkeypatch.setattr(reg, "_items", own)
        monkeypatch.setattr(reg, "_entry_points", {})
        monkeypatch.setattr(reg, "_entry_points_read", set())
        monkeypatch.setattr(reg, "_broken", {})

    def installed(entry_points: str) -> None:
        dist = site / "teamplug-0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: teamplug\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(entry_points)
        (site / "teamplug_crit.py").write_text(CRITERION)
        (site / "teamplug_broken.py").write_text("raise ImportError('needs timm')\n")
        monkeypatch.syspath_prepend(str(site))

    yield installed
    for module in ("teamplug_crit", "teamplug_broken"):
        sys.modules.pop(module, None)


def _experiment(tmp_path: Path, **over: object) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "plug", "training": {"epochs": 1}, "targets": ["local-cpu"],
                                    "quantization": {"precisions": ["fp32"]}, **over}))
    return path


def test_a_name_of_a_plugin_file_and_an_entry_point_names_both(install: Install, tmp_path: Path) -> None:
    """The error had blamed the installed package alone ("rename the entry point"), never naming the file."""
    install("[edgebench.criteria]\nteam_l2 = teamplug_crit:L2\n")
    (tmp_path / "dup.py").write_text(SAME_NAME)
    exp = _experiment(tmp_path, plugins=["dup.py"], pruning={"criteria": ["team_l2"], "ratios": [0.5]})
    done = CliRunner().invoke(app, ["variants", str(exp)], env={"COLUMNS": "400"})
    assert done.exit_code == 2, done.output
    assert (f"criterion 'team_l2' is registered twice, by plugins file {tmp_path / 'dup.py'} and by entry point "
            "'team_l2' of teamplug (group edgebench.criteria); rename one of them") in done.output


def test_a_plugin_file_taking_an_entry_points_name_names_the_package(install: Install, tmp_path: Path) -> None:
    """The other order (the registry loaded before the file): the file is named, and the package it clashes with."""
    from edgebench.prune import CRITERIA

    install("[edgebench.criteria]\nteam_l2 = teamplug_crit:L2\n")
    assert "team_l2" in CRITERIA.names()
    (tmp_path / "dup_late.py").write_text(SAME_NAME)
    with pytest.raises(PluginError, match=r"dup_late.py: importing it raised ValueError: criterion 'team_l2' is already "
                       r"registered \(by entry point 'team_l2' of teamplug \(group edgebench.criteria\)\)"):
        load_file(tmp_path / "dup_late.py")


def test_doctor_lists_backends_and_plugins_with_their_source_and_a_broken_entry_point(install: Install,
                                                                                      tmp_path: Path) -> None:
    """doctor had listed no plug-in at all, and an entry point failing to import went unmentioned (exit 0)."""
    install("[edgebench.criteria]\nteam_l2 = teamplug_crit:L2\nteam_broken = teamplug_broken:X\n")
    (tmp_path / "team_backends.py").write_text(BACKEND)
    done = CliRunner().invoke(app, ["doctor", "--plugins", "team_backends.py"], env={"COLUMNS": "400"})
    assert done.exit_code == 2, done.output
    rows = [" ".join(line.replace("│", " ").split()) for line in done.output.splitlines()]
    assert "onnxruntime onnx edgebench" in rows  # bench --help sends the user here for backend names
    assert f"team_ort onnx plugins file {tmp_path / 'team_backends.py'}" in rows
    assert "criterion team_l2 entry point 'team_l2' of teamplug (group edgebench.criteria)" in rows
    assert f"backend team_ort plugins file {tmp_path / 'team_backends.py'}" in rows
    assert ("error: entry point 'team_broken = teamplug_broken:X' (group edgebench.criteria, from teamplug) failed to "
            "load: ImportError: needs timm; fix teamplug or uninstall it (pip uninstall teamplug)") in rows
    assert not any("team_broken" in row for row in rows if not row.startswith("error:"))


def test_doctor_without_plugins_says_so(install: Install) -> None:
    install("")
    done = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    assert "plug-ins: none (installed entry points, plugins: files and --plugins files register them)" in done.output


def test_runs_finds_the_default_store_despite_a_broken_criteria_entry_point(install: Install, tmp_path: Path) -> None:
    """`edgebench runs` (no --store) read the default experiment, whose pruning.criteria check loaded every criteria
    entry point: a broken one made the store unreadable."""
    install("[edgebench.criteria]\nteam_broken = teamplug_broken:X\n")
    with Store.open(tmp_path / "runs" / "default" / "results.db") as store:
        run_id = fill_run(store)
    done = CliRunner().invoke(app, ["runs"], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    assert run_id in done.output


def test_a_broken_entry_point_stops_the_lookups_of_its_own_name_only(install: Install, tmp_path: Path) -> None:
    """One installed package with a broken entry point stopped every experiment, the default one included (which
    names none of its plug-ins), blaming the experiment's model.name or pruning.criteria. Now its own name raises
    its error, with what to do; the others resolve, and doctor lists it."""
    from edgebench.prune import CRITERIA

    install("[edgebench.criteria]\nteam_broken = teamplug_broken:X\nteam_l2 = teamplug_crit:L2\n")
    assert CRITERIA.get("l1").__name__ == "L1Norm" and CRITERIA.get("team_l2").__name__ == "L2"
    for _ in range(2):  # every lookup of it, not only the first
        with pytest.raises(PluginError, match=r"team_broken.*; fix teamplug or uninstall it \(pip uninstall teamplug\)"):
            CRITERIA.get("team_broken")
    with pytest.raises(KeyError, match=r"unknown criterion 'team_l3' \(did you mean 'team_l2'\?\).*an installed "
                                       r"plug-in failed to load: entry point 'team_broken"):
        CRITERIA.get("team_l3")  # the name may have been one the broken module registers
    assert "team_l2" in CRITERIA.names() and "team_broken" not in CRITERIA.names()
    done = CliRunner().invoke(app, ["variants"], env={"COLUMNS": "400"})  # the built-in experiment
    assert done.exit_code == 0 and "l1-0.5-while_training" in done.output, done.output


def test_a_run_records_the_versions_of_installed_plugin_packages(install: Install) -> None:
    """A run stored the runtimes' versions but not the plug-in package's, whose backend or meter changes figures
    without a new variant id: nothing said which version of it measured."""
    from edgebench.measure.machine import package_versions

    install("[edgebench.criteria]\nteam_l2 = teamplug_crit:L2\n")
    assert package_versions()["teamplug"] == "0.1" and "edgebench" not in package_versions()
