"""Build of the one C extension; everything else is in pyproject.toml.

serialhs.negotiate._hdlc speeds up the receive path (see its source). It is
optional: without a C compiler and Python's headers the build goes on without
it and serialhs.negotiate.frames uses its Python reference instead.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildWithProfiles(build_py):
    """Ship the top-level hw_configs/ inside the package (serialhs/hw_configs in a
    wheel), where serialhs.hwconfig looks for it when there is no checkout."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib, "serialhs", "hw_configs")
        shutil.copytree("hw_configs", target, dirs_exist_ok=True)


setup(
    ext_modules=[
        Extension(
            "serialhs.negotiate._hdlc",
            ["serialhs/negotiate/_hdlc.c"],
            optional=True,
        )
    ],
    cmdclass={"build_py": BuildWithProfiles},
)
