"""Which of our five Latin-script languages a Latin-script answer is written in.

py3langid (BSD-3-Clause, its model ships in the wheel, offline), restricted to en, fr, de, es and id. Chosen
over lingua-language-detector on our own lines (tests/data/latin_lines.json, 546 correct short subtitle
lines and 200 wrong-language answers): at 3+ words and a probability of 0.95 it rejected none of the correct
lines and caught 77 % of the wrong ones; lingua, whose confidences are compressed on short lines, caught
36 % at the same threshold (and 150 MB of memory). The model is cut to our five languages when it loads
(+51 MB instead of +91 MB), about 60 us per answer.

The rule is deliberately one-sided: a false rejection costs the user a good line, a miss only lets a
wrong-language line through to the budget and script checks. Lines under MIN_WORDS words are never judged.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import regex

LATIN_CODES = ("en", "fr", "de", "es", "id")
# Measured on tests/data/latin_lines.json (see the module docstring): with fewer words, or a lower
# probability, correct lines start being rejected.
MIN_WORDS = 3
MIN_PROBABILITY = 0.95

_WORD = regex.compile(r"\w+")
_LOAD = threading.Lock()


_MODEL: Any = None


def _identifier() -> Any:
    """The identifier, loaded once: concurrent first callers wait for the one load (each load builds
    about 100 MB before it is cut down, so two at once would leave the process that much bigger)."""
    global _MODEL
    if _MODEL is None:
        with _LOAD:
            if _MODEL is None:
                _MODEL = _build()
    return _MODEL


def _build() -> Any:
    import numpy as np
    from py3langid import langid

    ptc, pc, classes, nextmove, row, output = langid._load_model_file(langid.MODEL_DIR / langid.MODEL_FILE)
    keep = [i for i, code in enumerate(classes) if code in LATIN_CODES]
    # Only our five columns stay in memory (set_languages() would keep all 142).
    ptc5 = np.ascontiguousarray(np.asarray(ptc)[:, keep])
    pc5 = np.asarray(pc)[keep].copy()
    return langid.LanguageIdentifier(
        ptc5, pc5, [classes[i] for i in keep], nextmove, output, norm_probs=True, tk_row=row
    )


def load() -> None:
    """Load the model (about a second; blocking): the engine starts this in a thread when it opens."""
    _identifier()


def loaded() -> bool:
    return _MODEL is not None


async def ready() -> None:
    """Wait until the model is loaded, without blocking the event loop (it loads in a thread)."""
    if not loaded():
        await asyncio.to_thread(load)


def words(text: str) -> int:
    """Words with at least one letter (names count; "3" does not)."""
    return sum(1 for word in _WORD.findall(text) if any(ch.isalpha() for ch in word))


def wrong_language(answer: str, target: str) -> tuple[str, float] | None:
    """(detected language, probability) when a Latin-script `answer` is confidently another of our five
    languages than `target`; None when it is the target, or too short or unclear to tell."""
    if target not in LATIN_CODES or words(answer) < MIN_WORDS:
        return None
    detected, probability = _identifier().classify(answer)
    if detected != target and probability >= MIN_PROBABILITY:
        return str(detected), float(probability)
    return None
