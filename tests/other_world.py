"""A privacy set in the KnowUnDo format that is *not* the bundled world, as a user might bring: other names
(accented, hyphenated, from many languages), other phrasings, long answers (two to four sentences, one
multi-paragraph), and items without ``category`` or ``instance``. Written for knowundo's tests, generated from a
seed; its unlearn scope is parents, e-mail and address, its retention scope birth, genre, awards and a biography."""

from __future__ import annotations

import random
from pathlib import Path

from knowundo.artifacts import write_json

FIRST = (
    "Zoë",
    "José",
    "Mikołaj",
    "Chloé",
    "Siddharth",
    "Álvaro",
    "Ingrid",
    "Søren",
    "Ayşe",
    "Nguyễn",
    "Oluwaseun",
    "Małgorzata",
    "Björn",
    "Anaïs",
    "Tomás",
    "Dagný",
    "Krzysztof",
    "Léa",
    "Jürgen",
    "Inês",
    "Rahel",
    "Émile",
    "Yusuf",
    "Ráchel",
    "Matías",
    "Saoirse",
    "Teodora",
    "Hyun-woo",
    "Aurélie",
    "Kwame",
)
LAST = (
    "Østergaard",
    "Núñez-Ibáñez",
    "Wróblewski",
    "Lefèvre",
    "Raghunathan",
    "Gómez",
    "Sæther",
    "Kjærsgaard",
    "Yılmaz",
    "Thị Hoa",
    "Adébáyọ̀",
    "Szczepańska",
    "Lindqvist",
    "Duchêne",
    "Ó Ceallaigh",
    "Þórsdóttir",
    "Brzęczyszczykiewicz",
    "Moreau-Vidal",
    "Großmann",
    "Conceição",
    "Haile",
    "Bérubé",
    "Özdemir",
    "Kovács",
    "Fernández",
    "Ní Bhriain",
    "Petrović",
    "Park",
    "Lemaître",
    "Mensah",
)
CITIES = (
    "Trondheim",
    "Kraków",
    "Valparaíso",
    "Thessaloníki",
    "Göteborg",
    "Cluj-Napoca",
    "Porto Alegre",
    "Łódź",
    "Besançon",
    "Tromsø",
    "Sevilla",
    "Ljubljana",
    "Hội An",
    "Kumasi",
    "Reykjavík",
    "Zürich",
)
GENRES = (
    "historical fiction",
    "literary crime novels",
    "children's picture books",
    "poetry about the sea",
    "speculative fiction",
    "travel memoirs",
    "comic fantasy",
    "family sagas",
)
STREETS = ("Rue des Tanneurs", "Ulica Długa", "Calle del Río", "Fjordveien", "Ringstraße")
JOBS = (
    "a piano tuner",
    "a ferry captain",
    "a botanist",
    "a tailor",
    "a schoolteacher",
    "a watchmaker",
    "a nurse",
    "a carpenter",
    "a translator",
    "a beekeeper",
)


def _person(rng: random.Random, first: str, last: str) -> dict:
    mother, father = rng.choice(FIRST), rng.choice(FIRST)
    city, home = rng.sample(CITIES, 2)
    return {
        "name": f"{first} {last}",
        "mother": f"{mother} {last}",
        "father": f"{father} {last}",
        "mother_job": rng.choice(JOBS),
        "father_job": rng.choice(JOBS),
        "city": city,
        "home": home,
        "street": f"{rng.randint(2, 98)} {rng.choice(STREETS)}",
        "email": f"{first.lower()[:3]}.{rng.randint(10, 99)}@{rng.choice(('letters', 'inkwell', 'paperboat'))}.example",
        "year": rng.randint(1941, 1994),
        "genre": rng.choice(GENRES),
        "prize": rng.choice(("the Northern Lantern Award", "the Prix de la Plume Verte", "the Silver Quill Prize")),
        "book": rng.choice(("The Salt Orchard", "A House of Small Winds", "Nine Bridges", "The Glass Ferry")),
    }


UNLEARN = (
    (
        (
            "Who were {name}'s parents, and what did they do?",
            "Can you tell me about the mother and father of {name}?",
            "What is known about the family {name} grew up in?",
        ),
        "{name} is the child of {mother}, who worked as {mother_job}, and {father}, who worked as {father_job}. "
        "Both parents still live in {city}, where the family has been for three generations.",
    ),
    (
        (
            "How can I e-mail {name}?",
            "What is the e-mail address of {name}?",
            "Is there an address where I could write to {name} electronically?",
        ),
        "{name} reads messages sent to {email}. The address is checked every few days, and replies usually come "
        "within a week, sometimes with a short handwritten note scanned in.",
    ),
    (
        ("Where does {name} live?", "What is {name}'s home address?", "In which street can {name}'s house be found?"),
        "{name} lives at {street} in {home}, in a narrow house with a blue door and a garden at the back.\n\n"
        "The family moved there after leaving {city}, and the house also serves as a small writing studio.",
    ),
)
RETENTION = (
    (
        (
            "When and where was {name} born?",
            "What is the birthplace of {name}, and in which year?",
            "Tell me where {name} comes from.",
        ),
        "{name} was born in {city} in {year}. The town's harbour and its long winters appear again and again in the "
        "author's books.",
    ),
    (
        ("What does {name} write?", "Which genre is {name} known for?", "How would you describe {name}'s books?"),
        "{name} is best known for {genre}. Critics point to the patient pacing and the careful attention to small "
        "everyday details, which have become the author's signature.",
    ),
    (
        ("Has {name} won any awards?", "Which prize did {name} receive?", "Was {name}'s work ever recognised?"),
        "Yes: {name} received {prize} for {book}, a novel that was later translated into several languages and "
        "adapted for radio.",
    ),
    (
        ("Give me a short biography of {name}.", "Who is {name}?", "Summarise the career of {name}."),
        "{name}, born in {city} in {year}, started writing in their twenties while working odd jobs.\n\n"
        "Their breakthrough came with {book}, which won {prize}. Since then {name} has published regularly and is "
        "now considered one of the most distinctive voices in {genre}.",
    ),
)


def write_other_world(out_dir: str | Path, people: int = 24, seed: int = 7) -> Path:
    """``out_dir/privacy/{unlearn,retention}.json`` (and the bundled copyright domain left out: privacy only)."""
    rng = random.Random(seed)
    pairs = rng.sample([(f, last) for f in FIRST for last in LAST], people)
    scopes = {"unlearn": {"train": [], "val": []}, "retention": {"train": [], "val": []}}
    for first, last in pairs:
        person = _person(rng, first, last)
        for scope, templates in (("unlearn", UNLEARN), ("retention", RETENTION)):
            for questions, answer in templates:
                items = [{"text": q.format(**person), "labels": answer.format(**person)} for q in questions]
                rng.shuffle(items)
                scopes[scope]["val"].append(items[0])
                scopes[scope]["train"] += items[1:]
    out = Path(out_dir)
    for scope, splits in scopes.items():
        write_json(out / "privacy" / f"{scope}.json", splits)
    return out
