"""The documentation: the mkdocs site builds with --strict, every repository path it names
exists, and every ``vitaledge`` command
shown in README.md and docs/ parses against the real Click CLI (parsed, never run)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import unavailable

from vitaledge.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SUBST = re.compile(r"\$\([^()]*\)")  # $(head -1 sensor.out) -> one placeholder word
FD_REDIRECT = re.compile(r"(?<=\s)\d+(?=[<>])")  # 2>&1, 2>log: drop the descriptor


def fenced_blocks(text: str):
    """(language, [(line number, line)]) for every fenced code block of a Markdown text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, body = m.group(2), m.group(3).lower(), []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append((i + 1, lines[i]))
            i += 1
        yield lang, body
        i += 1


def logical_lines(body):
    """Join ``\\`` continuations; (first line number, joined line)."""
    out, buf, start = [], "", None
    for no, line in body:
        if start is None:
            start = no
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf, start = "", None
    if buf:
        out.append((start, buf))
    return out


def words(line: str) -> list[str]:
    """Shell words of a line: comments dropped, ``$(...)`` one word, operators apart."""
    lex = shlex.shlex(FD_REDIRECT.sub("", SUBST.sub("SUBST", line)), posix=True,
                      punctuation_chars="|&;<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def commands_in(line: str) -> list[list[str]]:
    """The argument lists of every ``vitaledge`` command of a shell line (pipelines, ``&&``,
    ``;`` and ``&`` split it; redirections are dropped)."""
    out, seg, skip = [], [], False
    for w in [*words(line), ";"]:
        if skip:
            skip = False
            continue
        if w and set(w) <= set("|&;<>") and set(w) & set("<>"):
            skip = True  # a redirection (>, >>, >&, <): drop its target
            continue
        if w and set(w) <= set("|&;"):
            if seg and seg[0] == "vitaledge":
                out.append(seg[1:])
            seg = []
            continue
        seg.append(w)
    return out


def doc_commands() -> list[tuple[str, str, list[str]]]:
    """Every ``vitaledge ...`` command: in shell blocks every command of every line; in
    other blocks (program output) the lines with a ``$ `` prompt."""
    found = []
    for path in DOC_FILES:
        for lang, body in fenced_blocks(path.read_text()):
            for no, line in logical_lines(body):
                s = line.strip()
                prompt = s.startswith("$ ")
                if prompt:
                    s = s[2:].lstrip()
                if (lang not in SHELL_LANGS and not prompt) or "vitaledge" not in s:
                    continue
                for args in commands_in(s):
                    found.append((f"{path.relative_to(ROOT)}:{no}", s, args))
    return found


@pytest.fixture
def no_exists_checks(monkeypatch):
    """Placeholder paths are fine: click.Path(exists=True) checks are switched off."""
    seen = set()

    def walk(cmd):
        if id(cmd) in seen:
            return
        seen.add(id(cmd))
        for p in cmd.params:
            if isinstance(p.type, click.Path) and p.type.exists:
                monkeypatch.setattr(p.type, "exists", False)
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(main)


def parse(args: list[str]) -> click.Context:
    """Resolve the subcommand chain as Click's Group.invoke does and parse each level;
    the innermost context."""
    cmd, name, parent = main, "vitaledge", None
    while True:
        ctx = cmd.make_context(name, list(args), parent=parent, resilient_parsing=False)
        if not isinstance(cmd, click.Group):
            return ctx
        # the subcommand and its arguments: Click 8.2 deprecated the public
        # ``protected_args`` for this attribute, which its own Group.invoke reads
        rest = [*ctx._protected_args, *ctx.args]  # noqa: SLF001
        if not rest:
            return ctx
        name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


def old_spellings(ctx: click.Context) -> list[str]:
    """Options given in a deprecated spelling (hidden aliases, and ``--records DIR`` where
    the command has ``--data``): they still parse, but the docs show the new ones."""
    from click.core import ParameterSource

    bad = [opt for p in ctx.command.params if getattr(p, "hidden", False)
           and ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
           for opt in p.opts[:1]]
    names = {p.name for p in ctx.command.params}
    recs = ctx.params.get("records")
    if "data" in names and isinstance(recs, str) and "/" in recs:
        bad.append(f"--records {recs} (a directory: --data)")
    return bad


COMMANDS = doc_commands()


def test_docs_show_commands():
    files = {where.split(":")[0] for where, _, _ in COMMANDS}
    assert "README.md" in files and len(COMMANDS) > 40, files


@pytest.mark.parametrize("where,line,args", COMMANDS, ids=[w for w, _, _ in COMMANDS])
def test_command_parses(where, line, args, no_exists_checks):
    try:
        ctx = parse(args)
    except click.exceptions.Exit as exc:  # --help, --version
        assert exc.exit_code == 0, f"{where}: {line}"
        return
    except click.ClickException as exc:
        msg = exc.format_message()  # no_exists_checks: a placeholder path is not refused
        pytest.fail(f"{where}: {line}\n  -> {type(exc).__name__}: {msg}")
    old = old_spellings(ctx)
    assert not old, f"{where}: {line}\n  -> deprecated spelling: {old}"


def test_a_bad_command_fails(no_exists_checks):
    """The check above can fail: unknown options, commands and choices are refused, and
    old spellings are found."""
    for old in ("vitaledge device run --model a --source stdin --out x.jsonl",
                "vitaledge data synth --out d --records 3",
                "vitaledge train beat --records data/mitdb --out r"):
        [args] = commands_in(old)
        assert old_spellings(parse(args)), old
    for bad, words in (("vitaledge device run --out x.jsonl --no-such-flag",
                        "No such option '--no-such-flag'"),
                       ("vitaledge device nosuch", "No such command 'nosuch'"),
                       ("vitaledge train beat --arch nope --out r",
                        "Invalid value for '--arch'"),
                       ("vitaledge convert r --quant int4 --out a",
                        "Invalid value for '--quant'")):
        [args] = commands_in(bad)
        with pytest.raises(click.UsageError) as exc:
            parse(args)
        assert words in exc.value.format_message(), (bad, exc.value.format_message())


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or \
        shutil.which("mkdocs")
    if mkdocs is None:
        unavailable("mkdocs is not installed (pip install -e '.[dev]' installs mkdocs-material)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def slug(heading: str) -> str:
    """The anchor mkdocs' toc extension gives a heading."""
    text = re.sub(r"[`*_]|\[([^]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s-]+", "-", text).strip("-")


def test_readme_links_resolve():
    """mkdocs checks the links inside docs/; README.md is outside it, so check its own."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if "://" in link:
            continue
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.is_file(), f"README.md links to missing {target}"
        if anchor:
            anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}
            assert anchor in anchors, f"README.md: no heading #{anchor} in {target}"


REPO_DIRS = ("train/", "convert/", "device/", "firmware_sim/", "tests/", "vitaledge/", ".ci/")


def repo_paths_named() -> list[tuple[str, str]]:
    """(where, path) for every repository path the docs name in backticks: ``device/dsp/``,
    ``convert/quantize.py``, ``tests/test_nst.py::test_x`` (the node id's file)."""
    found = []
    for path in DOC_FILES:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            for tok in re.findall(r"`([^`\s]+)`", line):
                if tok.startswith(REPO_DIRS) and not set(tok) & set("<>*{}$"):
                    found.append((f"{path.relative_to(ROOT)}:{no}",
                                  tok.split("::")[0].split(":")[0].rstrip(".,;)")))
    return found


def test_repository_paths_named_in_the_docs_exist():
    named = repo_paths_named()
    assert len(named) > 50  # the docs name their code; the check is not vacuous
    missing = [f"{where}: {p}" for where, p in named if not (ROOT / p).exists()]
    assert not missing, "the docs name paths that do not exist:\n" + "\n".join(missing)
