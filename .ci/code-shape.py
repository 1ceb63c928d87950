#!/usr/bin/env python3
"""Fails if a crate's code grows a file or a function past the size one reader holds at once.

Counts lines of code: neither blank lines nor comments, and nothing under `#[cfg(test)]`
(inline tests may be as long as they need). A function runs from its `fn` line to the closing
brace at its own indentation (rustfmt's layout). Limits: 600 lines a file, 80 a function.

    .ci/code-shape.py engine/src proto/src ...
"""
import os
import re
import sys

FILE_LIMIT = 600
FUNCTION_LIMIT = 80
FUNCTION = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def without_tests(lines):
    """The lines, less every item marked `#[cfg(test)]` (up to its balanced closing brace)."""
    kept, i = [], 0
    while i < len(lines):
        if re.match(r"^\s*#\[cfg\(test\)\]", lines[i]):
            depth, opened, j = 0, False, i + 1
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if (opened and depth <= 0) or (not opened and lines[j].rstrip().endswith(";")):
                    break
                j += 1
            i = j + 1
            continue
        kept.append(lines[i])
        i += 1
    return kept


def is_code(line):
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("//")


def long_functions(lines):
    """(name, lines of code) of each function longer than the limit."""
    found = []
    for start, line in enumerate(lines):
        match = FUNCTION.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        body = start
        while body < len(lines) and not lines[body].rstrip().endswith(("{", ";")):
            body += 1
        if body >= len(lines) or lines[body].rstrip().endswith(";"):
            continue  # a declaration without a body (in a trait)
        end = body + 1
        closing = " " * indent + "}"
        while end < len(lines) and not (
            lines[end].startswith(closing) and len(lines[end]) - len(lines[end].lstrip()) == indent
        ):
            end += 1
        size = sum(1 for l in lines[start : end + 1] if is_code(l))
        if size > FUNCTION_LIMIT:
            found.append((match.group(2), size))
    return found


def main(roots):
    failures = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(folder, name)
                lines = without_tests(open(path).read().split("\n"))
                size = sum(1 for l in lines if is_code(l))
                if size > FILE_LIMIT:
                    failures.append(f"{path}: {size} lines of code (at most {FILE_LIMIT}): split it along a seam")
                for function, length in long_functions(lines):
                    failures.append(
                        f"{path}: fn {function} has {length} lines of code (at most {FUNCTION_LIMIT}): "
                        "give its steps names"
                    )
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print(f"{', '.join(roots)}: no file over {FILE_LIMIT} lines of code, no function over {FUNCTION_LIMIT}")


if __name__ == "__main__":
    main(sys.argv[1:])
