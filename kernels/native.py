"""The kernels compiled ahead of time into a Python extension module, which runs without Numba.

A process that calls a jitted kernel keeps Numba and LLVM in memory for as long as it runs:
about 110 MB, as much again as the rest of the agent. ``build`` compiles the same
kernels, each with its own flags, through Numba's pycc into ``edgewatch_kernels`` beside the
JIT cache (``kernels.cache``); that takes Numba, a C and a C++ compiler and Python's headers,
once per machine. ``load`` imports the module with nothing but NumPy.

The module is built for this machine's CPU, as the JIT is, and linked to the FFT library of
the rocket-fft it was built with, by path. ``load`` refuses a module built on another CPU; a
module whose FFT library has moved fails to import. Either way the caller falls back to the JIT.

Entry points, one per precision of the samples ``s`` and of the output ``o`` (``f`` for
float32, ``d`` for float64), all arrays C-contiguous:

- ``windows_so(windows[n, channels, N], window[N], window_sum, window_sq_sum, sample_rate,
  plan, out[n, F]) -> bool``: ``batch.window_features`` over every window, one after another;
- ``rolling_so(rows[n, channels], alpha, *RollingState, out[n, channels * 6])``:
  ``rolling.rolling_features``.
"""

import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from .cache import cache_dir

MODULE = "edgewatch_kernels"
PRECISIONS = {"f": "f4", "d": "f8"}
# The lines of /proc/cpuinfo that say which instructions compiled code may use.
_CPU_FIELDS = (
    "vendor_id",
    "model name",
    "flags",
    "CPU implementer",
    "CPU architecture",
    "CPU variant",
    "CPU part",
    "Features",
)
_TOOLS = (
    "they need a C and a C++ compiler and Python's headers "
    "(Debian: apt install gcc g++ python3-dev)"
)


class Unavailable(Exception):
    """The native module cannot be used here; the message says why and what to do."""


def module_path(folder: Path | None = None) -> Path:
    """The extension module's file in ``folder`` (default: ``cache_dir()``)."""
    return (folder or cache_dir()) / (MODULE + str(sysconfig.get_config_var("EXT_SUFFIX")))


def cpu_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """A digest of this machine's architecture and its first CPU's model and instruction set."""
    try:
        first = cpuinfo.read_text().split("\n\n", 1)[0]
    except OSError:
        first = ""
    fields = [
        line.strip() for line in first.splitlines() if line.split(":", 1)[0].strip() in _CPU_FIELDS
    ]
    digest = hashlib.sha256(platform.machine().encode())
    for line in fields:
        digest.update(line.encode())
    return digest.hexdigest()[:16]


def missing_tools() -> str | None:
    """What this machine lacks to build the module, or None.

    Numba's pycc test-compiles a C and a C++ file before it builds anything, with the compilers
    setuptools picks: ``CC`` for C, and ``CXX`` or ``CC`` for C++ depending on setuptools'
    version. gcc compiles C++ only when g++ is installed (its ``cc1plus``), so both are tried.
    """
    cc = _compiler("CC", "cc")
    cxx = _compiler("CXX", "c++")
    for language, command in (("C", cc), ("C++", cxx)):
        if shutil.which(command[0]) is None:
            return f"no {language} compiler ({command[0]})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    for language, command in (("C", cc), ("C++", cc), ("C++", cxx)):
        error = _cannot_compile(command, language)
        if error is not None:
            return f"no {language} compiler ({error})"
    return None


def _compiler(variable: str, default: str) -> list[str]:
    command = os.environ.get(variable) or sysconfig.get_config_var(variable) or default
    return shlex.split(str(command))


def _cannot_compile(command: list[str], language: str) -> str | None:
    """The compiler's first error line when it cannot compile an empty program, or None."""
    try:
        done = subprocess.run(
            [*command, "-x", language.lower(), "-c", "-o", os.devnull, "-"],
            input="int main(void) { return 0; }\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if "error" in line] or ["failed"]
    return lines[0].strip()


def load(folder: Path | None = None) -> ModuleType:
    """Import the module built in ``folder`` (default: ``cache_dir()``); ``Unavailable`` when
    there is none, or it was built on another CPU, or it does not import."""
    path = module_path(folder)
    stamp = path.with_suffix(".json")
    if not path.exists() or not stamp.exists():
        raise Unavailable(f"no native kernels in {path.parent}: run `edgewatch warmup`")
    try:
        built = json.loads(stamp.read_text())
    except (OSError, ValueError) as e:
        raise Unavailable(f"{stamp}: unreadable ({e}): run `edgewatch warmup`") from None
    if not isinstance(built, dict) or built.get("cpu") != cpu_key():
        raise Unavailable(f"{path}: built for another CPU: run `edgewatch warmup`")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as e:
        raise Unavailable(f"{path}: {e}: run `edgewatch warmup`") from None
    return module


def build(folder: Path | None = None) -> Path:
    """Compile the module into ``folder`` (default: ``cache_dir()``) unless a usable one is
    there, and return its path. ``Unavailable`` when it cannot be compiled here."""
    path = module_path(folder)
    try:
        load(folder)
        return path
    except Unavailable:
        pass
    missing = missing_tools()
    if missing is not None:
        raise Unavailable(f"cannot build the native kernels: {missing}; {_TOOLS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=path.parent) as tmp:
        try:
            _compile(Path(tmp))
        except Exception as e:  # pycc reports a missing compiler or header in many ways
            raise Unavailable(f"cannot build the native kernels: {type(e).__name__}: {e}") from e
        os.replace(Path(tmp) / path.name, path)
        # Written last: a module counts as built once its stamp is there.
        path.with_suffix(".json").write_text(json.dumps({"cpu": cpu_key()}))
    return path


def _compile(out: Path) -> None:
    with warnings.catch_warnings():
        # Pending deprecation since Numba 0.57, with no replacement yet; see the README.
        warnings.simplefilter("ignore")
        from numba import pycc
    from rocket_fft import _native

    from .batch import window_features
    from .rolling import rolling_features

    def windows(windows, window, window_sum, window_sq_sum, sample_rate, plan, out):  # type: ignore[no-untyped-def]
        finite = True
        for i in range(windows.shape[0]):
            finite &= window_features(
                windows, i, window, window_sum, window_sq_sum, sample_rate, plan, out
            )
        return finite

    def rolling(rows, alpha, history, counters, shift, mean, m2, m2_added, ewma, previous, out):  # type: ignore[no-untyped-def]
        rolling_features(
            rows, alpha, history, counters, shift, mean, m2, m2_added, ewma, previous, out
        )

    cc: Any = pycc.CC(MODULE)  # type: ignore[attr-defined,no-untyped-call]
    cc.output_dir = str(out)
    cc.target_cpu = "host"
    state = "f8[:, ::1], i8[::1]" + ", f8[::1]" * 6
    for s, sample in PRECISIONS.items():
        for o, output in PRECISIONS.items():
            cc.export(
                f"windows_{s}{o}",
                f"b1({sample}[:, :, ::1], {sample}[::1], f8, f8, f8, i8[::1], {output}[:, ::1])",
            )(windows)
            cc.export(f"rolling_{s}{o}", f"none({sample}[:, ::1], f8, {state}, {output}[:, ::1])")(
                rolling
            )
    fft = _native.LIBRARY_PATH
    # Link the FFT library that rocket-fft's kernels call into, and find it where it is now.
    cc._extra_ldflags = {"posix": ["-Wl,--no-as-needed", fft, f"-Wl,-rpath,{Path(fft).parent}"]}
    cc.compile()
