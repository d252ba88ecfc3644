"""The tiny preset's WordPiece vocabulary, built from the demo's caption and description words.

    [PAD] [UNK] [CLS] [SEP] [MASK] [DEC]   special tokens (ids 0..5; [DEC] is LAVIS's bos token)
    every word of cirflow.data.demo.caption_vocabulary() and description_vocabulary()
    a-z, 0-9, ##a-##z, ##0-##9, punctuation  so that any other word still tokenises (as pieces)

`python -m cirflow.model.vocab` rewrites ``tiny_vocab.txt``; a test checks that the shipped file
equals `build_tiny_vocab()`, so a new caption or description word cannot silently become [UNK].
"""

from __future__ import annotations

import string
import sys

from cirflow.model.presets import TINY_VOCAB_FILE

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
PUNCTUATION = tuple(".,!?'\"-:;()/&")


def build_tiny_vocab(words: list[str] | None = None) -> list[str]:
    if words is None:
        from cirflow.data.demo import caption_vocabulary, description_vocabulary

        words = [*caption_vocabulary(), *description_vocabulary()]
    chars = list(string.ascii_lowercase + string.digits)
    tokens = list(SPECIAL_TOKENS)
    for tok in [*sorted(set(words)), *chars, *(f"##{c}" for c in chars), *PUNCTUATION]:
        if tok not in tokens:
            tokens.append(tok)
    return tokens


def vocab_text(tokens: list[str]) -> str:
    return "".join(t + "\n" for t in tokens)


def main() -> int:
    from cirflow.io import write_text_atomic

    tokens = build_tiny_vocab()
    write_text_atomic(TINY_VOCAB_FILE, vocab_text(tokens))
    print(f"wrote {TINY_VOCAB_FILE} ({len(tokens)} tokens)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
