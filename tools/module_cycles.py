"""Fails when the Rust library's modules (src/, without src/bin) refer to each other in a cycle.

    python -m tools.module_cycles            # report the cycles; exit 1 when there is one
    python -m tools.module_cycles --print    # also print the whole graph, one `a -> b` edge a line

Modules are files: src/lib.rs is `crate`, src/foo.rs and src/foo/mod.rs are `foo`, src/foo/bar.rs
is `foo::bar`. A file refers to another module through

- `use` declarations (`pub use` too), with their groups expanded: `use crate::{a, b::{c, d}}`;
- paths in code: `crate::x::f()`, `super::x::T`, `self::x::T`, and, in a module that declares
  children, `child::f()`;

each resolved to the longest module it names (`crate::steps::plan::run` -> `steps::plan`) relative
to where it is written (`super` inside an inline `mod inner { ... }` is the file's own module).
Declaring a child (`mod plan;`) is not a reference: a parent that only declares its children does
not depend on them, so `steps` and `steps::plan` form a cycle only when each really uses the other.

The graph is checked at two granularities, and a cycle at either fails:
- files (submodules): `steps::plan -> usage` as written;
- top-level modules: every file counted as its top-level module (`steps::plan` is `steps`), edges
  inside one top-level module dropped.

Test-only code is not part of the shipped graph and is left out: every item under `#[cfg(test)]`
(the trailing `mod tests { ... }` blocks, test-only `use`s and functions), every module declared
under `#[cfg(test)]` (`mod test_support;`, `mod mocks;`), a file starting with `#![cfg(test)]`, and
the `test_support` module whatever its declaration. Items under `cfg(any(test, ...))` are kept.
Comments (doc comments' intra-doc links included) and string literals are not code. A file that no
`mod` declaration reaches is not compiled and is not a node. Not handled: `#[path = ...]` modules and
paths built by macros other than `$crate::` (read as `crate::`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parent.parent
# Modules that exist only for tests, whatever their declaration says.
TEST_ONLY_MODULES = frozenset({("test_support",)})

Module = tuple[str, ...]  # () is the crate root (src/lib.rs)

RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'")
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
INNER_CFG_TEST = re.compile(r"\A(?:\s*#\s*!\s*\[[^\]]*\])*?\s*#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
ATTRIBUTE_START = re.compile(r"\s*#\s*\[")
MOD_DECLARATION = re.compile(r"\bmod\s+(\w+)\s*;")
INLINE_MOD = re.compile(r"\bmod\s+(\w+)\s*\{")
USE_DECLARATION = re.compile(r"(?<![\w$])use\s+([^;]*);")
USE_TOKEN = re.compile(r"\$?\w+|::|[{},*]")


def name(module: Module) -> str:
    """`crate` for the root, else `a::b`."""
    return "::".join(module) if module else "crate"


def top_level(module: Module) -> Module:
    """The top-level module a module belongs to (the root is its own)."""
    return module[:1]


def _blank(text: str) -> str:
    """Spaces in place of `text`, newlines kept (offsets and line numbers stay valid)."""
    return re.sub(r"[^\n]", " ", text)


def strip_comments_and_literals(code: str) -> str:
    """`code` with comments, string and character literals blanked out."""
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            end = code.find("\n", i)
            end = n if end < 0 else end
        elif code.startswith("/*", i):
            depth, end = 1, i + 2
            while end < n and depth:
                if code.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif code.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif (raw := RAW_STRING.match(code, i)) and not (i and (code[i - 1].isalnum() or code[i - 1] == "_")):
            close = code.find('"' + raw.group(1), raw.end())
            end = n if close < 0 else close + 1 + len(raw.group(1))
        elif c == '"':
            end = i + 1
            while end < n and code[end] != '"':
                end += 2 if code[end] == "\\" else 1
            end = min(end + 1, n)
        elif c == "'" and (char := CHAR_LITERAL.match(code, i)):
            end = char.end()
        else:
            out.append(c)
            i += 1
            continue
        out.append(_blank(code[i:end]))
        i = end
    return "".join(out)


def _after_matching(code: str, i: int, open_: str, close: str) -> int:
    """The index after the `close` that matches the `open_` at `i`."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_:
            depth += 1
        elif code[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def _item_end(code: str, i: int) -> int:
    """The end of the item that starts at `i` (after an attribute): its other attributes, then up
    to its `;` or through its `{ ... }` block."""
    while attribute := ATTRIBUTE_START.match(code, i):
        i = _after_matching(code, attribute.end() - 1, "[", "]")
    depth = 0
    for j in range(i, len(code)):
        c = code[j]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth <= 0:
            return j + 1
        elif c == "{" and depth <= 0:
            return _after_matching(code, j, "{", "}")
    return len(code)


def remove_test_items(code: str) -> str:
    """`code` (comments and literals already blanked) without the items under `#[cfg(test)]`."""
    if INNER_CFG_TEST.match(code):
        return _blank(code)
    kept = code
    position = 0
    while match := CFG_TEST.search(code, position):
        end = _item_end(code, match.end())
        kept = kept[: match.start()] + _blank(code[match.start() : end]) + kept[end:]
        position = end
    return kept


def module_of(relative: Path) -> Module | None:
    """The module of a file under src/ (None for src/bin/ and files that are not Rust)."""
    parts = relative.parts
    if relative.suffix != ".rs" or parts[0] == "bin":
        return None
    if parts == ("lib.rs",):
        return ()
    stem = relative.with_suffix("").parts
    return stem[:-1] if stem[-1] == "mod" else stem


def use_paths(tree: str) -> list[list[str]]:
    """Every path a `use` tree imports: `crate::{a, b::{self, C}}` -> crate::a, crate::b, crate::b::C.
    A glob imports from its prefix (`super::*` -> super); a rename (`as x`) changes nothing here."""
    tokens = USE_TOKEN.findall(tree)
    paths: list[list[str]] = []
    position = 0

    def parse(prefix: list[str]) -> None:
        nonlocal position
        path = list(prefix)
        while position < len(tokens):
            token = tokens[position]
            if token == "::":
                position += 1
            elif token == "{":
                position += 1
                while position < len(tokens) and tokens[position] != "}":
                    parse(path)
                    if position < len(tokens) and tokens[position] == ",":
                        position += 1
                position += 1  # the closing brace
                return
            elif token == "*":
                position += 1
                paths.append(path)
                return
            elif token in (",", "}"):
                break
            elif token == "as":
                position += 2  # `as` and the alias
                break
            else:
                path.append(token)
                position += 1
        if len(path) > len(prefix):
            paths.append(path[:-1] if path[-1] == "self" else path)

    parse([])
    return [path for path in paths if path]


@dataclass(frozen=True)
class Reference:
    """One place where a module refers to another."""

    source: Module
    target: Module
    file: str
    line: int
    text: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


@dataclass
class ModuleGraph:
    """The library's modules and the references between them."""

    modules: dict[Module, Path] = field(default_factory=dict)  # shipped modules and their files
    references: list[Reference] = field(default_factory=list)
    not_compiled: list[str] = field(default_factory=list)  # files no `mod` declaration reaches (src/x.rs)

    def edges(self, granularity: str) -> dict[tuple[str, str], Reference]:
        """(source, target) -> the first reference behind the edge; granularity "file" or "top"."""
        mapped = (lambda m: m) if granularity == "file" else top_level
        edges: dict[tuple[str, str], Reference] = {}
        for reference in self.references:
            source, target = name(mapped(reference.source)), name(mapped(reference.target))
            if source != target:
                edges.setdefault((source, target), reference)
        return dict(sorted(edges.items()))

    def nodes(self, granularity: str) -> list[str]:
        mapped = (lambda m: m) if granularity == "file" else top_level
        return sorted({name(mapped(module)) for module in self.modules})


def _line_of(code: str, offset: int) -> int:
    return code.count("\n", 0, offset) + 1


def _inline_modules(code: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every inline `mod name { ... }` block."""
    return [(m.start(), _after_matching(code, m.end() - 1, "{", "}"), m.group(1)) for m in INLINE_MOD.finditer(code)]


def _context(module: Module, inline: list[tuple[int, int, str]], offset: int) -> Module:
    """The module a piece of code at `offset` is in: the file's, then any inline modules around it."""
    return module + tuple(block_name for start, end, block_name in inline if start < offset < end)


def _resolve(
    segments: list[str], context: Module, file_module: Module, children: set[str], known: set[Module]
) -> Module | None:
    """The module a path names (the longest known module it starts with), or None (another crate)."""
    first = segments[0]
    if first in ("crate", "$crate"):
        full = segments[1:]
    elif first == "super":
        base = list(context)
        rest = segments
        while rest and rest[0] == "super":
            if not base:
                return None
            base, rest = base[:-1], rest[1:]
        full = base + rest
    elif first == "self":
        full = list(context) + segments[1:]
    elif first in children and context == file_module:
        full = list(file_module) + segments
    else:
        return None
    for length in range(len(full), -1, -1):
        if tuple(full[:length]) in known:
            return tuple(full[:length])
    return None


def _references(module: Module, code: str, known: set[Module]) -> list[tuple[Module, int, str]]:
    """(module referred to, offset, path as written) of every reference in a file's cleaned code."""
    inline = _inline_modules(code)
    children = set(MOD_DECLARATION.findall(code))
    found: list[tuple[Module, int, str]] = []

    def add(segments: list[str], offset: int, text: str) -> None:
        target = _resolve(segments, _context(module, inline, offset), module, children, known)
        if target is not None:
            found.append((target, offset, text))

    rest = code
    for use in USE_DECLARATION.finditer(code):
        for segments in use_paths(use.group(1)):
            add(segments, use.start(), "use " + " ".join(use.group(1).split()))
        rest = rest[: use.start()] + _blank(use.group(0)) + rest[use.end() :]
    roots = "|".join(["\\$crate", "crate", "super", "self", *sorted(children)])
    for path in re.finditer(rf"(?<![\w:$])(?:{roots})(?:\s*::\s*\w+)+", rest):
        segments = [segment.strip() for segment in path.group(0).split("::")]
        add(segments, path.start(), "::".join(segments))
    return found


def _reachable(files: dict[Module, Path], declared: dict[Module, set[str]]) -> set[Module]:
    """The modules reached from lib.rs through `declared` (the test-only modules excepted)."""
    reached: set[Module] = set()
    queue: deque[Module] = deque([()])
    while queue:
        module = queue.popleft()
        if module in reached or module in TEST_ONLY_MODULES or module not in files:
            continue
        reached.add(module)
        queue.extend(module + (child,) for child in declared[module])
    return reached


def build_graph(src: Path) -> ModuleGraph:
    """Read src/lib.rs and every src/**/*.rs but src/bin; return the module graph."""
    files: dict[Module, Path] = {}
    for path in sorted(src.rglob("*.rs")):
        module = module_of(path.relative_to(src))
        if module is not None:
            files[module] = path
    if () not in files:
        raise FileNotFoundError(f"{src / 'lib.rs'} does not exist")

    stripped = {module: strip_comments_and_literals(path.read_text(encoding="utf-8")) for module, path in files.items()}
    cleaned = {module: remove_test_items(code) for module, code in stripped.items()}
    shipped = _reachable(files, {module: set(MOD_DECLARATION.findall(code)) for module, code in cleaned.items()})
    with_tests = _reachable(files, {module: set(MOD_DECLARATION.findall(code)) for module, code in stripped.items()})

    graph = ModuleGraph(
        modules={module: files[module] for module in sorted(shipped)},
        not_compiled=sorted(
            path.relative_to(src.parent).as_posix()
            for module, path in files.items()
            if module not in with_tests and module not in TEST_ONLY_MODULES
        ),
    )
    known = set(files)  # test-only modules too: their paths resolve to them, and are then dropped
    for module, path in graph.modules.items():
        relative = path.relative_to(src.parent).as_posix()
        for target, offset, text in _references(module, cleaned[module], known):
            if target in graph.modules and target != module:
                graph.references.append(Reference(module, target, relative, _line_of(cleaned[module], offset), text))
    return graph


def strongly_connected_components(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one node, each sorted."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        successors.setdefault(source, []).append(target)
        successors.setdefault(target, [])
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, iter(sorted(successors[root])))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors[child]))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(component: list[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """A shortest cycle through the component's first node, as [a, b, ..., a]."""
    members = set(component)
    successors: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        if source in members and target in members:
            successors.setdefault(source, []).append(target)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in successors.get(node, []):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return [start]


def report(graph: ModuleGraph, print_graph: bool, out: TextIO | None = None) -> int:
    """Print the cycles (and with print_graph the whole graph); 1 when there is a cycle."""
    out = out or sys.stdout
    found = 0
    for granularity, title in (("top", "top-level modules"), ("file", "files (submodules)")):
        edges = graph.edges(granularity)
        nodes = graph.nodes(granularity)
        if print_graph:
            print(f"# {title}: {len(nodes)} modules, {len(edges)} edges", file=out)
            for source, target in edges:
                print(f"{source} -> {target}", file=out)
            isolated = sorted(set(nodes) - {node for edge in edges for node in edge})
            if isolated:
                print(f"# without edges: {', '.join(isolated)}", file=out)
            print(file=out)
        components = strongly_connected_components(nodes, edges)
        found += len(components)
        if not components:
            print(f"no cycle between {title} ({len(nodes)} modules, {len(edges)} edges)", file=out)
            continue
        print(f"{len(components)} cycle(s) between {title}:", file=out)
        for number, component in enumerate(components, 1):
            print(f"  cycle {number}: {', '.join(component)}", file=out)
            print(f"    for example {' -> '.join(shortest_cycle(component, edges))}", file=out)
            members = set(component)
            for (source, target), reference in edges.items():
                if source in members and target in members:
                    print(f"    {source} -> {target}    {reference.describe()}", file=out)
    for path in graph.not_compiled:
        print(f"note: {path} is not declared by any module (not compiled, not checked)", file=out)
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.module_cycles", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print", dest="print_graph", action="store_true", help="print the whole graph too")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the library's source directory (default src/)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        graph = build_graph(args.src)
    except (FileNotFoundError, UnicodeDecodeError) as err:
        print(f"module-cycles: {err}", file=sys.stderr)
        return 2
    return report(graph, args.print_graph)


if __name__ == "__main__":
    sys.exit(main())
