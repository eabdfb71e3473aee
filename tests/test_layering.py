"""Imports flow export -> agent -> kernels, and a gateway never loads the training stack, nor
its test suite."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
TRAINING_STACK = (
    "sklearn",
    "tensorflow",
    "keras",
    "skl2onnx",
    "tf2onnx",
    "onnx",
    "matplotlib",
)


def imported_modules(path: Path) -> set[str]:
    """The modules a module imports, by their full names."""
    tree = ast.parse(path.read_text())
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules += (
                [node.module]
                if node.module != "edgewatch"
                else [f"edgewatch.{alias.name}" for alias in node.names]
            )
    return set(modules)


def imported_packages(path: Path) -> set[str]:
    """The packages a module imports: ``agent`` for ``edgewatch.agent.x``, ``numpy`` for
    ``numpy.linalg``."""
    return {m.removeprefix("edgewatch.").split(".")[0] for m in imported_modules(path)}


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("kernels", {"agent", "export", "scipy", *TRAINING_STACK}),
        ("agent", {"export", "scipy", *TRAINING_STACK}),
    ],
)
def test_no_module_imports_upstream(package, forbidden):
    for path in (ROOT / package).rglob("*.py"):
        assert not imported_packages(path) & forbidden, path


def test_the_gateway_suite_imports_nothing_that_needs_the_train_extra():
    # The hostile inputs of `edgewatch bench fuzz` are the gateway suite's too; that module
    # imports the agent and NumPy only (checked below).
    fuzz = ROOT / "export" / "bench" / "fuzz.py"
    assert not imported_packages(fuzz) - {"agent", "numpy", "pydantic", "argparse"} - STDLIB
    tests = ROOT / "tests"
    for path in tests.rglob("*.py"):
        if path.relative_to(tests).parts[0] != "train":
            tools = {m for m in imported_modules(path) if m.startswith("edgewatch.export")}
            assert tools <= {"edgewatch.export.bench.fuzz"}, path
            assert not imported_packages(path) & set(TRAINING_STACK), path


@pytest.mark.integration
def test_the_agent_and_its_command_line_load_no_training_library():
    # scipy is left out here: numba imports it whenever it is installed, for its BLAS bindings.
    code = (
        "import sys, pkgutil, importlib\n"
        "from edgewatch import agent\n"
        "for m in pkgutil.walk_packages(agent.__path__, 'edgewatch.agent.'):\n"
        "    importlib.import_module(m.name)\n"
        "from edgewatch.agent.cli import _parser; _parser()\n"
        f"print(sorted(set({TRAINING_STACK!r}) & {{n.split('.')[0] for n in sys.modules}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_edge_install_does_not_pull_the_training_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {dep.split(">")[0].split("=")[0].strip().lower() for dep in project["dependencies"]}
    assert not base & {
        "scikit-learn",
        "tensorflow",
        "tensorflow-cpu",
        "skl2onnx",
        "tf2onnx",
        "onnx",
    }


@pytest.mark.integration
def test_edgewatch_run_imports_no_tool(waveform_bundle, tmp_path):
    recording = tmp_path / "run.npy"
    np.save(recording, np.zeros((25600, 3), np.float32))
    config = tmp_path / "agent.toml"
    config.write_text(f"""
site = "s"
device = "g"
feedback_db = "{tmp_path / "feedback.sqlite"}"
[model]
bundle = "{waveform_bundle}"
[http]
port = {free_port()}
[[sources]]
type = "replay"
device = "fan"
path = "{recording}"
channels = ["x", "y", "z"]
sample_rate = 25600
[[sinks]]
type = "jsonl"
path = "{tmp_path / "alerts.jsonl"}"
""")
    code = (
        "import os, signal, sys, threading\n"
        "from edgewatch.agent.cli import main\n"
        "threading.Timer(3, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        f"status = main(['run', '--config', {str(config)!r}])\n"
        "tools = ('edgewatch.export', 'edgewatch.sim', 'sklearn', 'tensorflow', 'matplotlib')\n"
        "print(status, sorted(n for n in sys.modules if n.startswith(tools)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "0 []", out.stderr
