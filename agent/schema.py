"""The base of every record and config the project validates, and one way to say what is wrong
with one: a line per problem, ``where: what``.

>>> class Point(Frozen):
...     x: int
>>> try:
...     Point.model_validate({"x": "a", "y": 1})
... except ValidationError as e:
...     for line in problems(e):
...         print(line)
x: Input should be a valid integer, unable to parse string as an integer
y: Extra inputs are not permitted
"""

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, ValidationError


class Frozen(BaseModel):
    """Immutable once made, and refusing any field it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def where(loc: tuple[int | str, ...], tags: Collection[str] = (), root: str = "config") -> str:
    """``sources[0].port`` for pydantic's ``("sources", 0, "serial", "port")``: indices in
    brackets, and the tag a tagged union chose (one of ``tags``) left out."""
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif not (i > 0 and part in tags):
            text += f".{part}" if text else part
    return text or root


def problems(error: ValidationError, tags: Collection[str] = (), root: str = "config") -> list[str]:
    """One ``where: message`` line per problem. A list whose bad item was refused is then also
    "too short": only what was wrong with the item is said."""
    found = error.errors()
    inner = {p["loc"][:i] for p in found for i in range(1, len(p["loc"]))}
    return [
        f"{where(p['loc'], tags, root)}: {p['msg'].removeprefix('Value error, ')}"
        for p in found
        if not (p["type"] == "too_short" and p["loc"] in inner)
    ]
