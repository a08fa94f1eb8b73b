"""Build hook for the optional C accelerator (perpbot/book/_accel.c); metadata lives in pyproject.toml.

The extension is optional: where no C compiler is at hand the install still succeeds and the book
runs its pure-Python loops (perpbot.book.l2 picks whichever is importable).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("perpbot.book._accel", ["perpbot/book/_accel.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"]),
    ],
)
