"""tfqa as a package: `pip install .` into a fresh virtual environment, the console scripts, `import tfqa` elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

import pytest
from helpers import ROOT


def copy_sources(tmp_path):
    """What `pip install` reads, copied: building writes build/ and *.egg-info beside the sources."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "tfqa", source / "tfqa", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    return source


@pytest.mark.slow
def test_pip_install_gives_the_package_and_its_console_scripts(tmp_path):
    # The venv sees this interpreter's packages (TensorFlow & co. are not installed twice): --no-deps, and
    # --no-build-isolation so that nothing is fetched; the build itself is pip's ordinary one.
    source = copy_sources(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)  # ensurepip: offline
    scripts = env_dir / "bin"
    python = scripts / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tfqa").mkdir(parents=True)  # a folder named like the package (a clone's parent) is not imported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{scripts}{os.pathsep}{env['PATH']}"
    proc = subprocess.run([str(python), "-c", "import tfqa, tfqa.apps.cli; print(tfqa.__file__)"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(site)
    for script, words in (("tfqa", "evaluate"), ("tfqa-train", "--gradient_accumulation_steps"),
                          ("tfqa-model-server", "--rest_api_port")):
        proc = subprocess.run([str(scripts / script), "--help"], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and words in proc.stdout, proc.stderr[-2000:]
    page = subprocess.run([str(python), "-c", "from importlib import resources; "
                           "print(len(resources.files('tfqa.apps').joinpath('demo_page.html').read_bytes()))"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert page.returncode == 0 and int(page.stdout) > 1000  # package data: the demo page



@pytest.mark.slow
def test_pip_install_editable_imports_the_sources(tmp_path):
    source = copy_sources(tmp_path)
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "-e", str(source)], capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-c", "import tfqa; print(tfqa.__file__)"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.stdout.strip() == str(source / "tfqa" / "__init__.py"), proc.stderr[-2000:]
    assert (tmp_path / "venv" / "bin" / "tfqa-train").exists()
