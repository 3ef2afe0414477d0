#!/usr/bin/env python3
"""Fails when two source files of a crate import each other, directly or round a longer loop.

For every crate under crates/ (and tests/), each `src/**/*.rs` file is a module; a path
`crate::a::b::Item` or `super::Item` written in a file is an edge from that file to the file
of the module that defines `Item`. A `pub use` re-export in lib.rs or a mod.rs is followed to
the file it re-exports from, so `crate::Error` counts as an import of error.rs. Unit tests
(`#[cfg(test)] mod tests`) may use their parent, so a file's own `tests` submodule is skipped.
Prints each cycle found and exits 1, or prints the number of files checked and exits 0.

    python3 scripts/check-imports.py [ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}", re.S)
PUB_USE = re.compile(r"pub(?:\(crate\))?\s+use\s+([^;]+);", re.S)
USE = re.compile(r"\buse\s+([^;]+);", re.S)
REL = re.compile(r"(?<![:\w])([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(src, f):
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def strip_test_module(text):
    """Drops a trailing `#[cfg(test)] mod tests { ... }` block (unit tests use their parent)."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{", text)
    return text[: m.start()] if m else text


def check(src):
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    texts = {m: strip_test_module(strip_comments(f.read_text())) for m, f in files.items()}

    def resolve(path, seen=()):
        """The module that defines `path` (a tuple of names), following re-exports."""
        for k in range(len(path), -1, -1):
            mod = path[:k]
            if mod in files:
                rest = path[k:]
                if not rest or (mod, rest[0]) in seen:
                    return mod
                # A re-export of `rest[0]` in `mod` points at where it really lives.
                for m in PUB_USE.finditer(texts[mod]):
                    for target in expand(mod, m.group(1)):
                        if target[-1] == rest[0]:
                            return resolve(target + rest[1:], seen + ((mod, rest[0]),))
                return mod
        return None

    def expand(mod, use):
        """Absolute module paths named by one `use` tree written in module `mod`."""
        use = " ".join(use.split())
        out = []
        g = re.match(r"(.*?)::\{(.*)\}$", use)
        heads = [(g.group(1), p.strip()) for p in g.group(2).split(",")] if g else [(use, None)]
        for head, tail in heads:
            full = head if tail is None else f"{head}::{tail}"
            full = full.split(" as ")[0].strip()
            if not full or full.endswith("*"):
                continue
            parts = full.split("::")
            if parts[0] == "crate":
                out.append(tuple(parts[1:]))
            elif parts[0] == "super":
                base = list(mod)
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                out.append(tuple(base + parts))
            elif parts[0] == "self":
                out.append(tuple(list(mod) + parts[1:]))
            else:
                out.append(tuple(list(mod) + parts))
        return out

    edges = {m: set() for m in files}
    for mod, text in texts.items():
        paths = []
        for g in GROUP.finditer(text):
            for item in g.group(3).split(","):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self" and not item.startswith("{"):
                    paths.append(f"{g.group(1)}{g.group(2)}::{item}")
        paths += [m.group(0) for m in PATH.finditer(GROUP.sub("", text))]
        targets = [t for p in paths for t in expand(mod, p)]
        # `use child::...` and inline `child::item` paths name a submodule of this file.
        for u in USE.finditer(text):
            first = u.group(1).strip().split("::")[0]
            if (mod + (first,)) in files:
                targets += expand(mod, u.group(1))
        for r in REL.finditer(text):
            if (mod + (r.group(1),)) in files:
                targets += expand(mod, r.group(0))
        for target in targets:
            dest = resolve(target)
            if dest is not None and dest != mod:
                edges[mod].add(dest)
    cycles = []
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(files):
        if m not in state:
            visit(m)
    return len(files), [[str(files[m].relative_to(root)) for m in c] for c in cycles]


total, bad = 0, []
for src in sorted(root.glob("crates/*/src")) + [root / "tests"]:
    if src.is_dir():
        n, cycles = check(src)
        total += n
        bad += cycles
for c in bad:
    print("import cycle: " + " -> ".join(c))
if bad:
    sys.exit(1)
print(f"no import cycles among {total} source files")
