"""Background hint (RWKU): public facts about the instance (its retention items of other categories, answered)
stated before the question, the context a user asking about a person or book would give."""

from knowundo.attacks.probes import ProbeFamily, answer_sentence, pick
from knowundo.evaluate.probing import register_probe

HINTS = 2  # answered retention items of the same instance given as background


def build(item: dict, scope: str, world, rng) -> list[dict]:
    hints = pick(rng, world.same_instance(item, "retention"), HINTS)
    if not hints:
        return []
    background = " ".join(answer_sentence(hint) for hint in hints)
    return [{"text": f"Background: {background} Question: {item['text']}", "labels": item["labels"]}]


register_probe(
    ProbeFamily("background_hint", "Hint", "public facts about the instance stated before the question", build),
    position=16,
)
