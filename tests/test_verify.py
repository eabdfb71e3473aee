"""``verify_bundle`` answers every hostile bundle with a ``BundleError``, never another exception:
the reload thread and ``edgewatch run`` catch only that."""

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.bundle import MANIFEST, MAX_FILES, SIGNATURE, BundleError, verify_bundle


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


def tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as out:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


def test_a_tar_of_endless_members_is_refused_after_the_first_ones(tmp_path):
    members = [(f"m{i}", b"") for i in range(20_000)]
    with pytest.raises(BundleError, match=f"more than {MAX_FILES} files"):
        verify_bundle(tar(tmp_path / "b.tar", members, "w:gz"))


def test_with_a_key_the_signature_is_checked_before_the_model_is_read(waveform_bundle, tmp_path):
    key = Ed25519PrivateKey.generate()
    manifest = (waveform_bundle / MANIFEST).read_bytes()
    model = (waveform_bundle / "model.onnx").read_bytes()
    forged = [(MANIFEST, manifest), (SIGNATURE, bytes(64)), ("model.onnx", b"junk")]
    with pytest.raises(BundleError, match="the signature does not match"):
        verify_bundle(tar(tmp_path / "forged.tar", forged), key.public_key())
    late = [("model.onnx", model), (MANIFEST, manifest), (SIGNATURE, key.sign(manifest))]
    with pytest.raises(BundleError, match="must come first"):
        verify_bundle(tar(tmp_path / "late.tar", late), key.public_key())
    signed = [(MANIFEST, manifest), (SIGNATURE, key.sign(manifest)), ("model.onnx", model)]
    assert verify_bundle(tar(tmp_path / "signed.tar", signed), key.public_key()).signed
