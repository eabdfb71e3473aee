"""Writing a model bundle: the ONNX file, its manifest and, optionally, an Ed25519 signature.

Keys are PEM files: ``openssl genpkey -algorithm ed25519 -out key.pem`` makes a private key and
``openssl pkey -in key.pem -pubout -out key.pub`` its public key for the gateways.
"""

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edgewatch.agent.bundle import MANIFEST, SIGNATURE, Bundle, BundleError, Manifest, verify_bundle


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PEM file."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise BundleError(f"signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise BundleError(f"signing key {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"signing key {path}: not an Ed25519 key")
    return key


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
