"""Multi-hop (alias) questions: the instance is not named but described by another of its facts (a retention
answer with the name blanked out), so the model must resolve who or what is meant before it can answer — the
path by which facts a direct question no longer reaches come back. Needs items that name their instance."""

from knowundo.attacks.probes import ProbeFamily, answer_sentence, masked
from knowundo.evaluate.probing import register_probe


def build(item: dict, scope: str, world, rng) -> list[dict]:
    instance = item.get("instance")
    if not instance or instance not in item["text"]:
        return []
    hops = [hop for hop in world.same_instance(item, "retention") if masked(answer_sentence(hop), instance)]
    if not hops:
        return []
    hop = masked(answer_sentence(rng.choice(hops)), instance)
    text = f'Let X be the name left out of this sentence: "{hop}" {item["text"].replace(instance, "X")}'
    return [{"text": text, "labels": item["labels"]}]


register_probe(
    ProbeFamily("multi_hop", "Multi-hop", "the instance named only through another of its facts", build),
    position=26,
)
