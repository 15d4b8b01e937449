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


class LexiconError(ValueError):
    """A lexicon file that cannot be used; the one-line message names the config key, the file and what to do."""


def read_lexicon(path: str, key: str) -> str:
    """The text of the lexicon file at ``path``, named by config ``key`` (``safety.lexicons``) in errors.

    UTF-8, with or without a byte-order mark.

    Raises:
        LexiconError: The file is missing, a folder, unreadable or not UTF-8.
    """
    where = "a relative path in a config file resolves against the config file's folder"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise LexiconError(f"{key}: {path} does not exist: give an existing file ({where})") from None
    except IsADirectoryError:
        raise LexiconError(f"{key}: {path} is a folder: give the term file inside it") from None
    except OSError as error:
        raise LexiconError(f"{key}: {path} cannot be read ({error.strerror}): make it readable") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LexiconError(
            f"{key}: {path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): save it as "
            "UTF-8, e.g. iconv -f latin1 -t utf-8 OLD > NEW for a Latin-1 file"
        ) from None


def load_term_files(paths: Iterable[str], default: str, key: str = "safety.lexicons") -> list[str]:
    """Terms of every file in ``paths``, or of the packaged ``default`` file when ``paths`` is empty.

    Raises:
        LexiconError: A file cannot be read as UTF-8 text; the message names ``key`` and the file.
    """
    paths = list(paths)
    if not paths:
        return read_term_file(packaged_text(default))
    terms = []
    for path in paths:
        terms += read_term_file(read_lexicon(path, key))
    return terms


def load_json_lexicon(path: str, default: str, key: str = "audit.lexicon") -> dict:
    """A JSON lexicon from ``path``, or the packaged ``default``; keys starting with ``_`` are notes.

    Raises:
        LexiconError: The file cannot be read as UTF-8 text, or is not a JSON object; the message names ``key``,
            the file and, for malformed JSON, the line and column.
    """
    text = read_lexicon(path, key) if path else packaged_text(default)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LexiconError(
            f"{key}: {path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}: fix it "
            f"(the packaged transforms/data/{default} shows the form)"
        ) from None
    if not isinstance(data, dict):
        raise LexiconError(
            f"{key}: {path} holds a JSON {type(data).__name__}, not an object: give an object as the packaged "
            f"transforms/data/{default} does"
        )
    return {name: value for name, value in data.items() if not name.startswith("_")}
