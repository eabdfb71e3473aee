"""A real OPC UA server (asyncua) for the tests, on a thread of its own: an object ``Boiler``
with variables the test writes, open (no security) or secured (Basic256Sha256, certificates
the test makes, users with passwords).
"""

import asyncio
import datetime
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

NAMESPACE = "urn:edgewatch:test"
VARIABLES = {"Temperature": 20.0, "Pressure": 1.5, "Running": True, "Label": "ok"}


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path


def make_keys(folder: Path, name: str, uri: str, server: bool) -> KeyPair:
    """A self-signed application certificate (DER) and its key (PEM) whose subject alternative
    names carry ``uri`` and this host."""
    key = cert_gen.generate_private_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    certificate = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())],
        [usage],
    )
    pair = KeyPair(folder / f"{name}.der", folder / f"{name}.pem")
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


class Passwords(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):  # type: ignore[no-untyped-def]
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


class Boiler:
    """The server's variables, written from the test's thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.nodes: dict[str, Any] = {}
        self.namespace = 0

    def node_id(self, name: str) -> str:
        return self.nodes[name].nodeid.to_string()

    def write(self, name: str, value: object, status: int = ua.StatusCodes.Good) -> None:
        assert self.loop is not None
        stamp = datetime.datetime.now(datetime.UTC)
        kind = self.nodes[name].read_data_type_as_variant_type()

        async def write() -> None:
            variant = ua.Variant(value, await kind)
            data = ua.DataValue(variant, ua.StatusCode(status), SourceTimestamp=stamp)
            await self.nodes[name].write_value(data)

        asyncio.run_coroutine_threadsafe(write(), self.loop).result(10)


@contextmanager
def serving(
    port: int,
    keys: KeyPair | None = None,
    users: dict[str, str] | None = None,
) -> Iterator[Boiler]:
    """An OPC UA server on ``port`` of loopback while in the block: open, or with ``keys``
    only Basic256Sha256 SignAndEncrypt, and with ``users`` only their passwords."""
    boiler = Boiler()
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def run() -> None:
        server = Server(user_manager=Passwords(users) if users else None)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/edgewatch/")
        if keys is not None:
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            await server.load_certificate(str(keys.certificate))
            await server.load_private_key(str(keys.key))
        boiler.namespace = await server.register_namespace(NAMESPACE)
        thing = await server.nodes.objects.add_object(boiler.namespace, "Boiler")
        for name, value in VARIABLES.items():
            boiler.nodes[name] = await thing.add_variable(boiler.namespace, name, value)
        boiler.loop = asyncio.get_running_loop()
        async with server:
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as e:
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(30) and not errors, f"the OPC UA server did not start: {errors}"
    try:
        yield boiler
    finally:
        done.set()
        thread.join(15)
