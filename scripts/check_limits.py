#!/usr/bin/env python3
"""Size limits of hrsync's source, checked in CI.

- No source file under crates/ over 800 lines, except test files
  (`*_tests.rs`, `tests.rs`, anything under a `tests/` directory).
- No function over 80 lines outside tests: a `fn` from its signature to the
  closing brace at its own indentation (the code is rustfmt-formatted), up
  to the first `#[cfg(test)]` of a file.

Prints each offence and exits 1 if there is one.
"""
import os
import re
import sys

MAX_FILE = 800
MAX_FN = 80
FN = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')


def is_test_file(path):
    name = os.path.basename(path)
    return name.endswith('_tests.rs') or name == 'tests.rs' or '/tests/' in path


def long_functions(path, lines):
    i = 0
    while i < len(lines):
        if lines[i].startswith('#[cfg(test)]'):
            return
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith(('{', ';')):
            j += 1
        if j >= len(lines) or lines[j].rstrip().endswith(';'):
            i = j + 1
            continue
        end = j + 1
        while end < len(lines) and lines[end] != m.group(1) + '}':
            end += 1
        if end - i + 1 > MAX_FN:
            yield f'{path}:{i + 1}: fn {m.group(7)} is {end - i + 1} lines (most {MAX_FN})'
        i += 1


def main(root):
    offences = []
    for folder, _, files in os.walk(os.path.join(root, 'crates')):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.endswith('.rs') or is_test_file(path):
                continue
            with open(path, encoding='utf-8') as f:
                lines = f.read().split('\n')
            if len(lines) - 1 > MAX_FILE:
                offences.append(f'{path}: {len(lines) - 1} lines (most {MAX_FILE})')
            offences.extend(long_functions(path, lines))
    for offence in offences:
        print(offence)
    return 1 if offences else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
