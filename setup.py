# The cffi extension (onvm._core) is declared here: setuptools reads
# cffi_modules only through setup().  Everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["onvm/_build.py:ffibuilder"])
