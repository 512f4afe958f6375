"""Catalogues of named, versioned classes (decoders, tasks, backends): one name, one class."""

from __future__ import annotations


def by_name(kind: str, classes: list[type]) -> dict[str, type]:
    """``{cls.name: cls}``, refusing a name used twice and a class without its own integer version."""
    catalogue: dict[str, type] = {}
    for cls in classes:
        register(kind, catalogue, cls)
    return catalogue


def register(kind: str, catalogue: dict[str, type], cls: type) -> type:
    """Add ``cls`` to ``catalogue`` under ``cls.name``; a name used twice or a missing version is refused."""
    if cls.name in catalogue:
        raise ValueError(f"two {kind}s are named {cls.name!r}: {catalogue[cls.name].__qualname__} and "
                         f"{cls.__qualname__}")
    version = cls.__dict__.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{kind} {cls.name!r} ({cls.__qualname__}) must set its own integer version >= 1")
    catalogue[cls.name] = cls
    return cls
