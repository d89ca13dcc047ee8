"""Lazy attribute access for the package's `__init__` modules (PEP 562).

A package lists the names it re-exports and the module each comes from;
the module is imported on first access, so importing the package (or asking
the command line for help) does not import TensorFlow.
"""

import importlib

__all__ = ["attach"]


def attach(package, names=None, submodules=()):
  """`__getattr__` and `__dir__` for `package`.

  Args:
    package: the package's `__name__`.
    names: dict attribute -> the module it is taken from.
    submodules: names of sub-modules imported on access.

  Returns:
    (__getattr__, __dir__), to assign in the package's `__init__`.
  """
  names = dict(names or {})
  submodules = tuple(submodules)

  def __getattr__(name):  # pylint: disable=invalid-name
    if name in names:
      return getattr(importlib.import_module(names[name]), name)
    if name in submodules:
      return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__():  # pylint: disable=invalid-name
    return sorted(set(names) | set(submodules))

  return __getattr__, __dir__
