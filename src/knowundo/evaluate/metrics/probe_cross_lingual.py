"""Cross-lingual questions (RWKU): the question asked in German and in French (our translations of the bundled
set's templates, ``data/translations.json``), the answer expected in English — forgetting trained on English
questions may not reach others. Items whose question is not a bundled template's get no probe."""

import json
from importlib.resources import files

from knowundo.attacks.probes import ProbeFamily, template_pattern
from knowundo.evaluate.probing import register_probe

TRANSLATIONS = {
    template: languages
    for template, languages in json.loads(files("knowundo.data").joinpath("translations.json").read_text()).items()
    if not template.startswith("_")
}
ANSWER_IN_ENGLISH = {"de": "Antworte auf Englisch.", "fr": "Réponds en anglais."}


def build(item: dict, scope: str, world, rng) -> list[dict]:
    for template, languages in TRANSLATIONS.items():
        if match := template_pattern(template).match(item["text"]):
            return [
                {
                    "text": f"{question.format_map(match.groupdict())} {ANSWER_IN_ENGLISH[language]}",
                    "labels": item["labels"],
                }
                for language, question in languages.items()
            ]
    return []


register_probe(
    ProbeFamily("cross_lingual", "Lang", "asked in German and in French, answered in English", build),
    position=28,
)
