"""``verify_bundle`` answers every hostile bundle with a ``BundleError``, never another exception:
the reload thread and ``edgewatch run`` catch only that."""

import shutil
from pathlib import Path

import pytest

from agent.bundle import MANIFEST, BundleError, verify_bundle


@pytest.mark.parametrize(
    "manifest",
    [
        b"[" * 100_000,
        b'{"schema_version": ' + b"1" * 5000 + b"}",
        b"\xff\xfe",
        b"{}",
        b'{"schema_version": 1, "name": "' + b"n" * 100_000 + b'"}',
    ],
    ids=["deep", "digits", "not-utf8", "empty", "long"],
)
def test_a_hostile_manifest_is_a_bundle_error(waveform_bundle, tmp_path, manifest):
    bundle = Path(shutil.copytree(waveform_bundle, tmp_path / "bundle"))
    (bundle / MANIFEST).write_bytes(manifest)
    with pytest.raises(BundleError, match=MANIFEST) as refused:
        verify_bundle(bundle)
    assert len(str(refused.value)) <= 2000


def test_a_path_with_a_nul_byte_is_a_bundle_error(waveform_bundle):
    with pytest.raises(BundleError, match="NUL"):
        verify_bundle(Path(f"{waveform_bundle}\0"))
