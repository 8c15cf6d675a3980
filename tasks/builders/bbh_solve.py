"""BBH items from the prompts BIG-bench's generator tasks pose, with targets worked out here.

The generators never expose their answers (they score the model internally), so each target
is computed by a small evaluator of our own, never by ``eval``; the tests check them against
Python's own evaluation. Each function takes one recorded prompt and returns ``(input,
target)`` in BBH's format, or raises ValueError when the prompt is not of the expected form.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BOOL_TOKENS = {"True", "False", "and", "or", "not", "(", ")"}


class _Tokens:
    def __init__(self, tokens: list[str], what: str) -> None:
        self.tokens, self.pos, self.what = tokens, 0, what

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"malformed {self.what}: expected {expected or 'a token'} at position {self.pos}")
        self.pos += 1
        return token

    def chain(self, operator: str, operand: Callable[[], bool], combine: Callable[[bool, bool], bool]) -> bool:
        """``operand (operator operand)*`` folded from the left with ``combine`` (every operand is read)."""
        value = operand()
        while self.peek() == operator:
            self.take()
            value = combine(value, operand())
        return value

    def done(self) -> None:
        if self.peek() is not None:
            raise ValueError(f"malformed {self.what}: unexpected {self.peek()!r} at position {self.pos}")


def evaluate_boolean(expression: str) -> bool:
    """Python's semantics for True/False/and/or/not/parentheses (``not`` > ``and`` > ``or``)."""
    tokens = expression.split()
    if not tokens or not set(tokens) <= _BOOL_TOKENS:
        raise ValueError(f"not a Boolean expression: {expression!r}")
    stream = _Tokens(tokens, "Boolean expression")

    def disjunction() -> bool:
        return stream.chain("or", conjunction, lambda a, b: a or b)

    def conjunction() -> bool:
        return stream.chain("and", negation, lambda a, b: a and b)

    def negation() -> bool:
        if stream.peek() == "not":
            stream.take()
            return not negation()
        if stream.peek() == "(":
            stream.take()
            value = disjunction()
            stream.take(")")
            return value
        token = stream.take()
        if token not in ("True", "False"):
            raise ValueError(f"malformed Boolean expression: {token!r} where a constant belongs")
        return token == "True"

    value = disjunction()
    stream.done()
    return value


def evaluate_arithmetic(expression: str) -> int:
    """Integer ``+ - *`` with parentheses and unary minus, with Python's precedence."""
    tokens = re.findall(r"\d+|[-+*()]|\S", expression)
    if not tokens or any(not (t.isdigit() or t in "+-*()") for t in tokens):
        raise ValueError(f"not an integer expression: {expression!r}")
    stream = _Tokens(tokens, "arithmetic expression")

    def total() -> int:
        value = product()
        while stream.peek() in ("+", "-"):
            op = stream.take()
            value = value + product() if op == "+" else value - product()
        return value

    def product() -> int:
        value = factor()
        while stream.peek() == "*":
            stream.take()
            value *= factor()
        return value

    def factor() -> int:
        token = stream.take()
        if token in ("-", "+"):
            return -factor() if token == "-" else factor()
        if token == "(":
            value = total()
            stream.take(")")
            return value
        if not token.isdigit():
            raise ValueError(f"malformed arithmetic expression: {token!r} where a number belongs")
        return int(token)

    value = total()
    stream.done()
    return value


_CLAIM = re.compile(r"(\w+) says (\w+) (tells the truth|lies)")
_FACT = re.compile(r"(\w+) (tells the truth|lies)")
_QUESTION = re.compile(r"Does (\w+) tell the truth\?")


def solve_web_of_lies(question: str) -> bool:
    """Whether the person asked about tells the truth, following who vouches for whom."""
    sentences = re.findall(r"[^.?]+[.?]", question)
    if len(sentences) < 2 or "".join(sentences).replace(" ", "") != question.replace(" ", ""):
        raise ValueError(f"not a web-of-lies question: {question!r}")
    honest: dict[str, bool] = {}
    first = _FACT.fullmatch(sentences[0].strip().rstrip("."))
    if first is None:
        raise ValueError(f"web of lies: the first sentence states no fact: {sentences[0]!r}")
    honest[first.group(1)] = first.group(2) == "tells the truth"
    for sentence in sentences[1:-1]:
        claim = _CLAIM.fullmatch(sentence.strip().rstrip("."))
        if claim is None or claim.group(2) not in honest:
            raise ValueError(f"web of lies: cannot follow {sentence.strip()!r}")
        speaker, subject, says = claim.groups()
        honest[speaker] = honest[subject] == (says == "tells the truth")
    asked = _QUESTION.fullmatch(sentences[-1].strip())
    if asked is None or asked.group(1) not in honest:
        raise ValueError(f"web of lies: the last sentence asks about nobody known: {sentences[-1]!r}")
    return honest[asked.group(1)]


def boolean_item(prompt: str) -> tuple[str, str]:
    """BBH boolean_expressions: ``"<expression> is"`` -> ``"True"`` / ``"False"``."""
    text = prompt.strip()
    if not text.endswith(" is"):
        raise ValueError(f"boolean_expressions prompt does not end with ' is': {prompt!r}")
    return text, str(evaluate_boolean(text[: -len(" is")]))


def arithmetic_item(prompt: str) -> tuple[str, str]:
    """BBH multistep_arithmetic_two: ``"<expression> ="`` -> the integer value."""
    text = prompt.strip()
    if not text.endswith(" ="):
        raise ValueError(f"multistep_arithmetic prompt does not end with ' =': {prompt!r}")
    return text, str(evaluate_arithmetic(text[: -len(" =")]))


def web_of_lies_item(prompt: str) -> tuple[str, str]:
    """BBH web_of_lies: ``"Question: <sentences> Does X tell the truth?"`` -> ``"Yes"`` / ``"No"``."""
    match = re.fullmatch(r"Question: (.*)\nAnswer:", prompt.strip(), flags=re.S)
    if match is None:
        raise ValueError(f"web_of_lies prompt is not 'Question: ...\\nAnswer:': {prompt!r}")
    return f"Question: {match.group(1)}", "Yes" if solve_web_of_lies(match.group(1)) else "No"


SOLVERS: dict[str, Callable[[str], tuple[str, str]]] = {
    "boolean_expressions": boolean_item,
    "multistep_arithmetic_two": arithmetic_item,
    "web_of_lies": web_of_lies_item,
}
