"""Where a sentence or a clause ends, for every language we speak: the one rule that long-line
chunking (piper) and cue breaking (captions) share.

Punctuation ends sentences in every script, full-width marks included (Chinese and Japanese
text, and Korean written with them). Korean is often written without a full stop at the end
of a spoken sentence, so an eojeol (space-separated word) that ends in a sentence-final verb
ending (-니다, -습니까/-ㅂ니까, polite -요, -죠, plain -다, question -ㄹ까) ends one too.
"""

from __future__ import annotations

SENTENCE_MARKS = ".!?…。！？"
CLAUSE_MARKS = ",;:—–、，；："
CLOSERS = "\"')]}»”’」』"
# Abbreviations whose full stop does not end a sentence (lower case).
NOT_SENTENCE_END = frozenset(("mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.",
                              "no."))

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_FINAL_NONE, _FINAL_RIEUL, _FINAL_BIEUP = 0, 8, 17
# Vowels (medial jamo indexes) after which a final 요 is a noun's syllable (필요 has a final
# consonant; 주요, 수요 end in ㅜ), not the polite ending (가요, 먹어요, 주세요, 뭐요).
_NOT_POLITE_BEFORE_YO = frozenset((13, 17, 18))  # ㅜ ㅠ ㅡ
_POLITE_YO_AFTER_FINAL = frozenset("군걸")  # 그렇군요, 할걸요


def _jamo(syllable: str) -> tuple[int, int] | None:
    """(medial vowel index, final consonant index) of a Hangul syllable, None for others."""
    code = ord(syllable)
    if not _HANGUL_FIRST <= code <= _HANGUL_LAST:
        return None
    offset = code - _HANGUL_FIRST
    return (offset // 28) % 21, offset % 28


def _korean_sentence_ending(body: str) -> bool:
    """Whether a Hangul word without punctuation ends in a sentence-final verb ending."""
    if len(body) < 2 or _jamo(body[-1]) is None:
        return False
    last, before = body[-1], _jamo(body[-2])
    if before is None:
        return False
    vowel, final = before
    if body.endswith(("니다", "죠")):
        return True
    if body.endswith("니까"):  # 합니까, 있습니까; not the connective 가니까 (because)
        return len(body) >= 3 and (body[-3] == "습" or (_jamo(body[-3]) or (0, 0))[1]
                                   == _FINAL_BIEUP)
    if last == "요":
        if final != _FINAL_NONE:
            return body[-2] in _POLITE_YO_AFTER_FINAL
        return vowel not in _NOT_POLITE_BEFORE_YO
    if last == "다":  # 했다, 한다, 있다, 이다; not 보다 (than) or 바다 (sea)
        return final != _FINAL_NONE or body[-2] in "이하되"
    if last == "까":  # 할까, 먹을까
        return final == _FINAL_RIEUL
    return False


def ends_sentence(token: str) -> bool:
    """Whether a whitespace token ends a sentence."""
    body = token.rstrip(CLOSERS)
    if not body:
        return False
    if body[-1] in SENTENCE_MARKS:
        return token.lower() not in NOT_SENTENCE_END
    return _korean_sentence_ending(body)


def ends_clause(token: str) -> bool:
    """Whether a whitespace token ends a clause (and not a sentence)."""
    body = token.rstrip(CLOSERS)
    return bool(body) and body[-1] in CLAUSE_MARKS
