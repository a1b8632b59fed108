"""The project speaks of itself alone: no word in code, tests, configs, tools or docs about how it was built
(work sessions, issue numbers, commit hashes as a diary, before/after-this-change narrative). Every file git
knows is read; a planted line proves each pattern fires."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from tests.helpers import paths

REPO = paths.REPO
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".yaml", ".yml", ".json", ".pbtxt", ""}
# Each pattern is written in two pieces so that this file does not match itself.
PATTERNS = {
    "a work session": re.compile(r"\bsess" r"ions?\b", re.IGNORECASE),
    "an issue number": re.compile(r"\biss" r"ues?\s*#?\d+|(?<![&\w])#" r"\d{1,4}\b", re.IGNORECASE),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"),
    "a before/after narrative": re.compile(r"\b(?:before|after) th" r"is change\b", re.IGNORECASE),
}
# sha256 / fingerprint literals a test checks are data, not history.
ALLOWED_HEX_FILES = {"tests/data_pipelines/test_bank_files.py", "tests/bank/test_inputs.py"}


def project_files() -> list[pathlib.Path]:
    """Every tracked or untracked-but-not-ignored text file of the checkout."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    paths = [REPO / line for line in listed if line]
    return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES and p.name != pathlib.Path(__file__).name]


def findings(path: pathlib.Path, rel: str) -> list[str]:
    out = []
    for number, line in enumerate(path.read_text(errors="replace").split("\n"), start=1):
        for what, pattern in PATTERNS.items():
            if what == "a commit hash" and rel in ALLOWED_HEX_FILES:
                continue
            match = pattern.search(line)
            if match:
                out.append(f"{rel}:{number}: {what}: {match.group(0)!r}")
    return out


def test_no_file_speaks_of_how_the_project_was_built():
    found = [f for path in project_files() for f in findings(path, str(path.relative_to(REPO)))]
    assert found == [], "\n".join(found[:50])


@pytest.mark.parametrize("line", [
    "Measured in " "session 5 of the work.",
    "see iss" "ue 14 for the figures",
    "fixed in #" "24",
    "the table at ca7" "774d shows it",
    "before th" "is change the step took 3 s",
])
def test_a_planted_line_is_found(tmp_path, line):
    planted = tmp_path / "notes.md"
    planted.write_text(f"A first line.\n{line}\n")
    assert len(findings(planted, "notes.md")) == 1


def test_ordinary_words_pass(tmp_path):
    clean = tmp_path / "ok.md"
    clean.write_text("Decimals: 3; batch 8 (#clips); colour #fff; a 7-frame clip; the feed and the cafe.\n")
    assert findings(clean, "ok.md") == []
