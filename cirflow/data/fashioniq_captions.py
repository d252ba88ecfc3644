"""How a FashionIQ triplet's two captions become one text, as SPRC does (docs/fashioniq.md).

Written from SPRC's behaviour (`generate_randomized_fiq_caption` in its src/utils.py for
training, `generate_fiq_val_predictions` in src/validate_blip.py for evaluation):

* each caption is first stripped, at both ends, of the characters '.', '?', ',' and ' ' (only
  those: a tab or newline stays);
* the caption that comes first is passed through Python's `str.capitalize`, which upper-cases
  its first character and lower-cases all the others; a second caption keeps its case;
* evaluation: always "<cap1, capitalised> and <cap2>";
* training: one uniform draw u in [0, 1) per triplet picks one of four forms:
      u < 0.25          "<cap1, capitalised> and <cap2>"
      0.25 < u < 0.5    "<cap2, capitalised> and <cap1>"
      0.5 < u < 0.75    "<cap1, capitalised>"
      otherwise         "<cap2, capitalised>"
  The comparisons are strict, as in SPRC, so u exactly 0.25 or 0.5 takes the last form.

The result then goes through `cirflow.data.captions.blip_caption` like every caption (SPRC
applies its text processor after combining, at training and evaluation alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# What SPRC strips from both ends of each caption before combining.
STRIP = ".?, "
JOIN = " and "
# The training forms, in the order of SPRC's branches.
TRAINING_FORMS = ("cap1 and cap2", "cap2 and cap1", "cap1", "cap2")


class UniformDraws(Protocol):
    """Anything with `random()` -> a float in [0, 1): `random.Random`, `numpy.random.Generator`.
    With `random.Random(seed)`, the draws are those SPRC's `random.random()` makes after
    `random.seed(seed)`, one per triplet in batch order."""

    def random(self) -> float: ...


def _pair(captions: Sequence[str]) -> tuple[str, str]:
    if len(captions) != 2:
        raise ValueError(f"a FashionIQ triplet has two captions, got {len(captions)}: {captions!r}")
    return captions[0], captions[1]


def _leading(caption: str) -> str:
    return caption.strip(STRIP).capitalize()


def _following(caption: str) -> str:
    return caption.strip(STRIP)


def evaluation_caption(captions: Sequence[str]) -> str:
    """The one text of a triplet at evaluation: "<cap1, capitalised> and <cap2>"."""
    first, second = _pair(captions)
    return _leading(first) + JOIN + _following(second)


def training_form(draw: float) -> str:
    """Which of TRAINING_FORMS a uniform draw picks (SPRC's branches, strict comparisons)."""
    if draw < 0.25:
        return TRAINING_FORMS[0]
    if 0.25 < draw < 0.5:
        return TRAINING_FORMS[1]
    if 0.5 < draw < 0.75:
        return TRAINING_FORMS[2]
    return TRAINING_FORMS[3]


def caption_in_form(captions: Sequence[str], form: str) -> str:
    """The text of one of TRAINING_FORMS for a triplet's two captions."""
    first, second = _pair(captions)
    texts = {
        TRAINING_FORMS[0]: _leading(first) + JOIN + _following(second),
        TRAINING_FORMS[1]: _leading(second) + JOIN + _following(first),
        TRAINING_FORMS[2]: _leading(first),
        TRAINING_FORMS[3]: _leading(second),
    }
    if form not in texts:
        raise ValueError(f"unknown form {form!r}: expected one of {', '.join(TRAINING_FORMS)}")
    return texts[form]


def training_caption(captions: Sequence[str], rng: UniformDraws) -> str:
    """The text of a triplet at one training step: one draw from `rng` picks the form."""
    return caption_in_form(captions, training_form(float(rng.random())))


def training_captions(batch: Sequence[Sequence[str]], rng: UniformDraws) -> list[str]:
    """`training_caption` for every triplet of a batch, drawing in batch order (as SPRC does)."""
    return [training_caption(captions, rng) for captions in batch]
