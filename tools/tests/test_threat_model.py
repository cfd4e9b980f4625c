"""docs/threat-model.md stays true: every test it names exists, every least-privilege rule it names
is one the tests run, and its count of mutations is the tests' count."""

from __future__ import annotations

import re
from pathlib import Path

from tools.tests.test_template_iam import MUTATIONS, RULES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "threat-model.md"
# `tests/run_ledger.rs::forged_and_stale_...`, `src/usage.rs::a_use_...`, or a bare file.
REFERENCE = re.compile(r"`((?:tests|src|tools)/[\w./-]+\.(?:rs|py))(?:::(\w+))?`")


def references() -> list[tuple[str, str | None]]:
    return [(path, name or None) for path, name in REFERENCE.findall(DOC.read_text(encoding="utf-8"))]


def test_the_doc_names_tests():
    assert len([name for _, name in references() if name]) >= 40


def test_every_test_named_exists():
    missing = []
    for path, name in references():
        file = REPO / path
        if not file.is_file():
            missing.append(path)
            continue
        if name:
            keyword = "fn" if path.endswith(".rs") else "def"
            if not re.search(rf"\b{keyword} {re.escape(name)}\b", file.read_text(encoding="utf-8")):
                missing.append(f"{path}::{name}")
    assert missing == []


def test_every_rule_named_is_run():
    named = set(re.findall(r"`(rule_\w+)`", DOC.read_text(encoding="utf-8")))
    assert named == {rule.__name__ for rule in RULES}


def test_the_mutation_count_is_the_tests_count():
    (count,) = re.findall(r"applies (\d+) careless edits", DOC.read_text(encoding="utf-8"))
    assert int(count) == len(MUTATIONS)
