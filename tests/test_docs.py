"""README.md and docs/: short enough to read, no words that date, every link and image present, and the
commands they show valid (the short ones run)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

# Words that go stale as soon as they are written.
DATING = re.compile(r"\bthis round\b|\bthe round before\b|\bearlier rounds?\b|\bsession\b|\bsessions\b|"
                    r"\blast time\b|\bissue\s*#?\d+|\bthis time\b", re.IGNORECASE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCED_BASH = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", path.read_text(), re.MULTILINE)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [m.group(1) for m in LINK.finditer(text)]


def _commands(text: str) -> list[str]:
    """The shell commands of a page's fenced code blocks, continuation lines joined and comments dropped.
    (Indented blocks are for commands of earlier versions, which docs/experiments.md records.)"""
    out = []
    for block in FENCED_BASH.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _cli_args(command: str) -> list[str] | None:
    """The arguments after `-m misgan_core` (python or torchrun), or None for another program."""
    words = shlex.split(command)
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "misgan_core":
            return words[i + 2:]
    return None


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < 220, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_that_date(path: Path) -> None:
    found = [f"{n}: {m.group(0)!r}" for n, line in enumerate(path.read_text().splitlines(), 1)
             for m in DATING.finditer(line)]
    assert not found, f"{path.relative_to(ROOT)} has words that date: {found}"


def test_the_dating_check_sees_what_it_looks_for() -> None:
    for text in ("measured this round", "as last time", "see issue 28", "the previous session's cell"):
        assert DATING.search(text), text
    assert not DATING.search("rounded to the issue's nearest step")


# Made by another tool: the browser test writes docs/img/<page>.png, bench/options_docs.py docs/options.md.
MADE_ELSEWHERE: dict[str, str] = {}  # path prefix -> the tool that makes it, for files a test run makes


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(path: Path) -> None:
    missing, not_yet_made = [], []
    for target in _links(path):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        name = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)
        if not resolved.exists():
            maker = next((tool for prefix, tool in MADE_ELSEWHERE.items() if name.startswith(prefix)), None)
            (not_yet_made if maker else missing).append(f"{target} ({maker})" if maker else target)
            continue
        if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            missing.append(f"{target} (no heading with anchor #{anchor})")
    assert not missing, f"{path.relative_to(ROOT)} links to what is not there: {missing}"
    if not_yet_made:
        pytest.skip(f"not made yet, by the tool named: {not_yet_made}")


def test_the_readme_shows_the_pages_screenshots_and_the_two_commands() -> None:
    text = README.read_text()
    for page in ("home", "train", "inpaint", "compare", "runs", "theory"):
        assert f"docs/img/{page}.png" in text, page
    assert "python -m pip install -r requirements.txt && streamlit run workbench/Home.py" in text
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if line.startswith("python -m pytest"))
    assert f"```bash\n{test_command}\n```" in text, "README's test command is not the one .ci/run runs"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shown_command_parses_and_every_bench_exists(path: Path) -> None:
    from misgan_core.cli import _parser

    parser = _parser()
    for command in _commands(path.read_text()):
        args = _cli_args(command)
        if args is not None and args[:1] != ["metrics"]:  # metrics has a parser of its own
            try:
                parser.parse_args(args)
            except SystemExit:
                pytest.fail(f"{path.name}: {command!r} does not parse with today's CLI")
        for script in re.findall(r"(?:python|bash)\s+(bench/[\w./-]+)", command):
            assert (ROOT / script).exists(), f"{path.name}: {script} does not exist"
        for module in re.findall(r"python -m (bench\.\w+)", command):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{path.name}: {module} does not exist"


def test_the_command_check_reads_continued_lines_and_refuses_a_wrong_flag() -> None:
    page = "```bash\npython -m misgan_core train --dataset mnist-5k \\\n    --no-such-flag --out x  # a comment\n```\n"
    [command] = _commands(page)
    assert command.endswith("--no-such-flag --out x")
    from misgan_core.cli import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(_cli_args(command))


def _shrunk(args: list[str]) -> list[str]:
    """The command with its budget made tiny: --steps 2, and 128 examples where it trains on a dataset."""
    out = list(args)
    if "--steps" in out:
        out[out.index("--steps") + 1] = "2"
    if out[0] in ("train", "baseline"):
        out += [] if "--steps" in out else ["--steps", "2"]
        out += [] if "--limit" in out else ["--limit", "128"]
    return out


@pytest.mark.slow
def test_the_readme_command_line_session_runs(tmp_path: Path) -> None:
    """The README's command-line block, in order, in an empty folder, with the budgets shrunk."""
    block = README.read_text().split("## Command line", 1)[1]
    commands = [c for c in _commands(block) if _cli_args(c) is not None]
    assert [(_cli_args(c) or [""])[0] for c in commands][:3] == ["datasets", "train", "baseline"]
    for command in commands:
        args = _shrunk(_cli_args(command) or [])
        proc = subprocess.run([sys.executable, "-m", "misgan_core", *args, *(["--threads", "1"] if args[0] in (
            "train", "baseline", "resume", "evaluate") else [])], cwd=tmp_path, capture_output=True, text=True,
            timeout=600, env=_env())
        assert proc.returncode == 0, f"{command!r} failed:\n{proc.stderr[-2000:]}"
    assert (tmp_path / "samples.png").exists()
    assert (tmp_path / "imputed.npz").exists()
    assert (tmp_path / "sweeps" / "smoke" / "results.md").exists()


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    code = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert "gan.train(300)" in code
    code = code.replace("gan.train(300)", "gan.train(2)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'steps': 2" in proc.stdout


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
