"""Read a rendered document by its structure: headings, sections, tables, bullets and paragraphs.

The zoo's documents (MODEL_CARD.md, REPORT.md, the Hub cards, the printout of ``zoo run``) are checked by what
they are made of (a heading exists, a table has a row per model, the number in a cell is the one computed from the
summary with the package's own formatter), not by pinned sentences: a reworded sentence breaks no test, a wrong or
missing number does. That every committed document regenerates byte for byte is ``make check-docs``.

Every reader fails with an ``AssertionError`` naming what it looked for and what is there, so a test reads as
its checks.
"""
import re
from typing import Dict, List, NamedTuple, Sequence, Tuple

_HEADING = re.compile(r'^(#{1,6}) +(.*?) *$')


def headings(text: str) -> List[str]:
    """The titles of the Markdown headings in ``text``, in order (``'## Rows'`` -> ``'Rows'``); fenced code
    is skipped (a ``# comment`` there is no heading)."""
    return [title for _, title, _ in _headings(text)]


def _headings(text: str) -> List[Tuple[int, str, int]]:
    """``(level, title, line index)`` of each heading outside fenced code."""
    found, fenced = [], False
    for index, line in enumerate(text.splitlines()):
        if line.startswith('```'):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            found.append((len(match[1]), match[2], index))
    return found


def section(text: str, title: str) -> str:
    """The body under the first heading whose title starts with ``title``, down to the next heading of the same or
    a higher level (its subsections included)."""
    lines = text.splitlines()
    found = _headings(text)
    for n, (level, heading, index) in enumerate(found):
        if heading.startswith(title):
            end = next((i for lvl, _, i in found[n + 1:] if lvl <= level), len(lines))
            return '\n'.join(lines[index + 1:end])
    raise AssertionError(f'no heading starting with {title!r}; the headings: {[h for _, h, _ in found]}')


class Table(NamedTuple):
    """A Markdown table: its header cells and its body rows, each a tuple of stripped cells."""
    header: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]

    @property
    def first_column(self) -> List[str]:
        """The first cell of every body row (the row names of the zoo's tables)."""
        return [row[0] for row in self.rows]

    def row(self, first: str) -> Tuple[str, ...]:
        """The one body row whose first cell is ``first``."""
        matches = [row for row in self.rows if row[0] == first]
        assert len(matches) == 1, f'{len(matches)} rows named {first!r} in the table; its rows: {self.first_column}'
        return matches[0]

    def cell(self, first: str, column: str) -> str:
        """The cell of row ``first`` under the header ``column``."""
        assert column in self.header, f'no column {column!r}; the header: {self.header}'
        return self.row(first)[self.header.index(column)]


def _cells(line: str) -> Tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip()[1:-1].split('|'))


def tables(text: str) -> List[Table]:
    """Every table in ``text``: a ``| ... |`` header line, a ``| --- |`` rule, then its rows."""
    lines, found, i = text.splitlines(), [], 0
    while i + 1 < len(lines):
        rule = lines[i + 1].strip()
        if lines[i].lstrip().startswith('|') and rule.startswith('|') and set(rule) <= set('|-: '):
            header, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith('|'):
                rows.append(_cells(lines[i]))
                i += 1
            assert all(len(row) == len(header) for row in rows), f'a row of another width than {header}: {rows}'
            found.append(Table(header, tuple(rows)))
        else:
            i += 1
    return found


def table(text: str) -> Table:
    """The one table in ``text`` (a section holding a single table)."""
    found = tables(text)
    assert len(found) == 1, f'{len(found)} tables where one was expected: {[t.header for t in found]}'
    return found[0]


def bullets(text: str) -> Dict[str, str]:
    """The list items named by their start, as ``{name: the rest of the line}``: ``- name: text``, or
    ``- **name** ...: text`` (the bold name; words may stand between it and the colon)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r'^- (?:\*\*(.+?)\*\*[^:]*|([^:*]+?)):\s*(.*)$', line)
        if match:
            found[match[1] or match[2]] = match[3]
    return found


def paragraphs(text: str) -> List[str]:
    """The prose of ``text``: its blocks separated by blank lines, each joined into one line, without the
    headings and the tables (a list is one block)."""
    found = []
    for block in re.split(r'\n\s*\n', text):
        lines = [line for line in block.splitlines() if line.strip() and not _HEADING.match(line)
                 and not line.lstrip().startswith('|')]
        if lines:
            found.append(' '.join(' '.join(lines).split()))
    return found


def paragraph_with(text: str, *needles: str) -> str:
    """The one paragraph of ``text`` that holds every string of ``needles`` (names or numbers, not sentences)."""
    found = [p for p in paragraphs(text) if all(n in p for n in needles)]
    assert len(found) == 1, f'{len(found)} paragraphs hold all of {needles}'
    return found[0]


def numbers(text: str) -> List[str]:
    """The numbers written in ``text`` as they are written (``+1.5``, ``0.898``, ``5,000``, ``12``)."""
    return re.findall(r'[+-]?\d[\d,]*(?:\.\d+)?', text)


def names_in(text: str, names: Sequence[str]) -> List[str]:
    """Which of ``names`` stand in ``text`` as whole words (``resnet18`` is not in ``resnet18_infodrop``)."""
    return [n for n in names if re.search(rf'(?<![\w.-]){re.escape(n)}(?![\w-])', text)]
