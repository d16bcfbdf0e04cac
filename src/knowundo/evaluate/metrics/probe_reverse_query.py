"""Reverse query (RWKU): the answer given with the instance's name blanked out, and the name asked for — does the
model still tie the fact to its owner? Needs items that name their instance in the answer."""

from knowundo.attacks.probes import ProbeFamily, answer_sentence, masked
from knowundo.evaluate.probing import register_probe


def build(item: dict, scope: str, world, rng) -> list[dict]:
    instance = item.get("instance")
    sentence = masked(answer_sentence(item), instance) if instance else None
    if sentence is None:
        return []
    text = f'A name was left out of this sentence: "{sentence}" Which name fills the blank?'
    return [{"text": text, "labels": f"{instance}."}]


register_probe(
    ProbeFamily("reverse_query", "Reverse", "the instance's name asked for from its blanked-out answer", build),
    position=14,
)
