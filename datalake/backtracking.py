r"""Can a dataset pattern make a backtracking regex engine take exponential time?

The Firehose transform (Python's ``re``) and the Glue job (Java's ``java.util.regex``) both
backtrack: on a value that almost matches, a pattern such as ``(?:[a-z0-9]+-?)*`` tries every way
of splitting the value between its repetitions, 2^n of them for n characters. One such value
stalls a transform invocation until it times out, or a Spark task for hours. The producers'
values are untrusted; the pattern is ours, so synth refuses it.

The test is the one for exponential ambiguity of the automaton that a backtracking matcher walks
(Weideman, van der Merwe, Berglund and Watson, "Analyzing matching time behavior of backtracking
regular expression matchers by using ambiguity of NFA", 2016): there is a state from which two
different paths, reading the same text, both come back to it. Each character-matching atom of
the pattern is a state; a transition from one atom to the next counts once for every distinct
way the pattern's structure (its groups, alternatives and repetitions) leads from one to the
other. Exponential ambiguity is then either a transition counted twice inside a cycle, or a cycle
of the pairwise product that holds both a pair of equal states and a pair of different ones.

The pattern is read as written, not through Python's parser, which merges ``(\d|\w)`` into
``[\d\w]`` where Java does not. So the test also refuses a few patterns that both engines happen
to run fast (``(\d|\w)+``: Python merges it, and Java 17 remembers where an unbounded repetition
failed); it does not depend on either engine's optimizations, which bounded counts defeat
(Java takes minutes on ``(?:a|ab?){1,60}``, docs/design-decisions.md).

Counted repetitions of a fixed-width body are spelled out up to 16 (``\d{4}`` is four digits,
read one way); any other count is taken as unbounded: ``(\w+\s?){1,40}`` is as slow as
``(\w+\s?)*`` for the values it can meet. Polynomial backtracking (``\d*\d*`` on a long run of
digits followed by a letter) is found too (:func:`growth`): the dataset file then
needs a ``max_length``, which the transform checks before the pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Characters outside ASCII that stand for the rest of Unicode (the classes are ASCII only).
_OTHER_SCRIPTS = "é\u0660\u4e2d\U0001f600"
_CATEGORIES = {
    "d": lambda c: c.isascii() and c.isdigit(),
    "w": lambda c: c.isascii() and (c.isalnum() or c == "_"),
    "s": lambda c: c in " \t\n\r\f\v",
}
_CHARACTER_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
#: A counted repetition the three engines read alike: ``{n}``, ``{n,}`` or ``{n,m}`` (the dataset
#: file's portability check allows no other ``{``).
COUNTED_REPETITION = re.compile(r"\{(\d+)(,(\d*))?\}")
#: Repetition counts up to this are spelled out as copies of a fixed-width body; others loop.
_SPELLED_OUT = 16
PROBLEM = (
    "one stretch of text can be read by two paths of the pattern under a repetition, so a value "
    "that almost matches can make the transform's (Python) or the job's (Java) regex engine try "
    "exponentially many ways to split it (catastrophic backtracking). Make where each "
    "repetition ends unambiguous: ^[a-z0-9]+(?:-[a-z0-9]+)*$, not ^(?:[a-z0-9]+-?)*$; "
    "[\\d\\w]+, not (\\d|\\w)+"
)

# The pattern as Java reads it, in the portable syntax (datalake.dataset.pattern_portability_problem):
# ("set", negated, items) reads one character, items being ("lit", c), ("range", lo, hi) or
# ("cat", letter of \d \D \w \W \s \S); ("seq", nodes); ("alt", nodes); ("rep", low, high or
# None, node).
Node = tuple[Any, ...]
_NOTHING: Node = ("seq", [])


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def peek(self) -> str:
        return self.text[self.i : self.i + 1]

    def take(self) -> str:
        self.i += 1
        return self.text[self.i - 1]

    def alternation(self) -> Node:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self) -> Node:
        items = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.quantified(self.atom()))
        return ("seq", items)

    def atom(self) -> Node:
        char = self.take()
        if char == "(":
            if self.text.startswith("?:", self.i):
                self.i += 2
            inner = self.alternation()
            self.i += 1  # the )
            return inner
        if char == "[":
            negated = self.peek() == "^"
            self.i += negated
            items = [self.class_item()]  # a ] first is the character itself
            while self.peek() != "]":
                items.append(self.class_item())
            self.i += 1
            return ("set", negated, items)
        if char == ".":  # everything but a newline (the job compiles in UNIX_LINES mode)
            return ("set", True, [("lit", "\n")])
        if char in "^$" or (char == "\\" and self.peek() == "A"):
            self.i += char == "\\"
            return _NOTHING
        return ("set", False, [self.escape() if char == "\\" else ("lit", char)])

    def escape(self) -> Node:
        letter = self.take()
        if letter in "dDwWsS":
            return ("cat", letter)
        if letter == "x":
            self.i += 2
            return ("lit", chr(int(self.text[self.i - 2 : self.i], 16)))
        return ("lit", _CHARACTER_ESCAPES.get(letter, letter))

    def class_character(self) -> Node:
        char = self.take()
        return self.escape() if char == "\\" else ("lit", char)

    def class_item(self) -> Node:
        first = self.class_character()
        if self.peek() == "-" and self.text[self.i + 1 : self.i + 2] not in ("]", ""):
            self.i += 1
            return ("range", first[1], self.class_character()[1])
        return first

    def quantified(self, node: Node) -> Node:
        char = self.peek()
        if char in ("*", "+", "?"):
            self.i += 1
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
        elif count := COUNTED_REPETITION.match(self.text, self.i):
            self.i = count.end()
            low = int(count.group(1))
            high = low if count.group(2) is None else int(count.group(3)) if count.group(3) else None
        else:
            return node
        self.i += self.peek() == "?"  # lazy: the same paths, tried in another order
        return ("rep", low, high, node)


def _width(node: Node) -> tuple[int, float]:
    """The fewest and the most characters ``node`` reads."""
    if node[0] == "set":
        return 1, 1
    if node[0] == "rep":
        low, high = _width(node[3])
        return node[1] * low, high * node[2] if node[2] is not None else float("inf")
    widths = [_width(n) for n in node[1]]
    if node[0] == "seq":
        return sum(w[0] for w in widths), sum(w[1] for w in widths)
    return min(w[0] for w in widths), max(w[1] for w in widths)


def _characters(node: Node) -> set[str]:
    """The characters ``node`` names, with each range end's neighbours."""
    if node[0] == "set":
        named = set()
        for item in node[2]:
            if item[0] == "lit":
                named.add(item[1])
            elif item[0] == "range":
                for end in (ord(item[1]), ord(item[2])):
                    named.update(chr(x) for x in range(max(end - 1, 0), min(end + 2, 0x110000)))
        return named
    if node[0] == "rep":
        return _characters(node[3])
    return set().union(*[_characters(n) for n in node[1]])


def _takes(node: Node, char: str) -> bool:
    """Does the one-character ``node`` (a "set") read ``char``?"""
    found = False
    for item in node[2]:
        if item[0] == "lit":
            found = char == item[1]
        elif item[0] == "range":
            found = item[1] <= char <= item[2]
        else:
            found = _CATEGORIES[item[1].lower()](char) != item[1].isupper()
        if found:
            break
    return found != node[1]


@dataclass
class _Automaton:
    """Thompson's construction of the pattern: empty moves between states, one state pair per atom."""

    alphabet: list[str]
    empty: dict[int, list[int]] = field(default_factory=dict)
    atoms: list[tuple[int, int, int]] = field(default_factory=list)  # (from, characters bitmask, to)
    states: int = 0

    def state(self) -> int:
        self.states += 1
        return self.states - 1

    def link(self, a: int, b: int) -> None:
        self.empty.setdefault(a, []).append(b)

    def build(self, node: Node) -> tuple[int, int]:
        """The first and last states of ``node``, linked by its paths."""
        start, end = self.state(), self.state()
        kind = node[0]
        if kind == "set":
            mask = sum(1 << i for i, c in enumerate(self.alphabet) if _takes(node, c))
            self.atoms.append((start, mask, end))
        elif kind == "seq":
            last = start
            for item in node[1]:
                first, after = self.build(item)
                self.link(last, first)
                last = after
            self.link(last, end)
        elif kind == "alt":
            for branch in node[1]:
                first, last = self.build(branch)
                self.link(start, first)
                self.link(last, end)
        else:
            self.link(self.repeat(start, node[1], node[2], node[3]), end)
        return start, end

    def repeat(self, start: int, low: int, high: int | None, body: Node) -> int:
        r"""The states of ``body{low,high}`` after ``start``; returns its last state.

        A body of fixed width repeated at most :data:`_SPELLED_OUT` times, and any body made
        optional, is spelled out as the matcher counts: ``low`` copies, then optional copies
        nested in one another, so each count is read one way only. Any other repetition loops:
        ``(\w+\s?){1,40}`` is as slow as with no bound."""
        fewest, most = _width(body)
        if high is not None and (high <= 1 or (high <= _SPELLED_OUT and fewest == most)):
            end, skips = start, []
            for copy in range(high):
                first, last = self.build(body)
                self.link(end, first)
                if copy >= low:
                    skips.append(end)
                end = last
            for state in skips:
                self.link(state, end)
            return end
        first, last = self.build(body)
        done = self.state()
        self.link(start, first)
        self.link(last, first)
        self.link(last, done)
        if low == 0:
            self.link(start, done)
        return done

    def ways(self, source: int) -> dict[int, int]:
        """For each state, how many different empty paths lead to it from ``source`` (up to 2)."""
        counts: dict[int, int] = {}
        stack = [(source, frozenset([source]))]
        while stack:
            state, seen = stack.pop()
            for nxt in self.empty.get(state, ()):
                if nxt in seen:
                    continue
                counts[nxt] = counts.get(nxt, 0) + 1
                if counts[nxt] <= 2:
                    stack.append((nxt, seen | {nxt}))
        return counts


def _components(nodes: list[Any], edges: dict[Any, list[Any]]) -> dict[Any, int]:
    """Strongly connected components (Tarjan's algorithm, iterative): node -> component number."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    on_stack: set[Any] = set()
    stack: list[Any] = []
    component: dict[Any, int] = {}
    found = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                found += 1
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = found
                    if member == node:
                        break
    return component


def _positions(pattern: str) -> tuple[list[int], dict[int, list[tuple[int, int]]]]:
    """Each atom's characters (a bitmask), and atom -> [(next atom, how many ways)]; an atom
    that takes no character leads nowhere and is left out."""
    tree = _Parser(pattern).alternation()
    alphabet = {chr(i) for i in range(128)} | set(_OTHER_SCRIPTS) | _characters(tree)
    automaton = _Automaton(sorted(alphabet))
    automaton.build(tree)
    atoms = automaton.atoms
    follows: dict[int, list[tuple[int, int]]] = {}
    for i, (_, mask, end) in enumerate(atoms):
        if not mask:
            continue
        reach = automaton.ways(end)
        follows[i] = [(j, reach[a]) for j, (a, m, _) in enumerate(atoms) if m and a in reach]
    return [mask for _, mask, _ in atoms], follows


#: States of the triple product :func:`growth` walks, at most, before it answers "unknown".
_TRIPLE_BUDGET = 200_000


def growth(pattern: str) -> str:
    r"""How the matchers' work on a value that almost matches can grow with the value's length.

    ``"exponential"`` (:data:`PROBLEM`): a transition counted twice inside a cycle, or a cycle
    of the pairwise product through both a pair of equal atoms and a pair of different ones.
    ``"polynomial"``: two different atoms p and q, each on a cycle, and one text that leads from
    p back to p, from p to q and from q back to q (``\d+\d+`` on a run of digits and a letter
    tries every split point: n^2 steps, a hang for a value of a megabyte, harmless for one of a
    hundred characters). ``"unknown"``: the pattern is too large to judge within
    :data:`_TRIPLE_BUDGET` steps. ``"linear"`` otherwise.

    ``pattern`` must be written in the portable syntax and compile (the dataset file's checks
    before this one).
    """
    masks, follows = _positions(pattern)
    plain = {i: [j for j, _ in nxt] for i, nxt in follows.items()}
    single = _components(list(plain), plain)
    if any(n > 1 and single[i] == single[j] for i, nxt in follows.items() for j, n in nxt):
        return "exponential"
    pairs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, nxt_i in plain.items():
        for j, nxt_j in plain.items():
            pairs[(i, j)] = [(k, m) for k in nxt_i for m in nxt_j if masks[k] & masks[m]]
    product = _components(list(pairs), pairs)
    equal = {product[(i, i)] for i in plain}
    if any(i != j and product[(i, j)] in equal for i, j in pairs):
        return "exponential"
    # Polynomial: the first and third of the three paths read the same text from (p, q) back to
    # (p, q), so that pair lies on a cycle of the pairwise product, and every pair the two paths
    # pass through stays in its component: that prunes the triple product to a few states.
    cyclic = {product[a] for a, nxt in pairs.items() for b in nxt if product[b] == product[a]}
    looped = [i for i in plain if any(single[i] == single[j] for j in plain[i])]
    explored = 0
    for p in looped:
        for q in looped:
            if q == p or product[(p, q)] not in cyclic:
                continue
            home, start, goal = product[(p, q)], (p, p, q), (p, q, q)
            seen, todo = {start}, [start]
            while todo:
                a, b, c = todo.pop()
                for x in plain[a]:
                    for z in plain[c]:
                        if not masks[x] & masks[z] or product[(x, z)] != home:
                            continue
                        for y in plain[b]:
                            if masks[x] & masks[y] & masks[z] and (x, y, z) not in seen:
                                if (x, y, z) == goal:
                                    return "polynomial"
                                seen.add((x, y, z))
                                todo.append((x, y, z))
                explored += 1
                if explored > _TRIPLE_BUDGET:
                    return "unknown"
    return "linear"
