"""Build the compiled hub and listener; ship the templates and static files in the package.

Compiler directives are set once here (as picows does), not in the .pyx.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()


class BuildPyWithAssets(build_py):
    """Copy the top-level `templates/` and `static/` into the built package.

    They live at the top of the repository (where a newcomer looks for them) but a wheel
    must carry them inside `fastchat/` so an installed server finds them without a source tree.
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads them from the repository
        for name in ("templates", "static"):
            src = ROOT / name
            dst = Path(self.build_lib) / "fastchat" / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)


# Shipped without debug information (Python's CFLAGS carry -g): the hub's .so (CPython 3.11,
# x86_64) is 1,253 kB with it, 219 kB without. The symbol table stays (strip --strip-all would
# save 28 kB more), so perf and gdb backtraces still name the functions.
# FASTCHAT_DEBUG_BUILD=1 keeps the debug information, for gdb.
if os.environ.get("FASTCHAT_DEBUG_BUILD") == "1":
    compile_args, link_args = [], []
else:
    compile_args, link_args = ["-g0"], ["-Wl,--strip-debug"]

extensions = cythonize(
    [
        # The broadcast hub, the first step of every frame a client sends, a chat message's way
        # in and out, and the client-id filter's per-key step.
        Extension(
            f"fastchat.{name}",
            [f"src/fastchat/{name}.pyx"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
        for name in ("_hub", "_listener", "_lane", "_keys")
    ],
    compiler_directives={
        "language_level": 3,
        "boundscheck": False,
        "wraparound": False,
        "initializedcheck": False,
        "cdivision": True,
        "embedsignature": True,
        # The hub relies on the GIL (one loop thread); free-threaded builds get no wheel.
        "freethreading_compatible": False,
    },
    annotate=False,
)

setup(ext_modules=extensions, cmdclass={"build_py": BuildPyWithAssets})
