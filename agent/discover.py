"""``edgewatch discover opcua://HOST:PORT``: the variables of an OPC UA server, ready to paste
into an ``opcua`` source as ``[[sources.nodes]]``.

It browses the Objects folder down to ``--depth`` levels, at most ``--limit`` nodes, leaving
out the server's own objects (namespace 0). Each variable is printed with its node id, its path
of browse names and its data type; ``device`` is the object that holds it and ``channel`` its
name, made into names a config takes.
"""

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.ua.uaerrors import UaError
from pydantic import ValidationError

from edgewatch.agent.sources.opcua import client
from edgewatch.agent.sources.settings import OpcuaLink


@dataclass(frozen=True)
class Variable:
    node_id: str
    path: tuple[str, ...]
    type: str


def name(text: str) -> str:
    """A device or channel name from a browse name.

    >>> name("Boiler #2 (hall)")
    'Boiler_2_hall'
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    return (cleaned or "node")[:64]


def url(text: str) -> str:
    """``opcua://host:port/path`` as the ``opc.tcp://`` URL it stands for.

    >>> url("opcua://plc-3:4840")
    'opc.tcp://plc-3:4840'
    """
    return re.sub(r"^opcua://", "opc.tcp://", text)


async def browse(link: OpcuaLink, depth: int, limit: int) -> list[Variable]:
    async with await client(link) as session:
        found: list[Variable] = []
        seen = 0
        level: list[tuple[Any, tuple[str, ...]]] = [(session.nodes.objects, ())]
        for _ in range(depth):
            below = []
            for node, path in level:
                for child in await node.get_children():
                    seen += 1
                    if child.nodeid.NamespaceIndex == 0 or seen > limit:
                        continue
                    here = (*path, (await child.read_browse_name()).Name)
                    kind = await child.read_node_class()
                    if kind == ua.NodeClass.Variable:
                        found.append(Variable(child.nodeid.to_string(), here, await _type(child)))
                    below.append((child, here))
            level = below
        return found


async def _type(node: Any) -> str:
    try:
        return str((await node.read_data_type_as_variant_type()).name)
    except (UaError, ValueError):
        return "unknown"


def render(link: OpcuaLink, variables: list[Variable]) -> str:
    """The variables as TOML for an ``opcua`` source."""
    lines = [
        "[[sources]]",
        'type = "opcua"',
        f'url = "{link.url}"',
        f"# {len(variables)} variables",
    ]
    for variable in variables:
        device = name(variable.path[-2]) if len(variable.path) > 1 else "device"
        lines += [
            f"[[sources.nodes]]  # {'/'.join(variable.path)} ({variable.type})",
            f'device = "{device}"',
            f'channel = "{name(variable.path[-1])}"',
            f'node_id = "{variable.node_id}"',
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``discover`` command (its arguments in ``commands.add``)."""
    fields = {
        "url": url(args.url),
        "security": args.security,
        "certificate": args.certificate,
        "private_key": args.private_key,
        "server_certificate": args.server_certificate,
        "username": args.user,
        "password_file": args.password_file,
    }
    try:
        link = OpcuaLink.model_validate({k: v for k, v in fields.items() if v is not None})
        variables = asyncio.run(browse(link, args.depth, args.limit))
    except ValidationError as e:
        for error in e.errors():
            where = ".".join(map(str, error["loc"])) or "url"
            print(f"edgewatch discover: {where}: {error['msg']}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError, UaError) as e:
        print(f"edgewatch discover: {args.url}: {e or type(e).__name__}", file=sys.stderr)
        return 1
    print(render(link, variables))
    return 0
