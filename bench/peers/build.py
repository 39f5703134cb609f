"""Builds the peers' virtualenv, ``bench/.peers/venv``, once; later runs reuse it.

A stamp file holds the digest of ``requirements.txt`` and the Python version: when it matches,
nothing runs, so ``bench/run.py`` can call :func:`peer_python` every time; when the requirements
change, pip brings the venv to them; when Python changes, the venv is made anew.
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".peers"  # gitignored
VENV = CACHE / "venv"
REQUIREMENTS = HERE / "requirements.txt"


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()


def peer_python() -> Path:
    """The peers' interpreter, after building the venv if it is missing or stale."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".bench-built"
    digest = _digest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"building the peers' virtualenv in {VENV} (kserve, onnxruntime; a few minutes, once)", flush=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not (VENV / "lib" / f"python{version}").is_dir():
        shutil.rmtree(VENV, ignore_errors=True)
        CACHE.mkdir(exist_ok=True)
        # The platform's interpreter, so that both sides run the same Python.
        base = Path(getattr(sys, "_base_executable", sys.executable))
        subprocess.run([str(base), "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return python


if __name__ == "__main__":
    print(peer_python())
