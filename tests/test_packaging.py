"""Set-up files agree with each other and the README tells the truth."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}


def _split(req):
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", req.strip())
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_agrees_with_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(py["dependencies"])
    for extra in ("notebooks", "test", "sd"):
        reqs += py["optional-dependencies"][extra]
    want = {CONDA_NAMES.get(n, n): spec for n, spec in map(_split, reqs)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    have = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            n, spec = _split(dep)
            have[n] = spec
    have.pop("python"), have.pop("pip")
    assert have == want


def test_readme_commands_exist_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make figures" in readme and "make test" in readme
    assert re.search(r"^figures:", make, re.M) and re.search(r"^test:", make, re.M)
    assert re.search(r"^make test$", ci, re.M)
    assert re.search(r"^torch==2\.13\.0$", (ROOT / "constraints.txt").read_text(), re.M)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f'-e ".[{",".join(extras)}]"' in make, "the Makefile installs every extra (so no test skips in CI)"


def test_shipped_assets_are_safetensors_only():
    assets = ROOT / "invlab" / "assets"
    for p in assets.iterdir():
        assert p.suffix in {".safetensors", ".json", ".md"}, f"unexpected asset {p.name}"
