"""Model hot reload: a changed bundle on disk, or a notice on the ``model`` topic, is verified
and swapped in; a bundle that fails keeps the old model running and says why.

The bundle path is polled (names, sizes and mtimes of its files), so no inotify is needed; write
a new bundle beside it and rename it into place so a poll never sees half of one. A notice is
``{"path": "/var/lib/edgewatch/bundles/v7", "sha256": "<sha256 of its manifest.json>"}``; once
verified, its path is the one watched from then on.
"""

import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.bundle import MANIFEST, BundleError, verify_bundle
from agent.config import Decision
from agent.pipeline import Model, same_input

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int], ...] | None


def fingerprint(path: Path) -> Fingerprint:
    """What changes when the bundle at ``path`` does; None when there is nothing there."""
    try:
        if path.is_dir():
            return tuple(
                sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir())
            )
        stat = path.stat()
    except OSError:
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
        interval_s: float = 1.0,
    ) -> None:
        self.path, self.public_key = path, public_key
        self.decision, self.threads = decision, threads
        self.current, self.install, self.report = current, install, report
        self.interval_s = interval_s
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
            self.failures += 1
            log.error("model refused, keeping the one in use: %s", e)
            self.report(str(e))
            return False
        self.path = path
        self.loads += 1
        self.install(model)
        return True

    def notice(self, payload: bytes) -> None:
        """A message from the model topic; checked on the watcher's thread."""
        try:
            message = json.loads(payload)
            path, sha256 = Path(message["path"]), str(message["sha256"])
        except (ValueError, KeyError, TypeError) as e:
            self.failures += 1
            self.report(f"model notice refused: expected {{path, sha256}} ({e})")
            return
        self._notices.put((path, sha256))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                path, sha256 = self._notices.get(timeout=self.interval_s)
            except queue.Empty:
                if fingerprint(self.path) != self._seen:
                    self.check()
                continue
            self.check(path, sha256)
