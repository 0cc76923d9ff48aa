# The cffi extension (onvm._core) is declared here: setuptools reads
# cffi_modules only through setup().  Everything else is in pyproject.toml.
# The notebooks, labs and kernelspec live at the top of the checkout; a
# wheel carries them as package data in onvm/_data/ (onvm.lab.data_path).
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("notebooks", "labs", "kernels")


class build_py_with_data(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        for d in DATA:
            dst = os.path.join(self.build_lib, "onvm", "_data", d)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(here, d), dst,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.feedback"))


setup(cffi_modules=["onvm/_build.py:ffibuilder"], cmdclass={"build_py": build_py_with_data})
