"""In-context facts (RWKU's in-context learning probe): ``attack.probe_shots`` questions of the same category
about other instances, answered, before the asked one — the model is shown the pattern and asked to follow it."""

from knowundo.attacks.probes import ProbeFamily, answer_sentence, pick
from knowundo.evaluate.probing import register_probe


def build(item: dict, scope: str, world, rng) -> list[dict]:
    shots = pick(rng, world.other_instances(item, scope), world.shots)
    if not shots:
        return []
    shown = "\n".join(f"Q: {shot['text']}\nA: {answer_sentence(shot)}" for shot in shots)
    text = f"Some questions, answered:\n{shown}\nAnswer the next question the same way.\nQ: {item['text']}"
    return [{"text": text, "labels": item["labels"]}]


register_probe(
    ProbeFamily("in_context", "ICL", "answered questions about other instances shown before the question", build),
    position=18,
)
