"""Build step: carry the top-level data folders (conformance/data.py:DATA_FOLDERS) into the package.

The checkout keeps profiles/, servers/, clients/ and scripts/apt.d/ at the top level; a wheel carries them as
conformance/_data/<name>/, where conformance.data resolves them at run time. Editable installs skip the copy
(the resolver falls back to the checkout). Everything else is declared in pyproject.toml.
"""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_lemonade_data", HERE / "conformance" / "data.py")
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", ".pytest_cache", "*.egg-info")


class BuildPyWithData(build_py):
    """build_py, then copy each data folder into <build>/conformance/_data/<name>/ (file modes kept)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name, rel in _data.DATA_FOLDERS.items():
            src = HERE / rel
            if not src.is_dir():
                continue
            dst = Path(self.build_lib) / "conformance" / _data.PACKAGED / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=SKIP)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            base = Path(self.build_lib) / "conformance" / _data.PACKAGED
            outputs += [str(p) for p in base.rglob("*") if p.is_file()] if base.is_dir() else []
        return outputs


setup(cmdclass={"build_py": BuildPyWithData})
