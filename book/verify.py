#!/usr/bin/env python3
"""Checks that the book still tells the truth about the implementation.

Run from anywhere:  python3 book/verify.py [--fix] [path/to/dmc]

1. Every snippet under book/src/snippets/ passes `dmc check` without errors, and
   without warnings unless its name says it is about one; its `test` blocks pass.
2. Every example under book/diagnostics/ produces the diagnostic its file name
   names: `dmc check` for E/W codes, `dmc run` with the `.jsonl` beside it for R
   codes, `dmc test` for T codes.
3. Every ```console block of a page whose first line is `$ dmc ...` shows exactly
   what that command prints today (stdout and stderr together, run from the
   repository root with NO_COLOR=1; trailing spaces ignored).
4. Every {{#include}} points at an existing file, and every anchor it names exists.
5. Every link to a page of the book points at an existing page and heading.

With --fix, step 3 rewrites the output of each such block instead of comparing it:
write the `$ dmc ...` line, run `--fix`, then review the diff.

Exit status 0 when everything holds, 1 otherwise.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
ARGS = [a for a in sys.argv[1:] if a != "--fix"]
FIX = "--fix" in sys.argv[1:]
DMC = Path(ARGS[0]) if ARGS else ROOT / "target/debug/dmc"

failures = []


def dmc(*args):
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run(
        [str(DMC), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc.returncode, proc.stdout


def fail(message):
    failures.append(message)
    print("FAIL", message)


def snippets():
    for path in sorted((BOOK / "src/snippets").glob("*.dmp")):
        rel = path.relative_to(ROOT)
        code, out = dmc("check", str(rel))
        summary = out.strip().splitlines()[-1] if out.strip() else ""
        if code != 0:
            fail(f"{rel} does not check:\n{out}")
            continue
        if "0 warnings" not in summary and "warn" not in path.stem:
            fail(f"{rel} has warnings:\n{out}")
        if "test \"" in path.read_text():
            code, out = dmc("test", str(rel))
            if code != 0:
                fail(f"{rel} tests fail:\n{out}")


def diagnostics():
    for path in sorted((BOOK / "diagnostics").glob("*.dmp")):
        rel = path.relative_to(ROOT)
        want = path.stem.split("-")[0]
        if want.startswith("R"):
            events = path.with_suffix(".jsonl").relative_to(ROOT)
            code, out = dmc("run", str(rel), "--events", str(events))
        elif want.startswith("T"):
            code, out = dmc("test", str(rel))
        else:
            code, out = dmc("check", str(rel))
        codes = re.findall(r"^([EWRT]\d{4})$", out, re.M)
        if want not in codes:
            fail(f"{rel} should produce {want}, got {codes}:\n{out}")
        expected_status = 0 if want.startswith("W") else 1
        if code != expected_status:
            fail(f"{rel} exits with {code}, expected {expected_status}")


def norm(lines):
    return "\n".join(l.rstrip() for l in lines).strip("\n")


def console_blocks():
    for page in sorted((BOOK / "src").rglob("*.md")):
        text = page.read_text()

        def check(match):
            lines = match.group(1).splitlines()
            if not lines or not lines[0].startswith("$ dmc "):
                return match.group(0)
            # A block may hold several commands; each runs on its own.
            commands = []
            for line in lines:
                if line.startswith("$ "):
                    commands.append((line[2:], []))
                else:
                    commands[-1][1].append(line)
            rebuilt = []
            for command, expected in commands:
                _, out = dmc(*command.split()[1:])
                actual = norm(out.splitlines())
                rebuilt.append("$ " + command + ("\n" + actual if actual else ""))
                if not FIX and actual != norm(expected):
                    fail(
                        f"{page.relative_to(ROOT)}: output of `{command}` changed:\n"
                        f"--- book\n{norm(expected)}\n--- dmc\n{actual}"
                    )
            return "```console\n" + "\n".join(rebuilt) + "\n```"

        new = re.sub(r"```console\n(.*?)```", check, text, flags=re.S)
        if FIX and new != text:
            page.write_text(new)
            print("updated", page.relative_to(ROOT))


def includes():
    pattern = re.compile(r"\{\{#include ([^}]+)\}\}")
    for page in sorted((BOOK / "src").rglob("*.md")):
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for spec in pattern.findall(line):
                parts = spec.strip().split(":")
                target = (page.parent / parts[0]).resolve()
                where = f"{page.relative_to(ROOT)}:{n}"
                if not target.exists():
                    fail(f"{where}: include of missing file {parts[0]}")
                    continue
                if len(parts) == 2 and not parts[1].isdigit():
                    body = target.read_text()
                    anchor = parts[1]
                    if not re.search(rf"ANCHOR:\s*{re.escape(anchor)}\b", body) or not re.search(
                        rf"ANCHOR_END:\s*{re.escape(anchor)}\b", body
                    ):
                        fail(f"{where}: anchor `{anchor}` missing in {parts[0]}")


def heading_ids(page):
    """The ids mdBook gives the headings of a page (outside code blocks)."""
    ids, seen = set(), {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "")
        base = "".join(
            c.lower() if c.isalnum() or c in "_-" else "-" if c.isspace() else ""
            for c in text
        )
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def links():
    for page in sorted((BOOK / "src").rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                fail(f"{where}: no such page")
            elif anchor and anchor not in heading_ids(dest):
                fail(f"{where}: no such heading")


def main():
    if not DMC.exists():
        sys.exit(f"no dmc at {DMC}; build it or pass its path")
    snippets()
    diagnostics()
    console_blocks()
    includes()
    links()
    if failures:
        print(f"\n{len(failures)} problem(s)")
        sys.exit(1)
    print("book verified")


if __name__ == "__main__":
    main()
