"""What a config points at, checked as the agent will use it: ``edgewatch run`` refuses to start
on these problems, and ``check-config`` reports them too, so a config that passes one starts the
other. Each problem is one line, ``field: message``.
"""

import socket
from pathlib import Path

from edgewatch.agent.bundle import BundleError, load_public_key, verify_bundle
from edgewatch.agent.config import AgentConfig, JsonlSink, Upstream
from edgewatch.agent.machines import bundled
from edgewatch.agent.model import Model


def problems(config: AgentConfig) -> list[str]:
    """What would stop ``run``: a public key that is no key, files that are folders, a status
    address that does not resolve."""
    found = []
    if config.model.public_key is not None:
        try:
            load_public_key(config.model.public_key)
        except BundleError as e:
            found.append(f"model.public_key: {e}")
    files: list[tuple[str, Path]] = [("feedback_db", config.feedback_db)]
    if any(isinstance(sink, Upstream) for sink in config.sinks):
        files.append(("spool.path", config.spool.path))
    files += [
        (f"sinks[{i}].path", sink.path)
        for i, sink in enumerate(config.sinks)
        if isinstance(sink, JsonlSink)
    ]
    found += [f"{name}: {path} is a directory, not a file" for name, path in files if path.is_dir()]
    try:
        socket.getaddrinfo(config.http.host, config.http.port, type=socket.SOCK_STREAM)
    except OSError as e:
        found.append(f"http.host: cannot resolve {config.http.host!r} ({e.strerror or e})")
    return found


def bundle_problems(config: AgentConfig) -> list[str]:
    """Why the agent would refuse a bundle now at ``model.bundle`` or a machine's ``bundle``
    (nothing for one that is not there yet: the agent waits for it)."""
    found = []
    key = load_public_key(config.model.public_key) if config.model.public_key else None
    for lane in bundled(config):
        if not lane.path.exists():
            continue
        try:
            Model.load(verify_bundle(lane.path, key), lane.decision, config.model.threads)
        except BundleError as e:
            found.append(f"{lane.field}: {e}")
    return found
