"""The native kernels: what an agent imports with them, and how they are refused and built."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.cli import main
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import Featurizer
from edgewatch.kernels import native, runtime
from tests.strategies import BEARING, assert_matches_reference

pytestmark = pytest.mark.integration

AGENT = """
import sys
import numpy as np
import edgewatch.agent.cli, agent.service
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import Featurizer
from edgewatch.kernels import runtime

kernels = runtime.select(1)
spec = FeatureSpec(kind="waveform", sample_rate=25600, window=1024, channels=["x", "y"])
Featurizer(spec)(np.random.default_rng(0).standard_normal((4, 2, 1024)).astype(np.float32))
Featurizer(FeatureSpec(kind="process", channels=["p"]))(np.arange(30.0)[:, None])
print(kernels.form, sorted({m.split(".")[0] for m in sys.modules} & {"numba", "llvmlite"}))
"""


def test_an_agent_with_native_kernels_never_imports_numba_or_llvm():
    done = subprocess.run([sys.executable, "-c", AGENT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["native", "[]"]


@pytest.mark.parametrize("samples", [np.float32, np.float64])
@pytest.mark.parametrize("output", [np.float32, np.float64])
def test_every_precision_pair_matches_the_reference(samples, output):
    kernels = runtime.select(1)
    try:
        assert kernels.form == "native", kernels.why
        spec = FeatureSpec(
            kind="waveform",
            sample_rate=25600,
            window=1024,
            channels=["x", "y", "z"],
            bearing=BEARING,
            shaft_hz=29.95,
        )
        x = np.random.default_rng(3).standard_normal((5, 3, 1024)).astype(samples)
        out = Featurizer(spec)(x, out=np.empty((5, len(spec.feature_names)), output))
    finally:
        runtime.select()
    rel = 1e-4 if np.float32 in (samples, output) else 1e-9
    for got, window in zip(out, x, strict=True):
        assert_matches_reference(got, window, spec, rel)


@pytest.fixture
def copied(tmp_path, native_kernels):  # type: ignore[no-untyped-def]
    """A copy of the session's native module and its stamp in a folder of its own."""
    shutil.copy(native_kernels, tmp_path)
    shutil.copy(native_kernels.with_suffix(".json"), tmp_path)
    return tmp_path


def test_a_copied_module_loads(copied):
    assert native.load(copied).windows_ff.__name__ == "windows_ff"


def test_a_current_module_is_not_compiled_again(copied, monkeypatch):
    def compile_(out):  # type: ignore[no-untyped-def]
        raise AssertionError("compiled again")

    monkeypatch.setattr(native, "_compile", compile_)
    before = native.module_path(copied).stat().st_mtime_ns
    assert native.build(copied) == native.module_path(copied)
    assert native.module_path(copied).stat().st_mtime_ns == before


def test_a_module_built_for_another_cpu_is_refused(copied):
    native.module_path(copied).with_suffix(".json").write_text(json.dumps({"cpu": "0" * 16}))
    with pytest.raises(native.Unavailable, match="built for another CPU: run `edgewatch warmup`"):
        native.load(copied)


@pytest.mark.parametrize("stamp", ["", "[]", "{"])
def test_a_bad_stamp_is_refused(copied, stamp):
    native.module_path(copied).with_suffix(".json").write_text(stamp)
    with pytest.raises(native.Unavailable, match="run `edgewatch warmup`"):
        native.load(copied)


def test_a_module_that_does_not_import_is_refused(copied):
    native.module_path(copied).write_bytes(b"\x7fELF truncated")
    with pytest.raises(native.Unavailable, match=r"edgewatch_kernels.*run `edgewatch warmup`"):
        native.load(copied)


def test_an_unfinished_build_is_not_loaded(copied):
    native.module_path(copied).with_suffix(".json").unlink()
    with pytest.raises(native.Unavailable, match="no native kernels in"):
        native.load(copied)


def test_without_a_build_the_agent_runs_the_jit(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    try:
        kernels = runtime.select(1)
        assert (kernels.form, kernels.why) == (
            "jit",
            f"no native kernels in {native.module_path().parent}: run `edgewatch warmup`",
        )
    finally:
        runtime.select()


def test_more_than_one_thread_runs_the_jit():
    try:
        assert runtime.select(2).form == "jit"
    finally:
        runtime.select(1)
        runtime.select()


def test_a_build_without_a_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    install = r"apt install gcc g\+\+ python3-dev"
    with pytest.raises(native.Unavailable, match=r"no C compiler .* " + install):
        native.build(tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_build_with_gcc_but_without_g_plus_plus_says_what_to_install(tmp_path):
    # A gateway with gcc and without g++ has no C++ front end (cc1plus); numba.pycc needs one.
    # Both are hidden here in a mount namespace of the test's own.
    cc1plus = subprocess.run(
        ["gcc", "-print-prog-name=cc1plus"], capture_output=True, text=True, check=True
    ).stdout.strip()
    gxx = shutil.which(str(sysconfig.get_config_var("CXX")).split()[0])
    assert Path(cc1plus).is_file() and gxx is not None, "this test needs g++ to hide"
    hide = f'mount --bind /dev/null {cc1plus} && mount --bind /dev/null {gxx} && exec "$@"'
    build = "import sys, pathlib, edgewatch.kernels.native as n; n.build(pathlib.Path(sys.argv[1]))"
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", hide, "sh", sys.executable, "-c", build, tmp_path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    refusal = done.stderr.strip().splitlines()[-1]
    assert refusal.startswith(
        "edgewatch.kernels.native.Unavailable: cannot build the native kernels: no C++"
    )
    assert refusal.endswith("(Debian: apt install gcc g++ python3-dev)")
    assert "conda" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_warmup_warns_of_the_jit_s_memory_when_the_native_build_fails(
    tmp_path, monkeypatch, capsys
):

    import edgewatch.kernels.config  # noqa: F401  # the JIT keeps its cache: only the native build moves

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert main(["warmup"]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert warnings[0].startswith("edgewatch warmup: warning: cannot build the native kernels")
    assert "about 110 MB more" in warnings[1]
