"""Measures of an annotation against a reference: word errors (for WER) and the words both agree on."""

from collections.abc import Sequence

from backend.data.annotate.sphinx import dictionary_form

# One spelling per word for scoring: an engine writes a word as its language model does (pocketsphinx's en-us
# model says "neighbor" and "okay"), which is no recognition error. Spelling variants only: homophones such as
# "two" and "to" stay different words.
SPELLINGS = {
    "neighbour": "neighbor",
    "colour": "color",
    "favourite": "favorite",
    "centre": "center",
    "theatre": "theater",
    "ok": "okay",
}


def scoring_form(word: str) -> str:
    """The form two transcripts are compared in: the dictionary form, one spelling of each word."""
    form = dictionary_form(word)
    return SPELLINGS.get(form, form)


def _table(ref: Sequence[str], hyp: Sequence[str]) -> list[list[int]]:
    """d[i][j]: edits turning ref[:i] into hyp[:j]."""
    d = [[j for j in range(len(hyp) + 1)]]
    for i, r in enumerate(ref, 1):
        row = [i]
        for j, h in enumerate(hyp, 1):
            row.append(min(d[i - 1][j] + 1, row[j - 1] + 1, d[i - 1][j - 1] + (r != h)))
        d.append(row)
    return d


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Substitutions + deletions + insertions turning `ref` into `hyp` (Levenshtein distance over words)."""
    return _table(ref, hyp)[-1][-1]


def matched_pairs(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int, int]]:
    """(ref index, hyp index) of the words one cheapest edit path keeps unchanged, in order."""
    d = _table(ref, hyp)
    i, j, pairs = len(ref), len(hyp), []
    while i and j:
        if ref[i - 1] == hyp[j - 1] and d[i][j] == d[i - 1][j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        elif d[i][j] == d[i][j - 1] + 1:
            j -= 1
        else:
            i, j = i - 1, j - 1
    return pairs[::-1]
