"""Conversations between people, for the LLM-free observer: speaker prefixes, photos, fillers.

- A message that starts with "Name: " (a capitalised name of 1-3 words, then a colon) is
  that person speaking: "Caroline: I went to a support group yesterday."
- "[shared a photo: a photo of a sunset]" in a message is a photo the speaker shared, with
  its caption.
- A sentence is a filler when it carries nothing that could be asked about later:
  greetings, exclamations, compliments and reactions ("Wow, Gina!", "That's so cool!",
  "I'm so happy for you!") have no content word that is not a filler word or a name.
"""

from __future__ import annotations

import re

from memgate_observer.text import content_words, words

_SPEAKER = re.compile(
    r"^\s*(?P<name>[A-Z][A-Za-z'’-]*\.?(?: [A-Z][A-Za-z'’-]*\.?){0,2}):[ \t]+(?P<rest>\S.*)$", re.DOTALL
)
# Capitalised words that start labels, not names: "Note: ...", "Update: ...", "Error: ...".
_NOT_NAMES = frozenset(
    "note notes update edit error warning info question answer summary example context reminder important todo "
    "fyi ps re subject tip hint step result output input q a task goal problem solution issue fix bug feature "
    "title description status date time location address email phone name user assistant system tool human ai "
    "bot me i we you here this that it and but so also yes no ok okay hi hello hey thanks dear sir madam "
    "caution danger tldr nb source reason why what how when where who which".split()
)
_PHOTO = re.compile(
    r"\s*\[\s*shared (?:a|an) (?:photo|picture|image)\s*:\s*(?P<caption>[^\]\n]*?)\s*\]", re.IGNORECASE
)
_CAPTION_LEAD = re.compile(
    r"^(?:(?:a|an) )?(?:photo|photography|picture|image|close-?up|screenshot) of ", re.IGNORECASE
)

# Words that alone make a greeting, an exclamation, a compliment or a reaction.
FILLER_WORDS = frozenset(
    """
    wow whoa woah oh ooh ohh aw aww awww omg yay yeah yep yup yes nope haha hah hehe lol hey hi hiya hello howdy
    thanks thank thx ty cheers bye goodbye cool awesome amazing great nice good glad happy love loved lovely loving
    sweet super really truly so totally definitely sure okay ok absolutely indeed exactly true right agree agreed
    well sounds sound seems seem looks look looking see seeing seen keep up going go got get getting thing things
    stuff something anything everything lot lots lot's much many such kind sort guess know mean means like pretty
    quite bit little way time long make makes made proud impressed impressive inspiring inspired incredible
    wonderful fantastic beautiful gorgeous stunning brilliant excellent perfect fun exciting excited congrats
    congratulations cute adorable fab fabulous huge hear heard sorry hope hoping wish best luck welcome miss
    missed care take catch soon later chat talk talking buddy dear try sometime someday awesome cool amazing
    that's it's what's there's here's you're you've you'd you'll we're we've we'd we'll they're he's she's
    let's don't can't isn't wasn't didn't won't gonna wanna gotta it'll that'll one ones both same all more
    even ever still now again back out there totally tho though anyway anyways man dude wonder wondering
    glad fine awful terrible bad sad shame pity tough hard hang means meant awesome thrilled stoked jealous
    rock rocks rocking keep cheer forward wait touching heartwarming special powerful thankful grateful lucky
    blessed appreciate appreciated doubt doubts kind worries worry ah ahh hmm um uh
    enjoy enjoyed enjoying support throughout times happens happen next better posted updated
    """.split()
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|my|mine|we|we're|we've|we'd|we'll|our|ours)\b", re.IGNORECASE)
_SECOND_PERSON = re.compile(r"\b(?:you|your|you're|you've|you'd|you'll|yours|yourself|ya|u)\b", re.IGNORECASE)
# Reactions: an interjection or an evaluation of what the other said ("Wow, that agency looks great!",
# "Sounds like your event was amazing!", "Thanks for the support.", "Keep up the great work!").
_REACTION_START = re.compile(
    r"^(?:(?:wow|whoa|woah|oh|ooh|ohh|aw|aww|awww|omg|yay|haha|hehe|lol|ah|yeah|yes|hey|hi|hello|and|but)\b[,!.]?\s*)*"
    r"(?:(?:wow|whoa|woah|oh|ooh|aww|awww|omg|yay|haha|congrats|congratulations)\b"
    r"|(?:so|such|sounds|sound|looks|look|seems|glad|great|nice|cool|awesome|amazing|lovely|wonderful|fantastic"
    r"|thanks|thank you|love|loving|loved|keep|wishing|appreciate|good luck|best of luck|well done|what an?|how)\b"
    r"|that(?:'s| is| was| sounds| looks| seems| must| must have| would be)?\b|this (?:is|looks|sounds)\b)",
    re.IGNORECASE,
)
_DATE_OR_NUMBER = re.compile(
    r"\d|\b(?:today|tonight|tomorrow|yesterday|weekend|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday|week|month|year|ago)\b",
    re.IGNORECASE,
)
# Vocatives: "Wow, Gina!", "Thanks, Mel!", "Hey Caroline!", "you're amazing, Jon".
_VOCATIVE = re.compile(
    r"(?:\b(?:hey|hi|hello|thanks|thank you|wow|congrats|congratulations|aww|oh|yay|bye|sorry|dear|yo)[,!]?\s+"
    r"|,\s*)(?P<name>[A-Z][a-z]+)\b(?=\s*(?:[!.,?]|$))"
)


def split_speaker(content: str) -> tuple[str | None, str]:
    """The speaker named by a leading "Name: " prefix (or None), and the message without it."""
    m = _SPEAKER.match(content)
    if m is None:
        return None, content
    name = m.group("name").rstrip(".")
    if len(name) > 40 or any(w.casefold().rstrip(".") in _NOT_NAMES for w in name.split()):
        return None, content
    return name, m.group("rest").strip()


def split_photos(text: str) -> tuple[str, list[str]]:
    """The text without its "[shared a photo: ...]" markers, and the photos' captions."""
    captions = []
    for m in _PHOTO.finditer(text):
        caption = _CAPTION_LEAD.sub("", m.group("caption").strip()).strip().rstrip(".")
        if caption:
            captions.append(caption)
    return _PHOTO.sub("", text).strip(), captions


def names_in(sentence: str, known: set[str]) -> set[str]:
    """Casefolded words of `sentence` that are names: the speakers' (and their short forms), vocatives."""
    found = {m.group("name").casefold() for m in _VOCATIVE.finditer(sentence)}
    for word in re.findall(r"\b[A-Z][a-z]{2,}\b", sentence):
        folded = word.casefold()
        if any(name.startswith(folded) for name in known):  # "Mel" for Melanie
            found.add(folded)
    return found | {n for n in known if n in set(words(sentence))}


def substance(sentence: str, known_names: set[str]) -> set[str]:
    """The sentence's content words that are neither filler words nor names."""
    return content_words(sentence) - FILLER_WORDS - names_in(sentence, known_names)


def is_filler(sentence: str, known_names: set[str]) -> bool:
    """True for a sentence with no content word beyond fillers and names ("Thanks, Mel!", "That's so cool!")."""
    return not substance(sentence, known_names)


def is_reaction(sentence: str) -> bool:
    """An interjection, compliment or evaluation of what the other said, with nothing in the first person
    ("Wow, that agency looks great!", "Sounds like your event was amazing!", "Thanks for the support.")."""
    return bool(_REACTION_START.match(sentence)) and not _FIRST_PERSON.search(sentence)


def about_the_listener(sentence: str) -> bool:
    """Said to the other person about them, and nothing in the first person or dated ("You'd be a great
    counselor!", "It's great to see how you're affecting so many.")."""
    return (bool(_SECOND_PERSON.search(sentence)) and not _FIRST_PERSON.search(sentence)
            and not _DATE_OR_NUMBER.search(sentence))


def speaker_words(name: str) -> set[str]:
    """A speaker's name as casefolded words ("Mary Ann" → {"mary", "ann"})."""
    return {w for w in words(name) if len(w) > 1}
