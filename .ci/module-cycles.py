#!/usr/bin/env python3
"""Fails if the modules of a crate import each other in a cycle.

A module depends on another when it names it (`crate::x`, `crate::x::y`, `super::x`, or a
child module `x::` that it declares and uses). Tests (everything after `#[cfg(test)]`) are
left out. Prints each crate's module graph with -v.

    .ci/module-cycles.py [-v] engine/src proto/src ...
"""
import os
import re
import sys


def modules(root):
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, root)[:-3]
                if module.endswith("/mod"):
                    module = module[:-4]
                code = open(path).read().split("#[cfg(test)]")[0]
                # Comments (doc links among them) are not imports.
                found[module] = re.sub(r"//[^\n]*", "", code)
    found.pop("lib", None)
    found.pop("main", None)
    return found


def dependencies(name, source, known):
    found = set()
    for first, second in re.findall(r"crate::([a-z_]+)(?:::([a-z_]+))?", source):
        if second and f"{first}/{second}" in known:
            found.add(f"{first}/{second}")
        elif first in known:
            found.add(first)
    parent = name.rsplit("/", 1)[0] if "/" in name else None
    names = re.findall(r"super::([a-z_]+)", source)
    for group in re.findall(r"super::\{([^}]*)\}", source):
        names += [item.strip().split("::")[0] for item in group.split(",")]
    for child in names:
        if parent and f"{parent}/{child}" in known:
            found.add(f"{parent}/{child}")
        elif parent:
            found.add(parent)
    for child in re.findall(r"(?:^|[^:\w])([a-z_]+)::", source):
        if f"{name}/{child}" in known:
            found.add(f"{name}/{child}")
    found.discard(name)
    return found


def cycles(graph):
    state, found = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for other in sorted(graph[node]):
            if state.get(other) == "open":
                found.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def main(args):
    verbose = "-v" in args
    failed = False
    for root in [a for a in args if a != "-v"]:
        known = modules(root)
        graph = {name: dependencies(name, source, known) for name, source in known.items()}
        if verbose:
            for name in sorted(graph):
                print(f"{root}: {name:22} -> {', '.join(sorted(graph[name]))}")
        for cycle in cycles(graph):
            print(f"{root}: import cycle: {' -> '.join(cycle)}")
            failed = True
        if not failed:
            print(f"{root}: {len(graph)} modules, no import cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
