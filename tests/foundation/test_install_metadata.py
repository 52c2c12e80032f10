"""The wheel's metadata never pulls torch into a plain ``pip install visplay`` (on Linux x86-64 PyPI's torch is the
CUDA build: several GB on a CPU machine): not as a requirement, not through one (peft requires torch). The extras
bring it, and a command that needs it without it says what to install."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from visplay.cli import main

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _unconditional(requirement: str) -> bool:
    """A requirement that applies whatever the extras (a marker may still name the platform or Python)."""
    return "extra ==" not in requirement.split(";", 1)[-1] if ";" in requirement else True


def _pulls(name: str, seen: set[str]) -> set[str]:
    """Every distribution an installed ``name`` requires, transitively, from the installed packages' metadata."""
    if name in seen:
        return set()
    seen.add(name)
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return {name}
    out = {name}
    for r in requires:
        if _unconditional(r):
            out |= _pulls(_name(r), seen)
    return out


def test_base_requirements_do_not_pull_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = [_name(r) for r in project["dependencies"]]
    assert "torch" not in base
    pulled: set[str] = set()
    for name in base:
        pulled |= _pulls(name, set())
    assert not {"torch", "peft", "accelerate"} & pulled, sorted(pulled)
    extras = project["optional-dependencies"]
    for extra in ("cpu", "gpu"):  # each install line of README gets torch and peft
        assert {"torch", "peft"} <= {_name(r) for r in extras[extra]}, extra
    readme = (ROOT / "README.md").read_text()
    assert "pip install 'visplay[cpu]' --extra-index-url https://download.pytorch.org/whl/cpu" in readme


def test_the_installed_metadata_says_so_too():
    """What pip reads: the installed distribution's Requires-Dist (the wheel's METADATA)."""
    requires = metadata.requires("visplay") or []
    torch = [r for r in requires if _name(r) == "torch"]
    assert torch and not any(_unconditional(r) for r in torch), torch
    assert {r.split(";", 1)[1].strip() for r in torch} == {'extra == "cpu"', 'extra == "gpu"'}


@pytest.mark.parametrize("command", [["run", "tiny"], ["resume", "runs/nothing"]])
def test_a_command_that_needs_torch_says_what_to_install(command, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without it
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "--extra-index-url https://download.pytorch.org/whl/cpu" in err


def test_run_log_commands_work_without_torch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["recipe", "tiny"]) == 0
    assert "questioner:" in capsys.readouterr().out
