"""Who may load a model through a notice on the ``model`` topic."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.config import Decision
from edgewatch.agent.reload import Reloader


def reloader(bundle, key=None, notice_root=None) -> tuple[Reloader, list[str]]:
    reports: list[str] = []
    made = Reloader(
        bundle, key, Decision(), 1, lambda: None, lambda m: None, reports.append,
        notice_root=notice_root,
    )  # fmt: skip
    return made, reports


def notice(path) -> bytes:
    return json.dumps({"path": str(path), "sha256": "0" * 64}).encode()


def test_without_a_key_or_a_notice_root_every_notice_is_refused(waveform_bundle):
    watcher, reports = reloader(waveform_bundle)
    watcher.notice(notice(waveform_bundle))
    assert watcher.failures == 1 and reports == [
        "model notice refused: no model.public_key and no model.notice_root: notices are off"
    ]


@pytest.mark.parametrize("trusted", ["key", "root"])
def test_a_key_or_a_notice_root_lets_notices_through(waveform_bundle, trusted):
    key = Ed25519PrivateKey.generate().public_key() if trusted == "key" else None
    root = waveform_bundle.parent if trusted == "root" else None
    watcher, reports = reloader(waveform_bundle, key, root)
    watcher.notice(notice(waveform_bundle))
    assert watcher.failures == 0 and reports == []
