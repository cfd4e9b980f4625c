"""README.md stays true: its state machine diagram is the ASL's, its commands, phases and files exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tools.check import phases

REPO = Path(__file__).resolve().parents[2]
MERMAID = re.compile(r"```mermaid\n(.*?)```", re.S)
EDGE = re.compile(r"^\s*(\w+)\s*-->(?:\|\"?(.*?)\"?\|)?\s*(\w+)\s*$")


def _mermaid_blocks(path: Path) -> list[str]:
    return MERMAID.findall(path.read_text(encoding="utf-8"))


def _diagram_edges(block: str) -> set[tuple[str, str]]:
    edges = set()
    for line in block.splitlines():
        match = EDGE.match(line)
        if match:
            edges.add((match.group(1), match.group(3)))
    return edges


def _asl_edges(definition: dict) -> set[tuple[str, str]]:
    edges = set()
    for name, state in definition["States"].items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [choice.get("Next") for choice in state.get("Choices", [])]
        targets += [catcher.get("Next") for catcher in state.get("Catch", [])]
        edges.update((name, target) for target in targets if target)
    return edges


def test_readme_has_exactly_one_diagram_and_it_is_the_documented_one():
    readme_blocks = _mermaid_blocks(REPO / "README.md")
    assert len(readme_blocks) == 1, "README.md must hold exactly one ```mermaid block"
    (documented,) = _mermaid_blocks(REPO / "docs" / "state-machine.md")
    assert readme_blocks[0] == documented, "README.md's diagram differs from docs/state-machine.md: copy it verbatim"


def test_readme_diagram_has_every_state_and_transition_of_the_asl():
    (block,) = _mermaid_blocks(REPO / "README.md")
    definition = json.loads((REPO / "statemachine" / "decommission.asl.json").read_text(encoding="utf-8"))
    for state in definition["States"]:
        assert re.search(rf"^\s*{state}\b", block, re.M), f"state {state} is missing from the README diagram"
    assert _diagram_edges(block) == _asl_edges(definition)


def test_readme_names_the_test_command_and_the_make_targets_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "make test" in readme and "make demo" in readme and "make local" in readme
    for target in ("test", "demo", "local"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run exactly the README's test command"


def test_readme_input_examples_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for event in re.findall(r"file://(events/[\w.-]+\.json)", readme):
        assert (REPO / event).exists(), f"README names {event}, which does not exist"


def test_readme_lists_every_phase_of_make_test():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    match = re.search(r"runs only the phases you name \(`([^`]*)`\)", readme)
    assert match, "README.md must list the phases of `make test` (runs only the phases you name (`...`))"
    assert match.group(1).split() == [phase.name for phase in phases()], (
        "README's phase list differs from tools/check.py"
    )


def test_readme_paths_under_local_and_tools_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in re.findall(r"`((?:local|tools)/[\w./-]+\.py)`", readme):
        assert (REPO / path).exists(), f"README names {path}, which does not exist"
