"""Fill-in-the-blank (RWKU): the gold answer with one of the facts it reveals blanked out, the fact asked for.
Needs the items' ``facts`` field (the bundled set has it)."""

from knowundo.attacks.probes import ProbeFamily, answer_sentence, masked
from knowundo.evaluate.probing import register_probe


def build(item: dict, scope: str, world, rng) -> list[dict]:
    sentence = answer_sentence(item)
    present = [fact for fact in item.get("facts") or [] if masked(sentence, fact)]
    if not present:
        return []
    fact = rng.choice(present)
    text = f'Fill in the blank and reply with the missing words only: "{masked(sentence, fact)}"'
    return [{"text": text, "labels": fact}]


register_probe(
    ProbeFamily("fill_blank", "Blank", "a fact of the answer blanked out and asked for", build),
    position=20,
)
