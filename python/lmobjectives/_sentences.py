"""Sentence splitting for English prose: the rule :class:`~lmobjectives.corpus.TokenCorpus` uses.

:func:`split_sentences` splits free text (``TokenCorpus.from_texts`` documents given as one
string, ``TokenCorpus.from_files`` without ``one_sentence_per_line``) into sentences; the
embedded corpus was split with the same rule when it was extracted
(``tools/embedded_corpus.py``). Pure standard library.
"""

from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "split_paragraphs", "split_sentences"]

#: Words (lowercased, without the final period) after which a period never ends a sentence.
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "e.g",
        "eg",
        "i.e",
        "ie",
        "etc",
        "vs",
        "viz",
        "cf",
        "al",
        "approx",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "no",
        "nos",
        "fig",
        "sec",
        "ch",
        "vol",
        "resp",
    }
)

# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace, and
# then the start of a new sentence (an uppercase letter, a digit, or an opening quote/bracket).
_BOUNDARY = re.compile(r"""[.!?]+["'”’)\]»]*(?=\s+["'“‘(\[«]*[A-Z0-9])""")
_LAST_WORD = re.compile(r"(\S+)$")
_WS = re.compile(r"\s+")


def _is_abbreviation(before: str) -> bool:
    """Whether the text ending just before a ``.`` ends with an abbreviation or an initial."""
    m = _LAST_WORD.search(before)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'“‘([«").lower()
    if word in ABBREVIATIONS:
        return True
    # A single letter ("J. Smith", "e.g" written as "e. g.") is taken as an initial.
    return len(word) == 1 and word.isalpha()


def split_paragraphs(text: str) -> list[str]:
    """Split ``text`` into paragraphs at blank lines; each paragraph's whitespace is collapsed."""
    paragraphs = []
    for raw in re.split(r"\n[ \t\r\f\v]*\n", text):
        para = _WS.sub(" ", raw).strip()
        if para:
            paragraphs.append(para)
    return paragraphs


def split_sentences(text: str) -> list[str]:
    """Split English prose into sentences with a simple, documented rule.

    Paragraphs are separated by blank lines. Within a paragraph, lines are joined with single
    spaces (all whitespace runs collapse to one space). A paragraph is then split after ``.``,
    ``!`` or ``?`` (possibly repeated, possibly followed by closing quotes or brackets) when what
    follows is whitespace and then an uppercase letter, a digit, or an opening quote/bracket
    (optionally followed by an uppercase letter or digit). A ``.`` is not a boundary when the word
    before it is a common abbreviation (see :data:`ABBREVIATIONS`: ``e.g.``, ``i.e.``, ``etc.``,
    ``vs.``, ``Mr.``, ``Dr.`` ...) or a single letter (an initial). Decimals such as ``3.14`` are
    never split because no whitespace follows the period.

    Returns the non-empty sentences, stripped, in order.

    >>> split_sentences("Use e.g. Python 3.14 here. It works! Does it?")
    ['Use e.g. Python 3.14 here.', 'It works!', 'Does it?']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    sentences: list[str] = []
    for para in split_paragraphs(text):
        start = 0
        for m in _BOUNDARY.finditer(para):
            punct = m.group(0)
            single_period = punct.rstrip("\"'”’)]»") == "."
            if single_period and _is_abbreviation(para[start : m.start()]):
                continue
            sentence = para[start : m.end()].strip()
            if sentence:
                sentences.append(sentence)
            start = m.end()
        tail = para[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences
