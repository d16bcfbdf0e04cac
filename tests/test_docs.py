"""The documentation checks itself: the reference pages are what the code generates, every setting and method
parameter says what it does, the site builds strictly, and every command the README shows is one the tools
accept."""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from knowundo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_are_what_the_code_generates():
    for name, text in _generator().pages().items():
        page = ROOT / "docs" / "reference" / f"{name}.md"
        assert page.read_text() == text, f"{page} is stale: run python docs/generate.py"


def test_every_setting_and_method_parameter_says_what_it_does():
    generate = _generator()
    undocumented = [key for key, _, _, doc, _ in generate.settings() if not doc]
    assert not undocumented, f"settings without a comment in knowundo/config.py: {undocumented}"
    from knowundo.methods import get_method, method_names

    for name in method_names():
        if not type(get_method(name)).__module__.startswith("knowundo.methods."):
            continue  # registered by another test
        params = get_method(name).Params
        docs = generate.setting_docs(params)
        missing = [field for field in params.__dataclass_fields__ if not docs.get(field)]
        assert not missing, f"{name}: parameters without a comment: {missing}"


def test_a_setting_added_without_a_comment_is_caught():
    import dataclasses

    generate = _generator()

    @dataclasses.dataclass
    class Section:
        documented: int = 1  # what it does
        bare: int = 2

    assert generate.field_docs(Section) == {"documented": "what it does", "bare": ""}


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


def _readme_commands(program: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(program + " ")]


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 300


@pytest.mark.parametrize("argv", _readme_commands("knowundo"), ids=" ".join)
def test_every_knowundo_command_in_the_readme_parses(argv):
    build_parser().parse_args(argv)  # a usage error exits with code 2


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    named = {argv[0] for argv in _readme_commands("make")} | set(re.findall(r"`make (\w+)`", README))
    assert named and named <= targets, named - targets


def test_every_local_link_in_the_readme_resolves():
    links = [link for link in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in link]
    assert links and not [link for link in links if not (ROOT / link).exists()]


def test_the_readme_python_quickstart_names_only_public_api():
    import knowundo

    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    used = set(re.findall(r"knowundo\.(\w+)", block))
    assert used and used <= set(knowundo.__all__), used - set(knowundo.__all__)
