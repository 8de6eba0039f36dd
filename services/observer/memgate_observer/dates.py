"""Relative dates ("tomorrow", "next Friday", "last weekend", "3 years ago", "last summer") resolved against the day a
message was sent."""

from __future__ import annotations

import re
from datetime import date, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2, "a few": 3}
_COUNT = r"\d{1,3}|a couple of|a couple|a few|an|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_DAY = "|".join(WEEKDAYS)
_ABBREVIATED = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5, "sun": 6}
_SEASONS = {"spring": (3, 5), "summer": (6, 8), "fall": (9, 11), "autumn": (9, 11)}  # first and last month

# "on Friday" is the coming Friday unless its clause tells of the past: a past form of a
# common irregular verb ("I won a tournament on Friday", "it was fun on Friday"), or an
# "-ed" verb after its subject pronoun ("we finally painted it on Friday"). Any sign of a
# plan wins: a future or present form ("will", "I'm meeting", "my exam is", "I've booked"),
# a wish or request ("I wanted to go", "he asked me to work"), "was wondering"; so does a
# question. Unsure, the coming day stays (as before this rule).
_FUTURE = re.compile(
    r"\b(?:will|shall|gonna|going|plan|plans|planning|hope|hoping|soon|upcoming|next|tomorrow|"
    r"am|is|are|have|has|'m|'re|'s|'ve|'ll|'d)\b|\w'(?:m|re|s|ve|ll|d)\b"
    r"|\b(?:was|were)\s+\w+ing\b"
    r"|\b(?:want|wanted|ask|asked|tell|told|plan|planned|decide|decided|need|needed|hope|hoped|agree|agreed|"
    r"promise|promised|invite|invited|like|love|would)\b.*\bto\b",
    re.IGNORECASE,
)
_PAST = re.compile(
    r"\b(?:was|were|had|did|went|got|saw|met|made|took|came|ran|won|lost|bought|ate|drank|told|said|felt|found|"
    r"gave|left|spent|began|brought|caught|drove|flew|heard|kept|knew|paid|sat|sold|sent|slept|spoke|stood|"
    r"thought|wrote|became|built|chose|fell|forgot|grew|held|led|rode|sang|swam|taught|threw|wore|"
    r"ago|yesterday|last)\b"
    r"|\b(?:i|we|he|she|they)\s+(?:\w+ly\s+|just\s+|also\s+)?\w{2,}(?<!e)ed\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[.!?;,:]\s|\s(?:and|but|because|while|though|although)\s", re.IGNORECASE)


_PATTERNS = re.compile(
    rf"\b(?P<phrase>"
    rf"(?P<dat>the day after tomorrow)|(?P<dby>the day before yesterday)"
    rf"|(?P<today>today|tonight|this (?:morning|afternoon|evening))"
    rf"|(?P<tomorrow>tomorrow)|(?P<yesterday>yesterday|last night)"
    rf"|(?P<wd_rel>next|last|this|coming|on) (?P<wd>{_DAY})"
    rf"|(?P<abbr_rel>next|last|this|coming) (?P<abbr>{'|'.join(_ABBREVIATED)})(?=\.?(?:[\s,;:!?)]|$))"
    rf"|(?P<weekend_rel>next|last|this|coming) weekend|(?P<weekends_n>{_COUNT}) weekends? ago"
    rf"|in (?P<in_n>{_COUNT}) (?P<in_unit>days?|weeks?|months?|years?)"
    rf"|(?P<ago_n>{_COUNT}) (?P<ago_unit>days?|weeks?|months?|years?) ago"
    rf"|(?P<week_rel>next|last|this) week|(?P<month_rel>next|last|this) month|(?P<year_rel>next|last|this) year"
    rf"|(?P<season_rel>next|last|this) (?P<season>spring|summer|fall|autumn|winter)"
    rf")\b(?!\.? ?\()",  # already followed by "(...)": resolved before
    re.IGNORECASE,
)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _number(raw: str) -> int:
    return int(raw) if raw.isdigit() else _NUMBERS[raw.lower()]


def _shift(day: date, n: int, unit: str) -> str:
    unit = unit.lower().rstrip("s")
    if unit == "year":
        return str(day.year + n)
    if unit == "day":
        return (day + timedelta(days=n)).isoformat()
    if unit == "week":
        return (day + timedelta(weeks=n)).isoformat()
    return _add_months(day, n).strftime("%Y-%m")


def _resolve(m: re.Match[str], on: date) -> str | None:
    g = m.groupdict()
    if g["dat"]:
        return (on + timedelta(days=2)).isoformat()
    if g["dby"]:
        return (on - timedelta(days=2)).isoformat()
    if g["today"]:
        return on.isoformat()
    if g["tomorrow"]:
        return (on + timedelta(days=1)).isoformat()
    if g["yesterday"]:
        return (on - timedelta(days=1)).isoformat()
    if g["wd"] or g["abbr"]:
        target = WEEKDAYS.index(g["wd"].lower()) if g["wd"] else _ABBREVIATED[g["abbr"].lower()]
        rel = (g["wd_rel"] or g["abbr_rel"]).lower()
        if rel == "last" or (rel == "on" and _told_of_the_past(m)):
            return (on - timedelta(days=(on.weekday() - target - 1) % 7 + 1)).isoformat()
        return (on + timedelta(days=(target - on.weekday() - 1) % 7 + 1)).isoformat()
    saturday = on - timedelta(days=on.weekday()) + timedelta(days=5)  # this week's
    if g["weekend_rel"]:
        delta = {"next": 1, "last": -1, "this": 0, "coming": 0}[g["weekend_rel"].lower()]
        return "weekend of " + (saturday + timedelta(weeks=delta)).isoformat()
    if g["weekends_n"]:
        return "weekend of " + (saturday - timedelta(weeks=_number(g["weekends_n"]))).isoformat()
    if g["in_unit"]:
        return _shift(on, _number(g["in_n"]), g["in_unit"])
    if g["ago_unit"]:
        return _shift(on, -_number(g["ago_n"]), g["ago_unit"])
    monday = on - timedelta(days=on.weekday())
    if g["week_rel"]:
        delta = {"next": 1, "last": -1, "this": 0}[g["week_rel"].lower()]
        return "week of " + (monday + timedelta(weeks=delta)).isoformat()
    if g["month_rel"]:
        delta = {"next": 1, "last": -1, "this": 0}[g["month_rel"].lower()]
        return _add_months(on, delta).strftime("%Y-%m")
    if g["year_rel"]:
        return str(on.year + {"next": 1, "last": -1, "this": 0}[g["year_rel"].lower()])
    if g["season"]:
        return _season(g["season"].lower(), g["season_rel"].lower(), on)
    return None


def _told_of_the_past(m: re.Match[str]) -> bool:
    """Whether the clause before a phrase speaks of the past (see `_PAST`), in a sentence
    that is no question."""
    clause = _CLAUSE_BREAK.split(m.string[:m.start()])[-1]
    end = re.search(r"[.!?]", m.string[m.end():])
    if end is not None and end.group() == "?":
        return False
    return _PAST.search(clause) is not None and _FUTURE.search(clause) is None


def _season(season: str, rel: str, on: date) -> str:
    """ "last summer" → "summer 2022"; winters span two years ("winter 2022-23"). Northern seasons."""
    if season == "winter":  # December to February, named by the year it starts in
        current = on.year if on.month == 12 else on.year - 1 if on.month <= 2 else None
        if rel == "this":
            start = current if current is not None else on.year
        elif rel == "last":
            start = current - 1 if current is not None else on.year - 1
        else:
            start = current + 1 if current is not None else on.year
        return f"winter {start}-{str(start + 1)[-2:]}"
    first, last = _SEASONS[season]
    if rel == "this":
        year = on.year
    elif rel == "last":
        year = on.year if on.month > last else on.year - 1
    else:
        year = on.year if on.month < first else on.year + 1
    return f"{season} {year}"


def resolve_relative_dates(text: str, on: date) -> str:
    """Append the absolute date after each relative date phrase: "tomorrow (2024-05-02)"."""

    def replace(m: re.Match[str]) -> str:
        resolved = _resolve(m, on)
        return f"{m.group('phrase')} ({resolved})" if resolved else m.group(0)

    return _PATTERNS.sub(replace, text)
