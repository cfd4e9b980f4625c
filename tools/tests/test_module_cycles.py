"""tools/module_cycles.py on small synthetic crates: which references are edges, which cycles fail."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tools.module_cycles import (
    build_graph,
    main,
    remove_test_items,
    strip_comments_and_literals,
    strongly_connected_components,
    use_paths,
)

REPO = Path(__file__).resolve().parents[2]


def crate(tmp_path: Path, files: dict[str, str]) -> Path:
    """A src/ directory holding `files` (path under src/ -> Rust source); returns src/."""
    src = tmp_path / "src"
    for relative, code in files.items():
        path = src / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code), encoding="utf-8")
    return src


def edges(src: Path, granularity: str = "file") -> set[tuple[str, str]]:
    return set(build_graph(src).edges(granularity))


def cycles(src: Path, granularity: str = "file") -> list[list[str]]:
    graph = build_graph(src)
    return strongly_connected_components(graph.nodes(granularity), graph.edges(granularity))


def test_acyclic_crate_passes_and_prints_its_edges(tmp_path, capsys):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod error;\npub mod keys;\npub mod steps;\n",
            "error.rs": "pub enum Error { Kms }\n",
            "keys.rs": "use crate::error::Error;\npub fn list() -> Result<(), Error> { Ok(()) }\n",
            "steps.rs": "pub fn run() { let _ = crate::keys::list(); }\n",
        },
    )
    assert edges(src) == {("keys", "error"), ("steps", "keys")}
    assert main(["--src", str(src), "--print"]) == 0
    out = capsys.readouterr().out
    assert "keys -> error\n" in out and "steps -> keys\n" in out
    assert "no cycle between top-level modules" in out and "no cycle between files" in out


def test_cycle_through_use_crate_fails_and_names_both_references(tmp_path, capsys):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod report;\npub mod state;\n",
            "state.rs": "use crate::report::Report;\npub struct State { pub report: Report }\n",
            "report.rs": "use crate::state::State;\npub struct Report;\nfn of(_: &State) {}\n",
        },
    )
    assert cycles(src) == [["report", "state"]]
    assert cycles(src, "top") == [["report", "state"]]
    assert main(["--src", str(src)]) == 1
    out = capsys.readouterr().out
    assert "report -> state    src/report.rs:1: use crate::state::State" in out
    assert "state -> report    src/state.rs:1: use crate::report::Report" in out


def test_cycle_through_super_between_sibling_submodules(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod steps;\n",
            "steps/mod.rs": "pub mod plan;\npub mod check;\n",
            "steps/plan.rs": "use super::check::Deleted;\npub struct Plan;\n",
            "steps/check.rs": "pub struct Deleted;\nfn after(_: super::plan::Plan) {}\n",
        },
    )
    assert edges(src) == {("steps::plan", "steps::check"), ("steps::check", "steps::plan")}
    assert cycles(src) == [["steps::check", "steps::plan"]]
    assert cycles(src, "top") == [], "both files are in the top-level module steps"
    assert main(["--src", str(src)]) == 1


def test_super_in_a_top_level_file_is_the_crate_and_super_super_climbs_two_levels(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
            "a.rs": "use super::b::B;\n",
            "b.rs": "pub struct B;\npub mod inner;\n",
            "b/inner.rs": "use super::super::c::C;\n",
            "c.rs": "pub struct C;\n",
        },
    )
    assert edges(src) == {("a", "b"), ("b::inner", "c")}
    assert cycles(src) == []


def test_cycle_through_a_grouped_import(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod keys;\npub mod model;\npub mod usage;\n",
            "model.rs": "pub struct Key;\n",
            "keys.rs": "use crate::{\n    model::Key,\n    usage::{self, Usage as Used},\n};\n",
            "usage.rs": "pub struct Usage;\nfn f() { let _ = crate::keys::list; }\n",
        },
    )
    assert edges(src) == {("keys", "model"), ("keys", "usage"), ("usage", "keys")}
    assert cycles(src) == [["keys", "usage"]]
    assert main(["--src", str(src)]) == 1


def test_references_only_in_test_code_are_not_edges(tmp_path, capsys):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod a;\npub mod b;\n#[cfg(test)]\nmod test_support;\n",
            "a.rs": "use crate::b::B;\npub struct A;\n",
            "b.rs": textwrap.dedent(
                """\
                pub struct B;
                #[cfg(test)]
                use crate::a::A;

                #[cfg(test)]
                fn helper() -> crate::a::A { crate::a::A }

                #[cfg(test)]
                mod tests {
                    use super::*;
                    use crate::a::A;
                    use crate::test_support::fake;
                    #[test]
                    fn uses_a() { let _ = crate::a::A; }
                }
                """
            ),
            "test_support.rs": "use crate::a::A;\nuse crate::b::B;\npub fn fake() {}\n",
        },
    )
    assert edges(src) == {("a", "b")}
    assert build_graph(src).nodes("file") == ["a", "b", "crate"], "test_support is not a shipped module"
    assert main(["--src", str(src)]) == 0
    assert "not declared" not in capsys.readouterr().out


def test_test_support_is_left_out_even_without_cfg_test(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod a;\npub mod test_support;\n",
            "a.rs": "pub fn f() { crate::test_support::g() }\n",
            "test_support.rs": "pub fn g() { crate::a::f() }\n",
        },
    )
    assert edges(src) == set()


def test_a_parent_declaring_its_children_is_not_an_edge_but_a_re_export_is(tmp_path):
    files = {
        "lib.rs": "pub mod steps;\n",
        "steps/mod.rs": "pub mod plan;\npub struct StepContext;\n",
        "steps/plan.rs": "use super::StepContext;\npub fn run(_: StepContext) {}\n",
    }
    src = crate(tmp_path / "declares", files)
    assert edges(src) == {("steps::plan", "steps")}
    assert cycles(src) == []

    files["steps/mod.rs"] = "pub mod plan;\npub use plan::run;\npub struct StepContext;\n"
    src = crate(tmp_path / "re-exports", files)
    assert edges(src) == {("steps", "steps::plan"), ("steps::plan", "steps")}
    assert cycles(src) == [["steps", "steps::plan"]], "a real cycle between two distinct files"


def test_child_paths_in_code_and_inline_modules(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod steps;\npub mod store;\n",
            "steps/mod.rs": textwrap.dedent(
                """\
                pub mod plan;
                pub fn dispatch() { plan::run() }
                mod inner {
                    use super::dispatch;
                    fn again() { super::super::store::open() }
                }
                """
            ),
            "steps/plan.rs": "pub fn run() {}\n",
            "store.rs": "pub fn open() {}\n",
        },
    )
    # `super` inside `mod inner` is steps itself (no edge); `super::super` is the crate root.
    assert edges(src) == {("steps", "steps::plan"), ("steps", "store")}
    assert edges(src, "top") == {("steps", "store")}


def test_comments_strings_and_doc_links_are_not_references(tmp_path):
    src = crate(
        tmp_path,
        {
            "lib.rs": "//! See [`crate::b`].\npub mod a;\npub mod b;\n",
            "a.rs": textwrap.dedent(
                """\
                // use crate::b::B;
                /* crate::b::B /* nested */ crate::b::B */
                /// Like [`crate::b::B`].
                pub fn f() -> &'static str { let _c = '"'; "crate::b::B" }
                pub fn g<'a>(x: &'a str) -> &'a str { let _r = r#"use crate::b::B;"#; x }
                """
            ),
            "b.rs": "use crate::a::f;\npub struct B;\n",
        },
    )
    assert edges(src) == {("b", "a")}


def test_files_no_module_declares_are_noted_not_checked(tmp_path, capsys):
    src = crate(
        tmp_path,
        {
            "lib.rs": "pub mod a;\n",
            "a.rs": "pub struct A;\n",
            "old.rs": "use crate::a::A;\n",
            "bin/tool.rs": "use kms::a::A;\nfn main() {}\n",
        },
    )
    assert build_graph(src).nodes("file") == ["a", "crate"]
    assert main(["--src", str(src)]) == 0
    assert "src/old.rs is not declared by any module" in capsys.readouterr().out


def test_use_paths_expands_groups_globs_self_and_renames():
    assert use_paths("crate::{a, b::{self, C as D}, e::*}") == [
        ["crate", "a"],
        ["crate", "b"],
        ["crate", "b", "C"],
        ["crate", "e"],
    ]
    assert use_paths("super::*") == [["super"]]
    assert use_paths("::std::fmt") == [["std", "fmt"]]


def test_cfg_test_items_are_blanked_and_lines_kept():
    code = "use a;\n#[cfg(test)]\n#[allow(dead_code)]\nmod tests {\n    fn x() { if y { } }\n}\nfn kept() {}\n"
    cleaned = remove_test_items(strip_comments_and_literals(code))
    assert cleaned.count("\n") == code.count("\n")
    assert "tests" not in cleaned and "fn kept() {}" in cleaned and "use a;" in cleaned
    assert remove_test_items("#![cfg(test)]\nfn x() {}\n").strip() == ""


def test_tarjan_finds_each_cycle_once():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("f", "a")]
    assert strongly_connected_components("abcdef", edges) == [["a", "b", "c"], ["d", "e"]]


@pytest.mark.skipif(not (REPO / "src" / "lib.rs").exists(), reason="no Rust library here")
def test_the_real_library_is_read_whole():
    graph = build_graph(REPO / "src")
    lib = remove_test_items(strip_comments_and_literals((REPO / "src" / "lib.rs").read_text(encoding="utf-8")))
    declared = set(re.findall(r"\bmod\s+(\w+)\s*;", lib))
    assert declared and declared <= set(graph.nodes("top")), "every module lib.rs declares is a node"
    assert "test_support" not in graph.nodes("file")
    assert all(not str(path).startswith(str(REPO / "src" / "bin")) for path in graph.modules.values())
