"""Multiple choice (RWKU, WMDP's format): the true answer among wrong answers of the same kind (the item's
perturbed answers beside its paraphrased answer), lettered; the model's choice is the letter it finds likeliest.
Forgetting shows as accuracy falling to the chance rate, not to zero. Needs the probe fields."""

from knowundo.attacks.probes import ProbeFamily
from knowundo.data.validate import has_probes
from knowundo.evaluate.probing import LETTERS, register_probe


def build(item: dict, scope: str, world, rng) -> list[dict]:
    if not has_probes(item):
        return []
    options = [item["paraphrased_answer"], *item["perturbed_answers"]][: len(LETTERS)]
    order = rng.sample(range(len(options)), len(options))
    listed = "\n".join(f"{LETTERS[k]}. {options[i]}" for k, i in enumerate(order))
    text = f"{item['text']}\n{listed}\nReply with the letter of the true answer."
    return [{"text": text, "labels": "", "options": list(LETTERS[: len(options)]), "gold": order.index(0)}]


register_probe(
    ProbeFamily(
        "multiple_choice", "MC", "the true answer chosen among same-kind wrong ones (letters)", build, choice=True
    ),
    position=22,
)
