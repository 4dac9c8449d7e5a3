"""Packaging glue: map the top-level folders `lang/` and `runtime/` into the `sglang_nb` namespace."""

from setuptools import find_packages, setup


def _namespaced(folder: str, name: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(where=folder)]


setup(
    packages=_namespaced("sglang_nb", "sglang_nb")
    + _namespaced("lang", "sglang_nb.lang")
    + _namespaced("runtime", "sglang_nb.runtime"),
)
