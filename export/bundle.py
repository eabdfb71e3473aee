"""The signing key of model bundles (``agent.bundle_writer`` writes them).

Keys are PEM files: ``openssl genpkey -algorithm ed25519 -out key.pem`` makes a private key and
``openssl pkey -in key.pem -pubout -out key.pub`` its public key for the gateways.
"""

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edgewatch.agent.bundle import BundleError


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
