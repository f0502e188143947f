"""Copy the top-level data directories into the wheel as audit_agent/data/, and
build the process reader's C half.

rules/, reports/ and seeds/ live at the repository's top level (the project's
layout is fixed), but an installed agent must find them from any directory, so
the build puts a copy inside the package.

audit_agent/collect/_procread.c reads each process's /proc files for the
process reader (docs/performance.md). It is optional: without a C compiler and
Python's headers, or off Linux, the package installs without it and the reader
does the same work in Python.
"""
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("rules", "reports", "seeds")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).parent
        target = Path(self.build_lib) / "audit_agent" / "data"
        for name in DATA_DIRS:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


PROCREAD = Extension("audit_agent.collect._procread", sources=["audit_agent/collect/_procread.c"], optional=True)

setup(cmdclass={"build_py": BuildPyWithData}, ext_modules=[PROCREAD])
