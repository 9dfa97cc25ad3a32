"""The README and docs/ cannot drift from the software.

- Every link between the pages resolves: the file exists and, for `page.md#anchor`, the page has a
  heading with that anchor (GitHub's rule: lowercased, punctuation dropped, spaces to hyphens).
- Every command a page shows in a `sh` block that calls one of the project's own entry points
  (`./build.sh`, `scripts/*.sh`, `local_endpoint.py`, `openwhisk.py`, `serverless-max`) uses only
  options that entry point's `--help` lists.
- A `sh` block right after `<!-- runnable -->` is run as shown, from the repository's root; after
  `<!-- runnable: example endpoint -->` it runs against the example model behind `local_endpoint.py`
  on port 3233, as the README's first command starts it. When a `json` block follows, the command
  must print exactly that JSON.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from support import ROOT

PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))

FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
RUNNABLE = re.compile(r"<!--\s*runnable(?::\s*([^>]*?))?\s*-->\s*$")


class Block(NamedTuple):
    page: str
    line: int
    language: str
    text: str
    runnable: Optional[str]  # None: shown only; "": run as is; else the name of what it needs
    expected_json: Optional[str]  # the json block right after it, if any


def read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as stream:
        return stream.read()


def blocks(page: str) -> List[Block]:
    text = read(page)
    found = []  # type: List[Block]
    matches = list(FENCE.finditer(text))
    for index, match in enumerate(matches):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = RUNNABLE.search(before)
        runnable = (marker.group(1) or "").strip() if marker else None
        expected = None
        if index + 1 < len(matches):
            following = matches[index + 1]
            if following.group(1) == "json" and not text[match.end():following.start()].strip():
                expected = following.group(2)
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2),
                           runnable, expected))
    return found


def outside_code(text: str) -> str:
    """The text without fenced blocks and code spans, where links are not links."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchor(heading: str) -> str:
    heading = heading.strip().lower().replace("`", "")
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(page: str) -> List[str]:
    return [anchor(line.lstrip("#")) for line in outside_code(read(page)).splitlines() if line.startswith("#")]


def test_every_page_is_found() -> None:
    assert "docs/openwhisk.md" in PAGES and len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES)
def test_links_resolve(page: str) -> None:
    broken = []
    for target in LINK.findall(outside_code(read(page))):
        if re.match(r"^[a-z]+:", target):
            continue  # an address on the web: not checked offline
        path, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, resolved)):
            broken.append("%s: no such file" % target)
        elif fragment and resolved.endswith(".md") and fragment not in anchors(resolved):
            broken.append("%s: %s has no heading with that anchor" % (target, resolved))
    assert not broken, "%s has broken links:\n%s" % (page, "\n".join(broken))


def test_the_readme_stays_short_and_starts_with_the_two_commands() -> None:
    readme = read("README.md")
    assert len(readme.splitlines()) <= 200
    first = blocks("README.md")[0].text
    assert first.splitlines()[0].startswith("scripts/serve-example.sh")
    assert first.splitlines()[1].startswith("scripts/test.sh")
    assert "http://127.0.0.1:3233/api/v1/web/" in readme
    assert "--web raw" in readme


# Commands -----------------------------------------------------------------------------------------

SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")


def commands(script: str) -> Iterator[List[str]]:
    """Each simple command of a shell snippet as words, command substitutions as commands of their own."""
    script = re.sub(r"\\\n", " ", script)
    while True:  # innermost substitutions first
        inner = SUBSTITUTION.search(script)
        if not inner:
            break
        yield from commands(inner.group(1))
        script = script[:inner.start()] + "SUBSTITUTED" + script[inner.end():]
    lexer = shlex.shlex(script, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    current = []  # type: List[str]
    for word in lexer:
        if set(word) <= set("();<>|&\n"):
            if current:
                yield current
            current = []
        else:
            current.append(word)
    if current:
        yield current


def entry_point(words: List[str]) -> Optional[Tuple[str, List[str]]]:
    """(the entry point's help command key, its arguments) if the command runs one of ours."""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # VARIABLE=value before the command
    if not words:
        return None
    program, arguments = words[0], words[1:]
    if program in ("python", "python3") or program.endswith("/python"):
        if not arguments:
            return None
        program, arguments = arguments[0], arguments[1:]
    name = os.path.basename(program)
    if name in ("build.sh", "local_endpoint.py", "openwhisk.py"):
        return name, arguments
    if program.startswith("scripts/") and name.endswith(".sh"):
        # serve-example.sh hands its arguments to local_endpoint.py.
        return ("local_endpoint.py" if name == "serve-example.sh" else program), arguments
    if program == "serverless-max":
        subcommand = arguments[0] if arguments and not arguments[0].startswith("-") else ""
        return ("serverless-max " + subcommand).strip(), arguments[1:] if subcommand else arguments
    return None


HELP_COMMANDS = {
    "build.sh": ["./build.sh", "--help"],
    "local_endpoint.py": [sys.executable, "local_endpoint.py", "--help"],
    "openwhisk.py": [sys.executable, "openwhisk.py", "--help"],
}  # type: Dict[str, List[str]]


def help_text(key: str, cache: Dict[str, str] = {}) -> str:
    if key not in cache:
        if key.startswith("serverless-max"):
            program = shutil.which("serverless-max", path=os.path.dirname(sys.executable))
            if program is None:
                pytest.skip("the batch client is installed on the current era only")
            command = [program] + key.split()[1:] + ["--help"]
        else:
            command = HELP_COMMANDS.get(key, [key, "--help"])
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert done.returncode == 0, "%s failed:\n%s" % (" ".join(command), done.stdout.decode())
        cache[key] = done.stdout.decode()
    return cache[key]


SHELL_BLOCKS = [block for page in PAGES for block in blocks(page) if block.language in ("sh", "bash")]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=["%s:%d" % (b.page, b.line) for b in SHELL_BLOCKS])
def test_shown_commands_use_options_their_help_lists(block: Block) -> None:
    unknown = []
    for words in commands(block.text):
        called = entry_point(words)
        if called is None:
            continue
        key, arguments = called
        listed = help_text(key)
        for argument in arguments:
            option = argument.split("=", 1)[0]
            if option.startswith("--") and len(option) > 2 and not re.search(re.escape(option) + r"\b", listed):
                unknown.append("%s %s" % (key, option))
    assert not unknown, "%s:%d shows options its command does not have: %s" % (block.page, block.line, unknown)


def test_the_checker_sees_the_commands_it_should() -> None:
    seen = {entry_point(words)[0] for block in SHELL_BLOCKS for words in commands(block.text) if entry_point(words)}
    assert {"build.sh", "local_endpoint.py", "scripts/test.sh", "scripts/lambda-rie.sh"} <= seen
    assert list(commands('RIE=$(scripts/lambda-rie.sh --sam) && "$RIE" x | tail -1')) == [
        ["scripts/lambda-rie.sh", "--sam"], ["RIE=SUBSTITUTED"], ["$RIE", "x"], ["tail", "-1"]]


RUNNABLE_BLOCKS = [block for block in SHELL_BLOCKS if block.runnable is not None]


@pytest.fixture(scope="module")
def example_endpoint() -> Iterator[None]:
    endpoint = subprocess.Popen(
        [sys.executable, "local_endpoint.py", "--python", sys.executable, "examples/max-example-digit-classifier"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        for raw in endpoint.stdout:
            lines.append(raw.decode(errors="replace"))
            if raw.strip() == b"ready":
                break
        else:
            pytest.fail("the example endpoint did not start:\n" + "".join(lines))
        yield
    finally:
        endpoint.terminate()
        endpoint.wait(20)


def test_some_blocks_are_run() -> None:
    assert any(block.page == "README.md" for block in RUNNABLE_BLOCKS)


@pytest.mark.parametrize("block", RUNNABLE_BLOCKS, ids=["%s:%d" % (b.page, b.line) for b in RUNNABLE_BLOCKS])
def test_runnable_blocks_run_as_shown(block: Block, request: pytest.FixtureRequest) -> None:
    needs = {"": None, "example endpoint": "example_endpoint"}
    assert block.runnable in needs, "unknown runnable marker %r at %s:%d" % (block.runnable, block.page, block.line)
    if needs[block.runnable]:
        request.getfixturevalue(needs[block.runnable])
    environment = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(["bash", "-Eeuo", "pipefail", "-c", block.text], cwd=ROOT, env=environment,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, "%s:%d failed:\n%s" % (block.page, block.line, done.stderr.decode())
    if block.expected_json is not None:
        assert json.loads(done.stdout.decode()) == json.loads(block.expected_json)
