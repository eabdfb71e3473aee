"""Model hot reload: a changed bundle on disk, or a notice on the ``model`` topic, is verified
and swapped in; a bundle that fails keeps the old model running and says why.

The bundle path is polled (names, sizes and mtimes of its files), so no inotify is needed; write
a new bundle beside it and rename it into place so a poll never sees half of one. A notice is
``{"path": "/var/lib/edgewatch/bundles/v7", "sha256": "<sha256 of its manifest.json>"}``, with
``"machine": "<name>"`` for the bundle of a ``[[machines]]`` entry; once verified, its path is the
one watched from then on. The sha256 only says which manifest is meant:
it authenticates nothing, since anyone can compute it. So a notice is refused unless bundles must
be signed (a public key), or it names a path under ``notice_root``, a folder only the fleet's
tooling can write.
"""

import json
import logging
import os
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgewatch.agent.bundle import MANIFEST, BundleError, verify_bundle
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.machines import DEFAULT, machine_key
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model, same_input

log = logging.getLogger(__name__)
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PATH = 4096
Fingerprint = tuple[tuple[str, int, int], ...] | None


def fingerprint(path: Path) -> Fingerprint:
    """What changes when the bundle at ``path`` does; None when there is nothing there."""
    try:
        if path.is_dir():
            return tuple(
                sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir())
            )
        stat = path.stat()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return ((path.name, stat.st_mtime_ns, stat.st_size),)


class Reloader:
    def __init__(
        self,
        path: Path,
        public_key: Ed25519PublicKey | None,
        decision: Decision,
        threads: int,
        current: Callable[[], Model | None],
        install: Callable[[Model], None],
        report: Callable[[str], None],
        notice_root: Path | None = None,
    ) -> None:
        self.path, self.public_key = path, public_key
        self.decision, self.threads = decision, threads
        self.current, self.install, self.report = current, install, report
        self.notice_root = notice_root
        self.loads = 0
        self.failures = 0
        self._seen: Fingerprint = None
        self._notices: queue.SimpleQueue[tuple[Path, str]] = queue.SimpleQueue()

    def check(self, path: Path | None = None, sha256: str | None = None) -> bool:
        """Verify the bundle at ``path`` (default: the watched one) and install it."""
        path = path or self.path
        self._seen = fingerprint(path)
        try:
            bundle = verify_bundle(path, self.public_key)
            if sha256 is not None and bundle.manifest_sha256 != sha256:
                raise BundleError(
                    f"{path}: the notice's sha256 {sha256} is not that of its {MANIFEST} "
                    f"({bundle.manifest_sha256})"
                )
            current = self.current()
            if current is not None:
                if bundle.manifest_sha256 == current.bundle.manifest_sha256:
                    return False
                reason = same_input(current.spec, bundle.manifest.feature_spec)
                if reason is not None:
                    raise BundleError(f"{path}: cannot take over the running streams: {reason}")
            model = Model.load(bundle, self.decision, self.threads)
        except BundleError as e:
            log.error("model refused, keeping the one in use: %s", e)
            self.refuse(str(e))
            return False
        self.path = path
        self.loads += 1
        self.install(model)
        return True

    def notice(self, path: Path, sha256: str) -> None:
        """A notice from the model topic for this reloader's lane; the bundle is checked on
        the watcher's thread."""
        try:
            self._trusted(path)
        except ValueError as e:
            self.refuse(f"model notice refused: {e}")
            return
        self._notices.put((path, sha256))

    def refuse(self, why: str) -> None:
        self.failures += 1
        self.report(why)

    def _trusted(self, path: Path) -> None:
        """``ValueError`` unless a notice may name ``path``."""
        if self.public_key is not None:
            return
        if self.notice_root is None:
            raise ValueError("no model.public_key and no model.notice_root: notices are off")
        root = os.path.realpath(self.notice_root)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise ValueError(f"{path} is not under model.notice_root ({self.notice_root})")

    def poll(self, timeout_s: float = 0.0) -> None:
        """One turn: the next notice, waiting up to ``timeout_s`` for one; with none, the
        watched bundle if it changed."""
        try:
            path, sha256 = self._notices.get(timeout=timeout_s)
        except queue.Empty:
            if fingerprint(self.path) != self._seen:
                self.check()
            return
        self.check(path, sha256)


class Reloaders:
    """The reloaders of every lane with a shipped bundle (``agent.machines.bundled``), polled in
    turn on one thread. A notice names its lane's machine, or none for the default model."""

    def __init__(
        self,
        reloaders: dict[str, Reloader],
        report: Callable[[str], None],
        interval_s: float = 1.0,
    ) -> None:
        self.reloaders, self.report, self.interval_s = reloaders, report, interval_s
        self.refused = 0

    def check(self) -> None:
        """Load every lane's bundle that is there now."""
        for reloader in self.reloaders.values():
            reloader.check()

    def notice(self, payload: bytes) -> None:
        """A message from the model topic."""
        try:
            path, sha256, machine = parse_notice(payload)
        except ValueError as e:
            self.refused += 1
            self.report(f"model notice refused: {e}")
            return
        key = DEFAULT if machine is None else machine_key(machine)
        reloader = self.reloaders.get(key)
        if reloader is None:
            self.refused += 1
            self.report(f"model notice refused: no {key} scores with a shipped bundle")
            return
        reloader.notice(path, sha256)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for reloader in self.reloaders.values():
                reloader.poll()
            stop.wait(self.interval_s)

    def export_metrics(self, registry: Registry) -> None:
        def counts() -> dict[tuple[str, ...], float]:
            found: dict[tuple[str, ...], float] = {
                (key, "ok"): float(r.loads) for key, r in self.reloaders.items()
            }
            found |= {(key, "refused"): float(r.failures) for key, r in self.reloaders.items()}
            found[("", "refused")] = float(self.refused)
            return found

        registry.collect(
            "counter", "model_reloads_total", "Model loads, by lane and result",
            ("lane", "result"), counts,
        )  # fmt: skip


def parse_notice(payload: bytes) -> tuple[Path, str, str | None]:
    """The bundle path, manifest sha256 and machine (None: the default model) of a notice;
    ``ValueError`` says what is wrong.

    >>> parse_notice(b'{"path": "/b/v7", "sha256": "' + b"0" * 64 + b'", "machine": "pump"}')
    (PosixPath('/b/v7'), '0000000000000000000000000000000000000000000000000000000000000000', 'pump')
    >>> parse_notice(b'{"path": "/b/\\\\u0000", "sha256": "0"}')
    Traceback (most recent call last):
    ValueError: path must be a path of 1 to 4096 characters without NUL
    """
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError) as e:  # not UTF-8 or JSON, too deep, too many digits
        raise ValueError(f"not JSON ({type(e).__name__})") from None
    if not isinstance(message, dict):
        raise ValueError("expected {path, sha256}")
    path, sha256 = message.get("path"), message.get("sha256")
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH or "\0" in path:
        raise ValueError(f"path must be a path of 1 to {MAX_PATH} characters without NUL")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    machine = message.get("machine")
    if machine is not None and (not isinstance(machine, str) or not 0 < len(machine) <= 64):
        raise ValueError("machine must be the name of a [[machines]] entry")
    return Path(path), sha256, machine
