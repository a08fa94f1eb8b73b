"""A dict that counts its writes, so a reader can tell in one compare that nothing changed since it last looked."""

from __future__ import annotations


class VersionedDict(dict):
    """A plain dict whose every write (set, delete, pop, update, clear...) adds one to `version`.

    Reads are plain dict reads. Values mutated in place are not seen: whoever mutates one writes it
    back (`d[key] = value`) so that readers caching on `version` notice."""

    __slots__ = ("version",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, *args):
        self.version += 1
        return super().pop(*args)

    def popitem(self):
        self.version += 1
        return super().popitem()

    def setdefault(self, key, default=None):
        self.version += 1
        return super().setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        super().update(*args, **kwargs)
        self.version += 1

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def __ior__(self, other):
        self.update(other)
        return self
