"""Writing a model bundle: the ONNX file, its manifest and, optionally, an Ed25519 signature.

Training writes bundles with it, and so does the agent when it has learned a machine on site.
"""

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.bundle import MANIFEST, SIGNATURE, Bundle, BundleError, Manifest, verify_bundle


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(
    out: Path, manifest: Manifest, files: dict[str, bytes], key: Ed25519PrivateKey | None = None
) -> Bundle:
    """Write ``files`` and ``manifest`` to ``out``: a directory, or a tar when ``out`` ends in
    ``.tar``. Replaces what was there, then verifies what it wrote."""
    if manifest.files != {name: digest(data) for name, data in files.items()}:
        raise BundleError("the manifest's file hashes do not match the files")
    raw = manifest.model_dump_json(indent=2).encode() + b"\n"
    contents = {MANIFEST: raw, **files}
    if key is not None:
        contents[SIGNATURE] = key.sign(raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".tar":
        _write_tar(out, contents)
    else:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        staging.chmod(0o755)
        for name, data in contents.items():
            (staging / name).write_bytes(data)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    public = key.public_key() if key is not None else None
    return verify_bundle(out, public)


def _write_tar(out: Path, contents: dict[str, bytes]) -> None:
    """A reproducible tar: sorted names, fixed times and owners."""
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            info = tarfile.TarInfo(name)
            info.size = len(contents[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(contents[name]))
    partial.replace(out)
