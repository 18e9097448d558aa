r"""Tokenizer and recursive-descent parser of the string filter form.

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | "exists" "(" FIELD ")" | comparison
    comparison := FIELD ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                | FIELD ["not"] "in" list | FIELD "all" list
    list       := "[" value ("," value)* "]"
    value      := STRING | NUMBER | "true" | "false"

Precedence: not > and > or. Strings are JSON strings: double quotes, with the escapes
\" \\ \/ \b \f \n \r \t \uXXXX (surrogate pairs combine).
Errors name the 0-based character position. Nothing is ever `eval`ed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from linr.errors import FilterError
from linr.filters.json_form import FIELD_NAME_RE, MAX_DEPTH
from linr.filters.nodes import (
    All,
    And,
    Eq,
    Exists,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    Scalar,
    value_kind,
)

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<string>")
    """,
    re.VERBOSE,
)

_COMPARISONS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_RESERVED = {"and", "or", "not", "true", "false"}


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "number", "string", "op", "punct" or "end"
    text: str  # source text ("" for end)
    value: Scalar | None
    pos: int

    def show(self) -> str:
        return "end of filter" if self.kind == "end" else repr(self.text)


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_PLAIN_RE = re.compile(r'[^"\\]+')
_HEX4_RE = re.compile(r"[0-9A-Fa-f]{4}")


def _hex4(text: str, i: int) -> int | None:
    """The code unit of a `\\uXXXX` escape at text[i], or None if there is none."""
    if text.startswith("\\u", i) and _HEX4_RE.match(text, i + 2):
        return int(text[i + 2 : i + 6], 16)
    return None


def read_string(text: str, start: int) -> tuple[str, int]:
    """The value of the JSON string literal opened at text[start], and the index past it."""
    out: list[str] = []
    i = start + 1
    while True:
        m = _PLAIN_RE.match(text, i)
        if m:
            out.append(m.group())
            i = m.end()
        if i >= len(text):
            raise FilterError(f"unterminated string starting at position {start}")
        if text[i] == '"':
            return "".join(out), i + 1
        esc = text[i + 1 : i + 2]  # text[i] is a backslash
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
            continue
        code = _hex4(text, i)
        if code is None:
            raise FilterError(f"invalid string escape at position {i}")
        i += 6
        low = _hex4(text, i)
        if 0xD800 <= code < 0xDC00 and low is not None and 0xDC00 <= low < 0xE000:
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)  # a surrogate pair
            i += 6
        out.append(chr(code))


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            hint = " (use '==' for equality)" if text[pos] == "=" else ""
            raise FilterError(f"unexpected character {text[pos]!r} at position {pos}{hint}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "string":
            value, end = read_string(text, pos)
            tokens.append(Token("string", text[pos:end], value, pos))
            pos = end
            continue
        raw = m.group()
        scalar: Scalar | None = None
        if kind == "number":
            scalar = _number(raw, pos)
        elif kind == "name" and raw in ("true", "false"):
            scalar = raw == "true"
        tokens.append(Token(kind, raw, scalar, pos))
        pos = m.end()
    tokens.append(Token("end", "", None, n))
    return tokens


def _number(raw: str, pos: int) -> int | float:
    if not any(c in raw for c in ".eE"):
        try:
            return int(raw)
        except ValueError:  # over Python's int-string limit (4,300 digits)
            raise FilterError(
                f"number at position {pos} has {len(raw)} digits: out of range"
            ) from None
    x = float(raw)
    if not math.isfinite(x):
        raise FilterError(f"number {raw} at position {pos} is out of range")
    return x


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def _error(self, expected: str, tok: Token | None = None) -> FilterError:
        tok = tok or self.tok
        return FilterError(f"expected {expected} at position {tok.pos}, got {tok.show()}")

    def _is_word(self, word: str, offset: int = 0) -> bool:
        t = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return t.kind == "name" and t.text == word

    def _expect_punct(self, p: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != p:
            raise self._error(f"'{p}'")
        return self._next()

    def parse(self) -> FilterNode:
        node = self._or()
        if self.tok.kind != "end":
            raise self._error("'and', 'or' or the end of the filter")
        return node

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"filter is nested deeper than {MAX_DEPTH} levels at position {self.tok.pos}"
            )

    def _or(self) -> FilterNode:
        parts = [self._and()]
        while self._is_word("or"):
            self._next()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _and(self) -> FilterNode:
        parts = [self._unary()]
        while self._is_word("and"):
            self._next()
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _unary(self) -> FilterNode:
        self._enter()
        try:
            if self._is_word("not"):
                self._next()
                return Not(self._unary())
            if self.tok.kind == "punct" and self.tok.text == "(":
                self._next()
                node = self._or()
                self._expect_punct(")")
                return node
            if self._is_word("exists") and self._is_punct_at(1, "("):
                self._next()
                self._next()
                field = self._field()
                self._expect_punct(")")
                return Exists(field)
            return self._comparison()
        finally:
            self.depth -= 1

    def _is_punct_at(self, offset: int, p: str) -> bool:
        t = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return t.kind == "punct" and t.text == p

    def _field(self) -> str:
        t = self.tok
        if t.kind != "name" or t.text in _RESERVED:
            raise self._error("a field name")
        if not FIELD_NAME_RE.match(t.text):
            raise FilterError(f"invalid field name {t.text!r} at position {t.pos} (longer than 64)")
        self._next()
        return t.text

    def _comparison(self) -> FilterNode:
        field = self._field()
        t = self.tok
        if t.kind == "op":
            self._next()
            op = _COMPARISONS[t.text]
            value_tok = self.tok
            value = self._value()
            if op == "eq":
                return Eq(field, value)
            if op == "ne":
                return Not(Eq(field, value))
            if isinstance(value, (bool, str)):
                raise FilterError(
                    f"'{t.text}' needs a number at position {value_tok.pos}, got {value_tok.show()}"
                )
            return Range(field, **{op: value})
        if self._is_word("in"):
            self._next()
            return In(field, self._list())
        if self._is_word("not") and self._is_word("in", 1):
            self._next()
            self._next()
            return Not(In(field, self._list()))
        if self._is_word("all"):
            self._next()
            return All(field, self._list())
        raise self._error(
            f"an operator (==, !=, <, <=, >, >=, in, not in, all) after field '{field}'"
        )

    def _value(self) -> Scalar:
        t = self.tok
        if t.kind in ("string", "number") or (t.kind == "name" and t.text in ("true", "false")):
            self._next()
            assert t.value is not None
            return t.value
        raise self._error("a value (a string in double quotes, a number, true or false)")

    def _list(self) -> tuple[Scalar, ...]:
        start = self._expect_punct("[")
        if self._is_punct_at(0, "]"):
            raise FilterError(f"empty list at position {start.pos}: needs at least one value")
        values = [self._value()]
        kinds = {value_kind(values[0])}
        while self._is_punct_at(0, ","):
            self._next()
            t = self.tok
            v = self._value()
            if value_kind(v) not in kinds:
                raise FilterError(
                    f"list values must all be of one kind: {t.show()} at position {t.pos}"
                )
            values.append(v)
        self._expect_punct("]")
        return tuple(values)


def parse_text(text: str) -> FilterNode:
    """Parse the string form. Raises FilterError naming the position of the problem."""
    return _Parser(text).parse()
