"""Builds the optional compiled data path ``ocgate._fastpath`` (the rest is in pyproject.toml).

The extension is C against OpenSSL's libcrypto (Debian: ``gcc``, ``libssl-dev`` and the Python
headers, which the Makefile installs). It is optional: where it cannot be built, ``pip install``
still succeeds and ocgate runs the same data path in pure Python (docs/ARCHITECTURE.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ocgate._fastpath",
            sources=["src/ocgate/_fastpath.c", "src/ocgate/_dataplane.c"],
            depends=["src/ocgate/_fastpath.h"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
