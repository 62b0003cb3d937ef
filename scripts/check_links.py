#!/usr/bin/env python3
"""Checks that every relative link and #anchor in the docs resolves; exits 1 naming each that
does not.

    scripts/check_links.py                 the markdown: README.md, the top-level *.md,
                                           bench/README.md, docs/src/**/*.md
    scripts/check_links.py FILE.md...      those markdown files only
    scripts/check_links.py --html DIR      also the built book's HTML (every href and src)

Markdown: a link's file must exist (relative to the page); an anchor must be a heading's id in
the target page — GitHub's and mdBook's rule: lowercase, spaces to `-`, punctuation but `-` and
`_` dropped, `-1`, `-2` … for repeats — after mdBook's `{{#include}}` lines are expanded, or an
explicit `id="…"`. Links in code (fenced or inline) and absolute URLs are not links to check.
HTML: every relative href/src names a file of the built book, and its #fragment an id there.
"""
import html.parser
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r"\{\{#include\s+([^}\s]+)\s*\}\}")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ID = re.compile(r"""\bid\s*=\s*["']([^"']+)["']""")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def expand(path, seen=()):
    """The page's text with mdBook's {{#include FILE}} lines replaced by FILE's text."""
    text = path.read_text(encoding="utf-8")

    def sub(m):
        target = (path.parent / m.group(1)).resolve()
        if target in seen or not target.is_file():
            return m.group(0)
        return expand(target, seen + (path.resolve(),))

    return INCLUDE.sub(sub, text)


def prose_lines(text):
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        m = re.match(r"(`{3,}|~{3,})", stripped)
        if m:
            if fence is None:
                fence = m.group(1)[0] * len(m.group(1))
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            yield n, re.sub(r"(`+).*?\1", lambda c: " " * len(c.group(0)), line)


def slug(heading):
    text = re.sub(r"<[^>]+>", "", heading)               # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text stays
    text = text.replace("`", "").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        text = expand(path)
        ids, counts = set(), {}
        for _, line in prose_lines(text):
            ids.update(EXPLICIT_ID.findall(line))
        fence = None
        for line in text.split("\n"):
            if re.match(r"\s*(`{3,}|~{3,})", line):
                fence = None if fence else line
                continue
            m = HEADING.match(line) if fence is None else None
            if m:
                base = slug(m.group(2))
                n = counts.get(base, 0)
                counts[base] = n + 1
                ids.add(base if n == 0 else f"{base}-{n}")
        cache[path] = ids
    return cache[path]


def check_markdown(path):
    problems = []
    text = path.read_text(encoding="utf-8")
    for n, line in prose_lines(text):
        for m in LINK.finditer(line):
            target = m.group(1)
            if SCHEME.match(target) or target.startswith("//"):
                continue
            file_part, _, frag = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path.resolve()
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{n}"
            if not dest.exists():
                problems.append(f"{where}: {target}: no such file")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                problems.append(f"{where}: {target}: no heading with the id `{frag}`")
    return problems


class _Html(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag != "base":
                self.refs.append((tag, value, self.getpos()[0]))


def check_html(root):
    root = Path(root).resolve()
    pages = {}
    for path in root.rglob("*.html"):
        parser = _Html()
        parser.feed(path.read_text(encoding="utf-8"))
        pages[path] = parser
    problems = []
    for path, parser in sorted(pages.items()):
        for tag, ref, line in parser.refs:
            if SCHEME.match(ref) or ref.startswith("//") or ref == "#":
                continue
            file_part, _, frag = ref.partition("#")
            file_part = file_part.partition("?")[0]
            dest = (path.parent / file_part).resolve() if file_part else path
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{path.relative_to(root)}:{line}"
            if not dest.exists():
                problems.append(f"{where}: <{tag}> {ref}: no such file in the book")
            elif frag and dest in pages and frag not in pages[dest].ids:
                problems.append(f"{where}: <{tag}> {ref}: no element with the id `{frag}`")
    return problems


def default_markdown():
    files = sorted(REPO.glob("*.md")) + [REPO / "bench" / "README.md"]
    return files + sorted((REPO / "docs" / "src").rglob("*.md"))


def main(argv):
    html_dir, files = None, []
    args = iter(argv)
    for a in args:
        if a == "--html":
            html_dir = next(args)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            files.append(Path(a).resolve())
    problems = []
    for path in files or default_markdown():
        problems += check_markdown(path)
    if html_dir:
        problems += check_html(html_dir)
    for p in problems:
        print(f"broken link: {p}", file=sys.stderr)
    checked = len(files or default_markdown())
    print(f"links: {checked} markdown file(s){' and the built book' if html_dir else ''}, "
          f"{len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
