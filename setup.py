"""Build hook for the optional C accelerators; metadata lives in pyproject.toml.

One extension per layer, each beside the Python that uses it:

  perpbot.book._levels       the book's per-level loops (perpbot/book/_levels.c)
  perpbot.venues.okx._books  the OKX `books` frame parser and checksum (perpbot/venues/okx/_books.c)
  perpbot.scanner._tops      the scanner's TopScreen products (perpbot/scanner/_tops.c)

They share headers only (static inline, compiled into each): perpbot/core/_scaled.h (number
parsing) and perpbot/book/_spans.h (the span table a wire parser hands to the book).

Every extension is optional: where no C compiler is at hand the install still succeeds and each
layer runs its pure-Python code (its Python module picks whichever is importable).
"""

from setuptools import Extension, setup

_HEADERS = ["perpbot/core/_scaled.h", "perpbot/book/_spans.h"]
_FLAGS = ["-O2", "-Wall", "-Wno-unused-parameter"]


def _extension(name: str, source: str) -> Extension:
    return Extension(name, [source], include_dirs=["perpbot"], depends=_HEADERS, optional=True,
                     extra_compile_args=_FLAGS)


setup(
    ext_modules=[
        _extension("perpbot.book._levels", "perpbot/book/_levels.c"),
        _extension("perpbot.venues.okx._books", "perpbot/venues/okx/_books.c"),
        _extension("perpbot.scanner._tops", "perpbot/scanner/_tops.c"),
    ],
)
