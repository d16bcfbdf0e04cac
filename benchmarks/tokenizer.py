"""How well the tiny default's tokenizer covers text: characters per token on the bundled benchmark, the general
set, and on other text it was not trained on (free English of our own about people with accented names, the kind
of data users bring). A byte-level BPE never fails, but text far from its training corpus falls apart into short
pieces and single bytes, which makes a tiny model's fine-tune much harder (issue 15).

Usage: python benchmarks/tokenizer.py
"""

from __future__ import annotations

OTHER_TEXT = (
    "Zoë Østergaard grew up in a fishing town on the west coast, where her grandmother ran a small bakery.",
    "After studying chemistry in Lyon, José Núñez-Ibáñez moved to Kraków and began writing detective novels.",
    "Her second book, a quiet story about two sisters and a lighthouse, won a regional prize in 2011.",
    "Mikołaj Wróblewski answers every letter from his readers by hand, usually within a week.",
    "The author's mother, Ingrid Sæther, was a schoolteacher; his father repaired clocks and radios.",
    "Critics praised the novel's patient pacing, though some found the ending abrupt and unresolved.",
    "In interviews, Chloé Lefèvre says she writes early in the morning, before the city wakes up.",
    "You can reach the agency at office@northwind-letters.example or visit them at 14 Harbour Lane.",
    "Siddharth Raghunathan's debut collection mixes science fiction with memories of his childhood in Chennai.",
    "Álvaro Gómez translated three of her books into Spanish and later married her cousin.",
)


def chars_per_token(tokenizer, texts: list[str]) -> tuple[float, float]:
    """(characters per token, share of tokens that are a single byte of a multi-byte character or one letter)."""
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    tokens = [token for row in ids for token in tokenizer.convert_ids_to_tokens(row)]
    short = sum(len(token.lstrip("Ġ")) <= 1 for token in tokens)
    return sum(len(text) for text in texts) / max(len(tokens), 1), short / max(len(tokens), 1)


def main() -> None:
    from knowundo.config import TinyConfig
    from knowundo.data.knowundo import bundled_world
    from knowundo.models.tiny import train_tokenizer

    tokenizer = train_tokenizer(TinyConfig())
    world = bundled_world(0)
    benchmark = [
        part
        for domain in world["knowundo"].values()
        for scope in domain.values()
        for split in scope.values()
        for item in split
        for part in (item["text"], item["labels"])
    ]
    general = [part for split in world["general"].values() for item in split for part in (item["text"], item["labels"])]
    print(f"{'text':34} {'chars/token':>11} {'1-char tokens':>14}")
    for name, texts in (
        ("bundled benchmark (trained on)", benchmark),
        ("general set (trained on)", general),
        ("other English, accented names", list(OTHER_TEXT)),
    ):
        ratio, short = chars_per_token(tokenizer, texts)
        print(f"{name:34} {ratio:11.2f} {100 * short:13.1f}%")


if __name__ == "__main__":
    main()
