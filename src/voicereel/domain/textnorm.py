"""Text normalisation: written English to speakable words, with a map back to the original.

The engine speaks `Normalized.spoken_words` and times each of them; captions show the customer's
`original_words`, each timed over the spoken tokens it became (`project_spans`). Every original
word turns into a contiguous, possibly empty, run of spoken tokens, in order, so the map is a
list of half-open ranges that tile the spoken words.

Choices a reader might look for:

- Numbers are read the American way without "and": 1234 -> "one thousand two hundred thirty four".
- A time on the full hour without am/pm is "o'clock": 12:00 -> "twelve o'clock", 3:00 pm ->
  "three p m"; am/pm are spoken letter by letter ("a m") so an engine never reads the verb "am".
- Day-first dates keep their written order, since original words cannot be reordered:
  "5 January 2024" -> "the fifth of January twenty twenty four".
- Words that need no rewriting are kept verbatim, including their case.
- Punctuation around a word stays attached to its spoken tokens ("$5." -> "five dollars.") so
  the engine keeps the prosody; a token of punctuation alone lends its pause marks to the previous
  spoken word and maps to an empty range. Symbols that cannot be spoken (emoji) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicereel.domain import textnorm_ko
from voicereel.errors import SynthesisFailed


@dataclass(frozen=True)
class Normalized:
    """A line as written (`original_words`) and as spoken, with `word_map[i]` the half-open range
    of `spoken_words` that original word i became."""

    original_words: list[str]
    spoken_words: list[str]
    word_map: list[tuple[int, int]]

    @property
    def spoken_text(self) -> str:
        """The text to send to the engine."""
        return " ".join(self.spoken_words)

    def spoken_forms(self) -> list[str | None]:
        """For each original word, what it was spoken as where that differs from it."""
        forms: list[str | None] = []
        for word, (start, end) in zip(self.original_words, self.word_map, strict=True):
            said = " ".join(self.spoken_words[start:end])
            forms.append(None if said == word else said)
        return forms


# --- numbers -------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion",
           "sextillion", "septillion", "octillion", "nonillion", "decillion"]
# Longer digit strings are identifiers, not quantities, and int() refuses very long strings.
_MAX_CARDINAL_DIGITS = 3 * len(_SCALES)
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest:
        words.append(_ONES[rest])
    return words


def _cardinal(n: int) -> list[str]:
    if n == 0:
        return ["zero"]
    groups: list[int] = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    words: list[str] = []
    for scale in reversed(range(len(groups))):
        if groups[scale]:
            words += _below_thousand(groups[scale])
            if scale:
                words.append(_SCALES[scale])
    return words


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return [*words[:-1], last]


def _plural(words: list[str]) -> list[str]:
    last = words[-1]
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last == "six" else "s")
    return [*words[:-1], last]


def _digits(s: str) -> list[str]:
    return [_ONES[ord(c) - 48] for c in s if "0" <= c <= "9"]


def _integer(s: str) -> list[str]:
    """Words for an unsigned ASCII integer string, commas allowed as thousands separators."""
    s = s.replace(",", "")
    if not s:
        return []
    if (len(s) > 1 and s[0] == "0") or len(s) > _MAX_CARDINAL_DIGITS:
        return _digits(s)
    return _cardinal(int(s))


def _number(int_part: str, frac: str | None = None) -> list[str]:
    words = _integer(int_part)
    if frac:
        words += ["point", *_digits(frac)]
    return words


def _year(y: int) -> list[str]:
    if 2000 <= y <= 2009 or not 1000 <= y <= 9999:
        return _cardinal(y)
    high, low = divmod(y, 100)
    if low == 0:
        return [*_cardinal(high), "hundred"]
    if low < 10:
        return [*_cardinal(high), "oh", _ONES[low]]
    return [*_cardinal(high), *_cardinal(low)]


def _is_year(s: str) -> bool:
    return len(s) == 4 and s.isascii() and s.isdigit() and 1100 <= int(s) <= 2099


# --- vocabularies --------------------------------------------------------------------------

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_MONTH_ABBR = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8, "Sep": 9,
               "Sept": 9, "Oct": 10, "Nov": 11, "Dec": 12}
_SCALE_WORDS = {"thousand", "million", "billion", "trillion"}
_SCALE_SUFFIX = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion",
                 "t": "trillion", "tn": "trillion"}
# symbol: (singular, plural, sub-unit singular, sub-unit plural)
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
               "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"),
               "¥": ("yen", "yen", "", "")}
_SYMBOLS = {"&": ["and"], "+": ["plus"], "@": ["at"], "=": ["equals"], "%": ["percent"],
            "#": ["number"], "×": ["times"], "÷": ["divided", "by"], "°": ["degrees"],
            "~": ["approximately"], "<": ["less", "than"], ">": ["greater", "than"],
            "±": ["plus", "or", "minus"]}
# Case-sensitive so that "ms" (milliseconds) and "Ms." (the title) do not collide.
_UNITS = {"kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram",
          "milligrams"), "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
          "mm": ("millimeter", "millimeters"), "ml": ("milliliter", "milliliters"),
          "mph": ("mile per hour", "miles per hour"), "kph": ("kilometer per hour",
          "kilometers per hour"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
          "ft": ("foot", "feet"), "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte",
          "megabytes"), "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
          "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz",
          "megahertz"), "GHz": ("gigahertz", "gigahertz"), "ms": ("millisecond",
          "milliseconds")}
# Nouns after which a four-digit number is a quantity rather than a year.
_QUANTITY_NOUNS = {
    "dollars", "euros", "pounds", "cents", "pence", "yen", "usd", "eur", "gbp", "people",
    "persons", "users", "customers", "employees", "items", "units", "times", "words", "pages",
    "miles", "km", "kilometers", "kilometres", "meters", "metres", "feet", "ft", "kg", "grams",
    "kilograms", "lbs", "calories", "points", "votes", "hours", "minutes", "seconds", "days",
    "weeks", "months", "years", "tons", "tonnes", "liters", "litres", "bytes", "rows", "lines",
    "files", "records", "samples", "steps", "copies", "members", "students", "cars",
}
_YEAR_CUES = {"in", "since", "year", "until", "by", "from", "circa"}
_AMPM = {"am": ["a", "m"], "a.m": ["a", "m"], "pm": ["p", "m"], "p.m": ["p", "m"]}

# Keyed by the lowercase abbreviation without its final period.
_ABBREVIATIONS: dict[str, list[str]] = {
    "mr": ["mister"], "mrs": ["missus"], "ms": ["miz"], "dr": ["doctor"], "prof": ["professor"],
    "capt": ["captain"], "sgt": ["sergeant"], "mt": ["mount"], "jr": ["junior"],
    "sr": ["senior"], "inc": ["incorporated"], "ltd": ["limited"], "dept": ["department"],
    "ave": ["avenue"], "blvd": ["boulevard"], "etc": ["et", "cetera"], "vs": ["versus"],
    "e.g": ["for", "example"], "i.e": ["that", "is"], "approx": ["approximately"],
}
# Titles precede a name, so their period never ends a sentence.
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "capt", "sgt", "mt"}
# Lowercase "ms", "sr" or "ave" are other words; these only count when capitalised.
_NEEDS_CAPITAL = _TITLES | {"jr", "sr", "inc", "ltd", "dept", "ave", "blvd"}
# A period after these may double as the full stop when a capitalised word follows.
_MAY_END_SENTENCE = {"jr", "sr", "inc", "ltd", "dept", "ave", "blvd", "etc"}
# Safe to expand without their period.
_BARE_OK = {"mr", "mrs", "dr", "vs", "etc"}
# Words before "Dr." that make it a title after all ("The Dr. said"), not a street name.
_DETERMINERS = {"the", "a", "an", "my", "our", "your", "his", "her", "their", "this", "that"}

_LEAD = frozenset("\"'([{“‘«¿¡")
_TRAIL = frozenset(".,;:!?\"')]}”’»…")
_PAUSE_MARKS = ".,;:!?…"
_DASHES = "-–—"

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_SIGN = r"(?P<sign>[-−]?)"
_PLAIN_RE = re.compile(rf"{_SIGN}(?P<int>{_NUM})(?:\.(?P<frac>[0-9]+))?")
_DECIMAL_ONLY_RE = re.compile(r"\.(?P<frac>[0-9]+)")
_CURRENCY_RE = re.compile(
    rf"{_SIGN}(?P<sym>[$€£¥])(?P<int>{_NUM})(?:\.(?P<frac>[0-9]+))?(?P<scale>(?i:bn|tn|[kmbt]))?")
_CURRENCY_AFTER_RE = re.compile(rf"{_SIGN}(?P<int>{_NUM})(?:\.(?P<frac>[0-9]+))?(?P<sym>[€£¥$])")
_PERCENT_RE = re.compile(rf"{_SIGN}(?P<int>{_NUM})(?:\.(?P<frac>[0-9]+))?%")
_ORDINAL_RE = re.compile(r"(?P<int>[0-9]{1,30})(?i:st|nd|rd|th)")
_DECADE_RE = re.compile(r"(?P<int>[0-9]{1,3}0)'?s")
_TIME_RE = re.compile(r"(?P<h>[0-9]{1,2})(?::(?P<m>[0-9]{2}))?(?P<ampm>(?i:[ap]\.?m))?")
_ISO_DATE_RE = re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})")
_US_DATE_RE = re.compile(r"(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})/(?P<y>[0-9]{4})")
_PHONE_RE = re.compile(r"\+?[0-9]+(?:-[0-9]+){2,}|[0-9]{3}-[0-9]{4}")
_RANGE_RE = re.compile(
    r"(?P<sym1>[$€£]?)(?P<a>[0-9]+(?:\.[0-9]+)?)[-–](?P<sym2>[$€£]?)(?P<b>[0-9]+(?:\.[0-9]+)?)"
    r"(?P<pct>%?)")
_FRACTION_RE = re.compile(r"(?P<n>[0-9]{1,3})/(?P<d>[0-9]{1,3})")
_UNIT_RE = re.compile(rf"{_SIGN}(?P<int>{_NUM})(?:\.(?P<frac>[0-9]+))?(?P<unit>[A-Za-z]+)")
_DAY_RE = re.compile(r"(?P<int>[0-9]{1,2})(?i:st|nd|rd|th)?")
_HAS_DIGIT_RE = re.compile(r"[0-9]")
_FALLBACK_PIECE_RE = re.compile(r"[0-9]+|[^\W\d_]+|.", re.DOTALL)
_URL_SPLIT_RE = re.compile(r"([./@:_\-?=&])")
_URL_SEPARATORS = {".": ["dot"], "/": ["slash"], "@": ["at"], ":": ["colon"],
                   "_": ["underscore"], "-": ["dash"], "?": ["question", "mark"],
                   "=": ["equals"], "&": ["and"]}


def _language(lang: str) -> str:
    """The primary subtag of a language tag: ko-KR -> ko."""
    return re.split(r"[-_]", (lang or "").strip(), maxsplit=1)[0].lower()


def _is_english(lang: str) -> bool:
    return _language(lang) == "en"


def _split_punct(token: str) -> tuple[str, str, str]:
    i, j = 0, len(token)
    while i < j and token[i] in _LEAD:
        i += 1
    while j > i and token[j - 1] in _TRAIL:
        j -= 1
    return token[:i], token[i:j], token[j:]


def _capitalised(core: str | None) -> bool:
    return bool(core and core[0].isupper())


def _month_number(core: str | None) -> int | None:
    """The month a capitalised month name or abbreviation stands for."""
    if not core or not core[0].isupper():
        return None
    title = core.title()
    if title in _MONTHS:
        return _MONTHS.index(title) + 1
    return _MONTH_ABBR.get(title)


def _currency_words(sign: str, sym: str, int_s: str, frac: str | None, scale: str | None,
                    with_unit: bool) -> list[str]:
    one, many, sub_one, sub_many = _CURRENCIES[sym]
    words = ["minus"] if sign else []
    if scale or not with_unit or not sub_one or frac is None or len(frac) != 2:
        words += _number(int_s, frac)
        if scale:
            words.append(_SCALE_SUFFIX[scale.lower()])
        if with_unit:
            words.append(one if not (frac or scale) and int_s == "1" else many)
        return words
    major, minor = int_s.replace(",", ""), int(frac)
    if major.strip("0") or not minor:
        words += [*_number(int_s), one if major == "1" else many]
    if minor:
        words += [*_cardinal(minor), sub_one if minor == 1 else sub_many]
    return words


def _time_words(hour: int, minute: int, has_ampm: bool) -> list[str] | None:
    if hour > 23 or minute > 59:
        return None
    words = ["twelve"] if hour == 0 and has_ampm else _cardinal(hour)
    if minute == 0:
        return words if has_ampm else [*words, "o'clock"]
    if minute < 10:
        return [*words, "oh", _ONES[minute]]
    return [*words, *_cardinal(minute)]


def _date_words(month: int, day: int, year: str) -> list[str] | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return [_MONTHS[month - 1], *_ordinal(_cardinal(day)), *_year(int(year))]


def _phone(core: str) -> list[str]:
    """Digit by digit, with a comma between groups so the engine pauses as people do."""
    groups = [_digits(group) for group in core.lstrip("+").split("-")]
    words = ["plus"] if core[0] == "+" else []
    for group in groups[:-1]:
        words += [*group[:-1], group[-1] + ","]
    return words + groups[-1]


def _spell_address(core: str) -> list[str]:
    """URLs and e-mail addresses, piece by piece ("example dot com")."""
    rest = re.sub(r"^(?i:https?://)", "", core)
    words: list[str] = []
    for piece in _URL_SPLIT_RE.split(rest):
        if piece in _URL_SEPARATORS:
            words += _URL_SEPARATORS[piece]
        elif piece:
            words += _fallback(piece) if _HAS_DIGIT_RE.search(piece) else [piece]
    return words


def _fallback(core: str) -> list[str]:
    """Anything else with digits in it ("COVID-19", "v2.0", "#1"): digit runs as numbers."""
    pieces = _FALLBACK_PIECE_RE.findall(core)
    words: list[str] = []
    for k, piece in enumerate(pieces):
        if "0" <= piece[0] <= "9":
            after_point = k >= 2 and pieces[k - 1] == "." and pieces[k - 2][0] in "0123456789"
            words += _digits(piece) if after_point else _integer(piece)
        elif piece == ".":
            between_digits = (0 < k < len(pieces) - 1 and pieces[k - 1][0] in "0123456789"
                              and pieces[k + 1][0] in "0123456789")
            if between_digits:
                words.append("point")
        elif piece in _SYMBOLS:
            words += _SYMBOLS[piece]
        elif piece.isalnum():
            words.append(piece)
    return words


class _Line:
    """One English line being converted, token by token, with its neighbours as context."""

    def __init__(self, tokens: list[str]) -> None:
        self.parts = [_split_punct(t) for t in tokens]
        self.cores = [core for _, core, _ in self.parts]

    def core(self, i: int) -> str | None:
        return self.cores[i] if 0 <= i < len(self.cores) else None

    def trail(self, i: int) -> str:
        return self.parts[i][2] if 0 <= i < len(self.parts) else ""

    def is_last(self, i: int) -> bool:
        return i == len(self.cores) - 1

    def drop_period(self, i: int, keep_if_capital_follows: bool) -> str:
        """The token's trail without the abbreviation's own period, unless that period also
        ends the sentence."""
        trail = self.trail(i)
        if not trail.startswith("."):
            return trail
        ends = self.is_last(i) or (keep_if_capital_follows and _capitalised(self.core(i + 1)))
        return trail if ends else trail[1:]

    def convert(self, i: int) -> tuple[list[str], str]:
        """The spoken words for token i's core, and the trailing punctuation to attach."""
        core, trail = self.cores[i], self.trail(i)
        if not core:
            return [], trail
        for rule in (self._scale_after_currency, self._address, self._abbreviation,
                     self._month_abbreviation, self._ampm, self._detached_unit):
            result = rule(i, core)
            if result is not None:
                return result
        if not _HAS_DIGIT_RE.search(core):
            return self._wordlike(core), trail
        if core.lower().endswith(("a.m", "p.m")):
            # "7p.m." lost its own period to the trail: keep it only as a full stop.
            trail = self.drop_period(i, True)
        return self._numeric(i, core), trail

    # --- rules on words; each returns None when it does not apply -------------------------

    def _scale_after_currency(self, i: int, core: str) -> tuple[list[str], str] | None:
        prev = self.core(i - 1) or ""
        if core.lower() not in _SCALE_WORDS or self.trail(i - 1):
            return None
        m = _CURRENCY_RE.fullmatch(prev) or _CURRENCY_AFTER_RE.fullmatch(prev)
        if not m or m.groupdict().get("scale"):
            return None
        return [core, _CURRENCIES[m["sym"]][1]], self.trail(i)

    def _address(self, i: int, core: str) -> tuple[list[str], str] | None:
        lower = core.lower()
        is_email = "@" in core and "." in core.rpartition("@")[2] and not core.startswith("@")
        if not (is_email or lower.startswith(("http://", "https://", "www."))):
            return None
        return _spell_address(core), self.trail(i)

    def _abbreviation(self, i: int, core: str) -> tuple[list[str], str] | None:
        key, trail = core.lower(), self.trail(i)
        has_period = trail.startswith(".")
        nxt, prev = self.core(i + 1), self.core(i - 1)
        if key == "no" and has_period and nxt and "0" <= nxt[0] <= "9":
            return ["number"], self.drop_period(i, False)
        if key == "st" and core[0] == "S":
            if _capitalised(nxt):
                return ["saint"], trail[1:] if has_period else trail
            if has_period or _capitalised(prev):
                return ["street"], self.drop_period(i, True)
            return None
        if key not in _ABBREVIATIONS or not (has_period or key in _BARE_OK):
            return None
        if key in _NEEDS_CAPITAL and not core[0].isupper():
            return None
        if (key == "dr" and has_period and _capitalised(prev) and not _capitalised(nxt)
                and (prev or "").lower() not in _DETERMINERS):
            return ["drive"], self.drop_period(i, True)
        words = list(_ABBREVIATIONS[key])
        if key in _TITLES:
            return words, trail[1:] if has_period else trail
        return words, self.drop_period(i, key in _MAY_END_SENTENCE)

    def _month_abbreviation(self, i: int, core: str) -> tuple[list[str], str] | None:
        month = _MONTH_ABBR.get(core)
        nxt = self.core(i + 1) or ""
        if month is None or not (_DAY_RE.fullmatch(nxt) or _is_year(nxt)):
            return None
        trail = self.trail(i)
        return [_MONTHS[month - 1]], trail[1:] if trail.startswith(".") else trail

    def _ampm(self, i: int, core: str) -> tuple[list[str], str] | None:
        time = _TIME_RE.fullmatch(self.core(i - 1) or "")
        if core.lower() not in _AMPM or not time or time["ampm"]:
            return None
        return list(_AMPM[core.lower()]), self.drop_period(i, True)

    def _detached_unit(self, i: int, core: str) -> tuple[list[str], str] | None:
        prev = self.core(i - 1)
        if core not in _UNITS or not prev or not _PLAIN_RE.fullmatch(prev):
            return None
        one, many = _UNITS[core]
        return (one if prev == "1" else many).split(), self.trail(i)

    @staticmethod
    def _wordlike(core: str) -> list[str]:
        if core in _SYMBOLS:
            return list(_SYMBOLS[core])
        if "&" in core:
            parts = core.split("&")
            if all(p and p.isalnum() for p in parts):
                words = [parts[0]]
                for part in parts[1:]:
                    words += ["and", part]
                return words
        if any(c.isalnum() for c in core):
            return [core]
        return []

    # --- rules on tokens with digits ------------------------------------------------------

    def _numeric(self, i: int, core: str) -> list[str]:
        prev, nxt = self.core(i - 1), self.core(i + 1)
        if m := _CURRENCY_RE.fullmatch(core) or _CURRENCY_AFTER_RE.fullmatch(core):
            defer = (not m.groupdict().get("scale") and not self.trail(i)
                     and (nxt or "").lower() in _SCALE_WORDS)
            return _currency_words(m["sign"], m["sym"], m["int"], m["frac"],
                                   m.groupdict().get("scale"), not defer)
        if m := _PERCENT_RE.fullmatch(core):
            return [*(["minus"] if m["sign"] else []), *_number(m["int"], m["frac"]), "percent"]
        if m := _ORDINAL_RE.fullmatch(core):
            words = _ordinal(_integer(m["int"]))
            return self._day_first(i, m["int"], words)
        if m := _DECADE_RE.fullmatch(core):
            value = m["int"]
            return _plural(_year(int(value)) if _is_year(value) else _integer(value))
        if (m := _TIME_RE.fullmatch(core)) and (m["m"] is not None or m["ampm"]):
            has_ampm = bool(m["ampm"]) or (nxt or "").lower() in _AMPM
            time = _time_words(int(m["h"]), int(m["m"] or 0), has_ampm)
            if time is not None:
                return [*time, *_AMPM.get((m["ampm"] or "").lower(), [])]
        if m := _ISO_DATE_RE.fullmatch(core):
            date = _date_words(int(m["m"]), int(m["d"]), m["y"])
            if date:
                return date
        if m := _US_DATE_RE.fullmatch(core):
            date = _date_words(int(m["m"]), int(m["d"]), m["y"])
            if date:
                return date
        if _PHONE_RE.fullmatch(core):
            return _phone(core)
        if (m := _RANGE_RE.fullmatch(core)) and (spoken_range := self._range(m)):
            return spoken_range
        if m := _FRACTION_RE.fullmatch(core):
            return self._fraction(m["n"], m["d"])
        if (m := _UNIT_RE.fullmatch(core)) and m["unit"] in _UNITS:
            one, many = _UNITS[m["unit"]]
            unit = one if m["int"] == "1" and not m["frac"] else many
            return [*(["minus"] if m["sign"] else []), *_number(m["int"], m["frac"]),
                    *unit.split()]
        if m := _PLAIN_RE.fullmatch(core):
            return self._plain(i, m, prev, nxt)
        if m := _DECIMAL_ONLY_RE.fullmatch(core):
            return ["point", *_digits(m["frac"])]
        return _fallback(core)

    def _day_first(self, i: int, digits: str, ordinal: list[str]) -> list[str]:
        """A day before a month name reads "the fifth of"."""
        is_day = len(digits) <= 2 and 1 <= int(digits) <= 31
        if is_day and not self.trail(i) and _month_number(self.core(i + 1)):
            return ["the", *ordinal, "of"]
        return ordinal

    def _plain(self, i: int, m: re.Match[str], prev: str | None, nxt: str | None) -> list[str]:
        int_s, frac = m["int"], m["frac"]
        if m["sign"]:
            return ["minus", *_number(int_s, frac)]
        if frac is None and len(int_s) <= 2 and 1 <= int(int_s) <= 31:
            day = _ordinal(_cardinal(int(int_s)))
            if _month_number(prev) and self.trail(i - 1) in ("", "."):
                return day
            day_first = self._day_first(i, int_s, day)
            if day_first[0] == "the":
                return day_first
        if frac is None and _is_year(int_s):
            cue = (prev or "").lower() in _YEAR_CUES
            quantity = (nxt or "").lower() in _QUANTITY_NOUNS or (nxt or "") in _UNITS
            if cue or not quantity:
                return _year(int(int_s))
        return _number(int_s, frac)

    @staticmethod
    def _range(m: re.Match[str]) -> list[str] | None:
        a, b = m["a"], m["b"]
        if any(len(x.split(".")[0]) > 1 and x[0] == "0" for x in (a, b)):
            return None
        sym = m["sym1"] or m["sym2"]
        if m["sym1"] and m["sym2"] and m["sym1"] != m["sym2"]:
            return None

        def side(x: str) -> list[str]:
            if _is_year(x) and not sym and not m["pct"]:
                return _year(int(x))
            int_part, _, frac = x.partition(".")
            return _number(int_part, frac or None)

        words = [*side(a), "to", *side(b)]
        if sym:
            words.append(_CURRENCIES[sym][1])
        if m["pct"]:
            words.append("percent")
        return words

    @staticmethod
    def _fraction(n: str, d: str) -> list[str]:
        num, den = int(n), int(d)
        if (num, den) == (24, 7):
            return ["twenty", "four", "seven"]
        if not 2 <= den <= 10:
            return [*_integer(n), "over", *_integer(d)]
        if den == 2:
            name = ["half"]
        elif den == 4:
            name = ["quarter"]
        else:
            name = _ordinal(_cardinal(den))
        return [*_integer(n), *(name if num == 1 else _plural(name))]


def normalize(text: str, lang: str = "en") -> Normalized:
    """Turn one line into speakable words, mapping every original whitespace token to the run of
    spoken tokens it became. English and Korean (`textnorm_ko`) are normalised; other
    languages pass through unchanged."""
    original = text.split()
    if _language(lang) == "ko":
        return _mapped(original, textnorm_ko.normalize_words(original))
    if not _is_english(lang):
        identity = [(k, k + 1) for k in range(len(original))]
        return Normalized(list(original), list(original), identity)
    line = _Line(original)
    spoken: list[str] = []
    word_map: list[tuple[int, int]] = []
    for i in range(len(original)):
        start = len(spoken)
        words, trail = line.convert(i)
        if words:
            lead = line.parts[i][0]
            spoken += [lead + words[0], *words[1:]]
            spoken[-1] += trail
        else:
            _lend_pause(spoken, original[i])
        word_map.append((start, len(spoken)))
    return Normalized(original, spoken, word_map)


def _mapped(original: list[str], spoken_per_word: list[list[str]]) -> Normalized:
    spoken: list[str] = []
    word_map: list[tuple[int, int]] = []
    for words in spoken_per_word:
        word_map.append((len(spoken), len(spoken) + len(words)))
        spoken += words
    return Normalized(original, spoken, word_map)


def _lend_pause(spoken: list[str], token: str) -> None:
    """Give the pause a dropped token implies (a dash, "...", "?") to the previous spoken word."""
    marks = "".join(c for c in token if c in _PAUSE_MARKS)[:3]
    if not marks and any(c in _DASHES for c in token):
        marks = ","
    if spoken and marks and spoken[-1][-1] not in _PAUSE_MARKS:
        spoken[-1] += marks


def project_spans(normalized: Normalized,
                  spoken_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """One (start, end) span per original word from one span per spoken word. A word spoken as
    nothing gets a zero-length span at the end of the previous word (or the start of the next
    one when it leads the line). Raises `SynthesisFailed` when the engine timed a different
    number of tokens than it was given, since captions cannot be trusted then."""
    if len(spoken_spans) != len(normalized.spoken_words):
        raise SynthesisFailed(
            f"the engine returned {len(spoken_spans)} word timings for "
            f"{len(normalized.spoken_words)} spoken words")
    spans: list[tuple[int, int] | None] = []
    for start, end in normalized.word_map:
        spans.append((spoken_spans[start][0], spoken_spans[end - 1][1]) if end > start else None)
    out: list[tuple[int, int]] = []
    for k, span in enumerate(spans):
        if span is None:
            at = out[-1][1] if out else next((s[0] for s in spans[k + 1:] if s), 0)
            span = (at, at)
        out.append(span)
    return out
