# The cffi extension (onvm._core) is declared here: setuptools reads
# cffi_modules only through setup().  Everything else is in pyproject.toml.
# The notebooks, labs and kernelspec live at the top of the checkout; a
# wheel carries them as package data in onvm/_data/ (onvm.common.paths.data_path).
import atexit
import os
import shutil
import tempfile

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


def out_of_tree():
    """setuptools writes onvm.egg-info/ and build/ into the checkout.  In a
    checkout we may not write (set up by another user: students pip-installing
    from the instructor's), that fails with "Cannot update time stamp of
    directory 'onvm.egg-info'"; build in a temporary directory instead."""
    here = os.path.dirname(os.path.abspath(__file__))
    if all(os.access(p, os.W_OK) for p in (here, os.path.join(here, "onvm.egg-info"), os.path.join(here, "build"))
           if os.path.exists(p)):
        return {}
    tmp = tempfile.mkdtemp(prefix="onvm-build-")
    atexit.register(shutil.rmtree, tmp, True)
    return {"egg_info": {"egg_base": tmp}, "build": {"build_base": os.path.join(tmp, "build")}}


setup(cffi_modules=["onvm/_build.py:ffibuilder"], cmdclass={"build_py": build_py_with_data}, options=out_of_tree())
