"""A dict that counts its writes, so a reader can tell in one compare that nothing changed since it last looked."""

from __future__ import annotations

from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class VersionedDict(dict[K, V]):
    """A plain dict whose every write (set, delete, pop, update, clear...) adds one to `version`.

    Reads are plain dict reads. Values mutated in place are not seen: whoever mutates one writes it
    back (`d[key] = value`) so that readers caching on `version` notice."""

    __slots__ = ("version",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: K) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> tuple[K, V]:
        self.version += 1
        return super().popitem()

    def setdefault(self, key: K, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.version += 1

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def __ior__(self, other: Any) -> VersionedDict[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self
