"""Language-aware tokens for lexical retrieval: words, minus stop words, stemmed with
the Snowball stemmers (PyStemmer) for Dutch and English, accents folded.

The same function tokenises what is indexed and what is asked, so "bezorgd",
"bezorging" and "Bezorgen" meet on one stem, and "wanneer komt mijn pakket" is not
matched on "mijn". The stop word lists are Snowball's, trimmed of words that carry
meaning in a support conversation ("niet"/"not", "geen"/"no" stay: "not delivered" is
the question).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

LANGUAGES = ("en", "nl")

_EN_STOP = """
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in
into is it its itself just me more most my myself now of off on once only or other ought
our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself
yourselves i'm you're he's she's it's we're they're i've you've we've they've i'd you'd
he'd she'd we'd they'd i'll you'll he'll she'll we'll they'll let's that's who's what's
here's there's when's where's why's how's hello hi dear please thanks thank regards
""".split()

_NL_STOP = """
aan al alles als altijd andere ben bij daar dan dat de der deze die dit doch doen door
dus een eens en er ge geweest haar had heb hebben heeft hem het hier hij hoe hun iemand
iets ik in is ja je jij jou jouw kan kon kunnen maar me meer men met mij mijn moet na
naar nog nu of om omdat onder ons ook op over reeds te tegen toch toen tot u uit uw van
veel voor want waren was wat we wel werd wezen wie wil worden wordt zal ze zelf zich zij
zijn zo zonder zou hallo hoi beste groet groeten graag bedankt dank dankjewel dankuwel
alstublieft alsjeblieft
""".split()

STOP_WORDS = {"en": frozenset(_EN_STOP), "nl": frozenset(_NL_STOP)}
_STEMMER_NAMES = {"en": "english", "nl": "dutch"}
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@lru_cache(maxsize=4)
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(_STEMMER_NAMES[language])


def words(text: str) -> list[str]:
    """Lower-cased words of `text` (apostrophes kept inside words: "don't", "zo'n")."""
    return [w.replace("’", "'") for w in _WORD.findall(text.casefold())]


def fold(word: str) -> str:
    """Accents off ("geïnteresseerd" == "geinteresseerd"): customers type both."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def detect_language(text: str, default: str = "en") -> str:
    """Dutch or English, by which language's stop words the text uses more; `default`
    when it cannot tell (no stop words of either, or a tie)."""
    counts = dict.fromkeys(LANGUAGES, 0)
    for word in words(text):
        for language in LANGUAGES:
            if word in STOP_WORDS[language]:
                counts[language] += 1
    best = max(LANGUAGES, key=lambda lang: counts[lang])
    others = [counts[lang] for lang in LANGUAGES if lang != best]
    if counts[best] == 0 or counts[best] in others:
        return default if default in LANGUAGES else "en"
    return best


def tokens(text: str, language: str) -> list[str]:
    """The index terms of `text` in `language` (en or nl; another language is
    tokenised without stemming or stop words)."""
    found = words(text)
    stop = STOP_WORDS.get(language)
    if stop is None:
        return [fold(w) for w in found]
    kept = [w for w in found if (w not in stop and len(w) > 1) or w.isdigit()]
    return [fold(stem) for stem in _stemmer(language).stemWords(kept)]
