"""Build bench/_recv.pyx in place (`make bench-build`): the load generator's C receiver.

Not part of the fastchat wheel, so not in setup.py; built from a neutral directory so that
the project's `src/` layout does not apply to it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        setup(
            name="fastchat-bench-recv",
            ext_modules=cythonize(
                [Extension("bench._recv", [str(HERE / "_recv.pyx")])], quiet=True
            ),
            package_dir={"bench": str(HERE)},
            script_args=["build_ext", "--inplace", "--build-temp", tmp, "-q"],
        )
