"""Whole-word term matching for lexicons: unsafe-text lists and the audit's caption term counts.

Text is case-folded and cut into words (letters and digits; punctuation, apostrophes and hyphens separate words),
and a term matches only whole words: ``strip`` does not match ``stripe``, and ``police officer`` matches the two
words in a row. Term files ship in ``transforms/data/``; each notes its source and licence.
"""

import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """The case-folded words of ``text``."""
    return _WORD.findall(text.casefold())


class TermMatcher:
    """Finds lexicon terms (single words or phrases) in text; each surface form maps to a canonical term."""

    def __init__(self, forms: Mapping[str, str]):
        self._phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for form, canonical in sorted(forms.items()):
            parts = tuple(words(form))
            if parts:
                self._phrases.setdefault(parts[0], []).append((parts, canonical))
        for options in self._phrases.values():
            options.sort(key=lambda option: -len(option[0]))

    def __len__(self) -> int:
        return sum(len(options) for options in self._phrases.values())

    def find(self, text: str) -> list[str]:
        """Canonical terms found in ``text``, each once, in order of first appearance.

        The longest term starting at a word wins and consumes its words: ``child porn`` is found once, not also
        as ``porn``.
        """
        tokens = words(text)
        found: dict[str, None] = {}
        index = 0
        while index < len(tokens):
            step = 1
            for parts, canonical in self._phrases.get(tokens[index], ()):
                if tuple(tokens[index : index + len(parts)]) == parts:
                    found.setdefault(canonical)
                    step = len(parts)
                    break
            index += step
        return list(found)


def read_term_file(text: str) -> list[str]:
    """Terms of a plain term file: one a line; blank lines and ``#`` comments ignored."""
    terms = []
    for line in text.splitlines():
        term = line.split("#", 1)[0].strip()
        if term:
            terms.append(term)
    return terms


def packaged_text(name: str) -> str:
    """A data file shipped in ``transforms/data/``."""
    return resources.files("transforms").joinpath("data", name).read_text(encoding="utf-8")


def load_term_files(paths: Iterable[str], default: str) -> list[str]:
    """Terms of every file in ``paths``, or of the packaged ``default`` file when ``paths`` is empty."""
    paths = list(paths)
    if not paths:
        return read_term_file(packaged_text(default))
    terms = []
    for path in paths:
        terms += read_term_file(Path(path).read_text(encoding="utf-8"))
    return terms


def load_json_lexicon(path: str, default: str) -> dict:
    """A JSON lexicon from ``path``, or the packaged ``default``; keys starting with ``_`` are notes."""
    text = Path(path).read_text(encoding="utf-8") if path else packaged_text(default)
    return {key: value for key, value in json.loads(text).items() if not key.startswith("_")}
