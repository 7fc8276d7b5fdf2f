"""A synthetic SQuAD-format corpus for the offline smoke preset and the tests.

Each paragraph states facts about made-up people ("talvek was born in oslo ."),
padded with filler sentences so that contexts need more than one window at
the smoke preset's sequence length. Questions ask for one fact
("in which city was talvek born ?"); SQuAD 2.0-style unanswerable questions ask
for an attribute the paragraph does not mention. Train and held-out dev data
share the cast of people but every paragraph draws its facts afresh, so knowing
who had what in training does not help: the dev score measures reading.
"""

from __future__ import annotations

import random

# Each attribute: its values, the sentence stating it, the question asking it.
# The attribute's own word appears only in questions, so a model has to read
# the question to know which fact is wanted.
ATTRIBUTES = {
    "color": (["teal", "amber", "violet", "crimson", "olive", "silver", "indigo", "coral"],
              "{p} painted the front door {v} .", "what color did {p} paint the front door ?"),
    "city": (["lisbon", "oslo", "quito", "hanoi", "dakar", "lima", "perth", "tunis"],
             "{p} was born in {v} .", "in which city was {p} born ?"),
    "food": (["rice", "figs", "bread", "soup", "plums", "beans", "pasta", "dates"],
             "{p} cooks {v} every sunday .", "what food does {p} cook every sunday ?"),
    "pet": (["cat", "owl", "dog", "goat", "hare", "lynx", "crow", "newt"],
            "{p} keeps a {v} at home .", "which pet does {p} keep at home ?"),
    "tool": (["hammer", "saw", "drill", "chisel", "wrench", "spade", "rake", "awl"],
             "{p} fixes the fence with a {v} .", "which tool does {p} fix the fence with ?"),
    "year": ([str(y) for y in range(1950, 2030, 9)],
             "{p} moved to the valley in {v} .", "in what year did {p} move to the valley ?"),
}
FILLER = [
    "the weather that season was mild and the harvest was long .",
    "many visitors came to the valley to see the old stone bridge .",
    "the river ran quietly past the mill and the market square .",
    "people in the town still talk about the great winter storm .",
    "a small band played music every evening near the fountain .",
    "the library opened early on market days and closed at dusk .",
    "children walked to school along the path by the orchard .",
    "an old clock in the tower chimed every hour of the night .",
    "the bakery sold warm loaves to travellers on the north road .",
    "farmers met in the hall each spring to share their news .",
]
_SYLLABLES = ["ta", "ko", "vel", "mir", "sa", "dor", "len", "bri", "zu", "ran", "pe", "lo", "gar", "ni", "tho",
              "ka", "mu", "sel", "fen", "vo"]


def _names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))))
    return sorted(names)


def _paragraph(rng, people, p_id, unanswerable_rate, filler):
    # Each paragraph states four of the six attributes, one per person, so a
    # question is answered by finding its fact; unanswerable ones ask for one of
    # the other two. Filler makes contexts longer than one smoke window.
    attrs = rng.sample(sorted(ATTRIBUTES), 4)
    facts = [(person, attr, rng.choice(ATTRIBUTES[attr][0])) for person, attr in zip(people, attrs)]
    statements = [ATTRIBUTES[a][1].format(p=p, v=v) for p, a, v in facts]
    sentences = statements + rng.sample(FILLER, filler)
    rng.shuffle(sentences)
    context = " ".join(sentences)
    qas = []
    for n, ((person, attr, value), statement) in enumerate(zip(facts, statements)):
        start = context.index(statement) + statement.index(f" {value} ") + 1
        qas.append({"id": f"{p_id}-{n}", "question": ATTRIBUTES[attr][2].format(p=person),
                    "answers": [{"text": value, "answer_start": start}], "is_impossible": False})
    if rng.random() < unanswerable_rate:
        missing = rng.choice([a for a in sorted(ATTRIBUTES) if a not in attrs])
        qas.append({"id": f"{p_id}-x", "question": ATTRIBUTES[missing][2].format(p=rng.choice(people)),
                    "answers": [], "is_impossible": True})
    return {"context": context, "qas": qas}


def synthetic_squad(num_paragraphs: int = 200, seed: int = 0, unanswerable_rate: float = 0.5, name_offset: int = 0,
                    filler: int = 5) -> dict:
    """A SQuAD v2.0-format dict (`{"version", "data"}`) of synthetic paragraphs.

    `name_offset` picks a disjoint slice of made-up names, so train and dev can
    be generated with different people.
    """
    rng = random.Random(seed)
    pool = _names(random.Random(1234), 4000)  # 20 syllables, 2-3 each: 8,400 possible names
    people = pool[name_offset:name_offset + max(40, num_paragraphs)]
    paragraphs = [_paragraph(rng, rng.sample(people, 4), f"s{seed}-{i}", unanswerable_rate, filler)
                  for i in range(num_paragraphs)]
    return {"version": "v2.0", "data": [{"title": f"synthetic-{seed}", "paragraphs": paragraphs}]}


def smoke_datasets(train_paragraphs: int = 300, dev_paragraphs: int = 100) -> tuple[dict, dict]:
    """(train, dev) synthetic corpora: different paragraphs and facts, the same people."""
    return (synthetic_squad(train_paragraphs, seed=1, name_offset=0),
            synthetic_squad(dev_paragraphs, seed=2))
