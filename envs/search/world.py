"""A seeded synthetic world for multi-hop question answering.

:func:`generate_world` makes fictional countries, cities, people, organizations and events (names built
from syllables, so no model knows the answers from pretraining) with typed relations:

- person: ``born_in`` (city), ``born_year``, ``occupation``, ``works_for`` (organization);
- city: ``located_in`` (country), ``founded_year``; country: ``capital`` (city);
- organization: ``industry``, ``headquartered_in`` (city), ``founded_year``, ``founded_by`` (a person,
  each founder founds one organization);
- event: ``held_in`` (city), ``first_held`` (year), ``organized_by`` (an organization, one event each).

Each entity gets one or two passages in plain sentences (a person's birth and career are separate
passages, as are an organization's profile and history), and "news" passages mention several entities
together without stating their key relations: these, people sharing a family name, and organizations
and events named after cities are the distractors.

Questions come in four types, each with gold answers, gold passage ids and one reference query per
gold passage (``hops``, in order):

- ``1hop``: one relation of a named entity ("Where was Kavo Drelin born?");
- ``2hop`` (compositional): a chain of two relations from a named entity ("In which country was Kavo
  Drelin born?": birthplace, then the city's country);
- ``comparison``: which of two named entities has the earlier year ("Which was founded earlier, ...?");
- ``bridge``: the intermediate entity is not named but described by a relation that only its own passage
  states ("In which city is the organization founded by Kavo Drelin headquartered?": search for who
  founded what, then look that organization up).

Everything is drawn from ``random.Random(seed)``, so a seed gives the same world on every machine.
``python -m agentsd.envs.search.world --out DIR`` writes ``corpus.jsonl`` and ``questions.jsonl``.
"""

from __future__ import annotations

import argparse
import bisect
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from agentsd.envs.search.corpus import Passage, Question, write_jsonl
from agentsd.envs.search.text import normalize_answer

QTYPES = ("1hop", "2hop", "comparison", "bridge")

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st",
           "th", "tr", "sk", "vr", "h", "j", "y", "sh", "kh", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou", "ae", "ia")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "k", "x", "v")
_CITY_SUFFIX = ("", "", "", "holm", "ford", "grad", "port", "dale", "mere", "vik", "stad", "wick", "mont")
_COUNTRY_SUFFIX = ("ia", "land", "mark", "ora", "istan", "ovia", "enne")
_INDUSTRIES = {
    "shipbuilding": ("Shipyards", "Maritime", "Dockworks"),
    "banking": ("Bank", "Savings", "Trust"),
    "publishing": ("Press", "Publishers", "Books"),
    "mining": ("Mining", "Minerals", "Quarries"),
    "textile": ("Textiles", "Mills", "Looms"),
    "railway": ("Railways", "Rail", "Lines"),
    "brewing": ("Brewery", "Breweries", "Ales"),
    "pharmaceutical": ("Pharma", "Laboratories", "Remedies"),
    "software": ("Systems", "Software", "Digital"),
    "aviation": ("Aeronautics", "Airways", "Aviation"),
}
_OCCUPATIONS = ("cartographer", "engineer", "chemist", "novelist", "architect", "economist", "painter",
                "botanist", "surgeon", "composer", "astronomer", "lawyer", "historian", "sculptor",
                "geologist", "journalist", "linguist", "merchant", "physicist", "playwright")
_HOBBIES = ("collecting old maps", "long-distance rowing", "restoring clocks", "beekeeping", "chess problems",
            "mountain photography", "growing orchids", "folk music", "translating poetry", "amateur astronomy")
_EVENT_KINDS = ("Festival", "Fair", "Regatta", "Games", "Summit", "Congress", "Marathon", "Carnival", "Expo")
_EVENT_WHAT = {"Festival": "an annual festival", "Fair": "a trade fair", "Regatta": "a rowing regatta",
               "Games": "a multi-sport competition", "Summit": "a political summit", "Congress": "a scientific congress",
               "Marathon": "a road race", "Carnival": "a street carnival", "Expo": "an industrial exhibition"}
_RIVERS_WORD = ("river", "lake", "bay", "coast")


@dataclass
class Person:
    name: str
    family: str
    born_in: int
    born_year: int
    occupation: str
    hobby: str
    works_for: int | None = None
    joined: int = 0
    founded: int | None = None
    bio: str = ""
    career: str = ""


@dataclass
class City:
    name: str
    country: int
    founded_year: int
    water: str
    population: int
    passage: str = ""


@dataclass
class Country:
    name: str
    capital: int = -1
    currency: str = ""
    passage: str = ""


@dataclass
class Org:
    name: str
    industry: str
    hq: int
    founded_year: int
    founder: int
    profile: str = ""
    history: str = ""
    event: int | None = None


@dataclass
class Event:
    name: str
    kind: str
    city: int
    first_held: int
    organizer: int
    overview: str = ""
    history: str = ""


@dataclass
class World:
    seed: int
    passages: list[Passage]
    questions: dict[str, list[Question]]
    people: list[Person] = field(default_factory=list)
    cities: list[City] = field(default_factory=list)
    countries: list[Country] = field(default_factory=list)
    orgs: list[Org] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: per question type, how many of ``questions[type]`` (the first ones) are train questions
    cuts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {p.id: p for p in self.passages}

    def all_questions(self) -> list[Question]:
        return [q for t in QTYPES for q in self.questions[t]]


class _Names:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def stem(self, lo: int = 2, hi: int = 3) -> str:
        r = self.rng
        while True:
            n = r.randint(lo, hi)
            word = "".join(r.choice(_ONSETS) + r.choice(_VOWELS) + (r.choice(_CODAS) if i == n - 1 or r.random() < 0.3
                                                                   else "") for i in range(n))
            if 4 <= len(word) <= 12 and word not in self.used:
                return word.capitalize()

    def claim(self, name: str) -> bool:
        key = normalize_answer(name)
        if key in self.used or not key:
            return False
        self.used.add(key)
        return True

    def unique(self, make) -> str:
        while True:
            name = make()
            if self.claim(name):
                return name


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def generate_world(seed: int = 0, scale: float = 1.0, train_fraction: float = 0.8) -> World:
    """The world for ``seed``; ``scale`` multiplies the entity counts (1.0: ~600 people, ~2,500 passages).
    Each question type's questions are shuffled and split ``train_fraction`` / rest into ``questions
    [type]`` (train first; :func:`split_questions` gives the two lists)."""
    rng = random.Random(seed)
    names = _Names(rng)
    n_countries = max(3, round(16 * scale))
    n_cities = max(6, round(100 * scale))
    n_people = max(24, round(600 * scale))
    n_orgs = max(8, round(200 * scale))
    n_events = max(4, round(120 * scale))

    countries = [Country(names.unique(lambda: names.stem(1, 2) + rng.choice(_COUNTRY_SUFFIX)))
                 for _ in range(n_countries)]
    for c in countries:
        c.currency = names.stem(1, 2).lower()
    cities: list[City] = []
    for i in range(n_cities):
        country = i % n_countries if i < n_countries else rng.randrange(n_countries)
        name = names.unique(lambda: names.stem(2, 3) + rng.choice(_CITY_SUFFIX))
        cities.append(City(name, country, rng.randint(800, 1850), rng.choice(_RIVERS_WORD),
                           rng.randint(8, 900) * 1000))
    for k, c in enumerate(countries):
        c.capital = k  # city k was put in country k above
    families = [names.stem(2, 3) for _ in range(max(8, n_people // 3))]
    people: list[Person] = []
    for _ in range(n_people):
        fam = rng.choice(families)
        name = names.unique(lambda fam=fam: f"{names.stem(1, 2)} {fam}")
        people.append(Person(name, fam, rng.randrange(n_cities), rng.randint(1820, 1995),
                             rng.choice(_OCCUPATIONS), rng.choice(_HOBBIES)))
    # organizations: each has its own founder, born at least 20 years before the founding
    founders = rng.sample(range(n_people), min(n_orgs, n_people))
    orgs: list[Org] = []
    for pi in founders:
        ind = rng.choice(sorted(_INDUSTRIES))
        stem_from_city = rng.random() < 0.3

        def make(ind: str = ind, s: bool = stem_from_city) -> str:
            return (rng.choice(cities).name if s else names.stem(2, 3)) + " " + rng.choice(_INDUSTRIES[ind])

        fy = min(2020, people[pi].born_year + rng.randint(22, 60))
        orgs.append(Org(names.unique(make), ind, rng.randrange(n_cities), fy, pi))
        people[pi].founded = len(orgs) - 1
    by_year = sorted(range(len(orgs)), key=lambda k: (orgs[k].founded_year, k))
    years = [orgs[k].founded_year for k in by_year]
    for p in people:  # most people work for an organization founded before they were 60
        n_ok = bisect.bisect_right(years, p.born_year + 60)
        if n_ok and rng.random() < 0.85:
            k = by_year[rng.randrange(n_ok)]
            p.works_for = k
            p.joined = max(orgs[k].founded_year, p.born_year + rng.randint(19, 35))
    organizers = rng.sample(range(len(orgs)), min(n_events, len(orgs)))
    events: list[Event] = []
    for oi in organizers:
        kind = rng.choice(_EVENT_KINDS)
        city = rng.randrange(n_cities)
        named_after_city = rng.random() < 0.5

        def make(kind: str = kind, city: int = city, s: bool = named_after_city) -> str:
            stem = cities[city].name if s else names.stem(2, 3)
            adj = rng.choice(("", "Lantern ", "Spring ", "Harbour ", "Grand ", "Winter ", "Open "))
            return f"{stem} {adj}{kind}"

        events.append(Event(names.unique(make), kind, city, rng.randint(1850, 2015), oi))
        orgs[oi].event = len(events) - 1

    passages: list[Passage] = []

    def add(title: str, text: str) -> str:
        pid = f"syn-{len(passages):06d}"
        passages.append(Passage(pid, title, text))
        return pid

    for p in people:
        city = cities[p.born_in].name
        short = p.family
        p.bio = add(p.name, rng.choice((
            f"{p.name} (born {p.born_year}) is {_a(p.occupation)}. {p.name} was born in {city} and is known "
            f"for {p.hobby}.",
            f"{p.name} is {_a(p.occupation)} who was born in {city} in {p.born_year}. In private life, {short} "
            f"enjoys {p.hobby}.",
            f"Born in {p.born_year} in the city of {city}, {p.name} became a well-known {p.occupation}. "
            f"{short} also took up {p.hobby}.",
        )))
        if p.works_for is not None:
            org = orgs[p.works_for].name
            p.career = add(p.name, rng.choice((
                f"{p.name} works for {org} as {_a(p.occupation)}, having joined it in {p.joined}.",
                f"Since {p.joined}, {p.name} has worked for {org}, where {short} is employed as {_a(p.occupation)}.",
                f"In {p.joined} {p.name} joined {org}; {short} still works for {org} as its {p.occupation}.",
            )))
    for c in cities:
        country = countries[c.country].name
        c.passage = add(c.name, rng.choice((
            f"{c.name} is a city in {country}, founded in {c.founded_year}. It lies on a {c.water} and has about "
            f"{c.population:,} inhabitants.",
            f"Founded in {c.founded_year}, {c.name} is a city located in {country}, on a {c.water}; about "
            f"{c.population:,} people live there.",
        )))
    in_country: dict[int, list[str]] = {}
    for x in cities:
        in_country.setdefault(x.country, []).append(x.name)
    for k, c in enumerate(countries):
        others = [n for n in in_country.get(k, []) if n != cities[c.capital].name][:3]
        tail = f" Other cities include {', '.join(others)}." if others else ""
        c.passage = add(c.name, f"{c.name} is a country whose capital is {cities[c.capital].name}. Its currency "
                                f"is the {c.currency}.{tail}")
    for o in orgs:
        hq, founder = cities[o.hq].name, people[o.founder].name
        kind = "company"
        o.profile = add(o.name, rng.choice((
            f"{o.name} is {_a(o.industry)} {kind} headquartered in {hq}.",
            f"{o.name} is {_a(o.industry)} {kind}; it is headquartered in {hq} and employs about "
            f"{rng.randint(2, 90) * 100} people.",
        )))
        o.history = add(o.name, rng.choice((
            f"{o.name} was founded in {o.founded_year} by {founder}.",
            f"{founder} founded {o.name} in {o.founded_year}, at first as a small workshop.",
            f"Founded by {founder} in {o.founded_year}, {o.name} has grown steadily since.",
        )))
    for e in events:
        city, org = cities[e.city].name, orgs[e.organizer].name
        e.overview = add(e.name, f"The {e.name} is {_EVENT_WHAT[e.kind]}, an event held in {city} and organized by "
                                 f"{org}.")
        e.history = add(e.name, rng.choice((
            f"The {e.name} was first held in {e.first_held}.",
            f"The first {e.name} took place in {e.first_held}; it has been held regularly since.",
        )))
    for _ in range(len(people) // 2):  # news: several entities together, no key relations stated
        p, o = rng.choice(people), rng.choice(orgs)
        e = rng.choice(events)
        y = rng.randint(1900, 2020)
        form = rng.randrange(3)
        if form == 0:
            add(f"{cities[e.city].name} news", f"In {y}, {p.name} travelled to {cities[e.city].name} to attend the "
                                               f"{e.name}.")
        elif form == 1:
            add(f"{o.name} news", f"{p.name} wrote a short history of {o.name}, published in {y}.")
        else:
            o2 = rng.choice(orgs)
            add("Survey", f"A {y} survey listed {o.name} and {o2.name} among the best-known firms of their time.")

    questions = _questions(rng, people, cities, countries, orgs, events)
    world = World(seed, passages, {}, people, cities, countries, orgs, events)
    for t in QTYPES:
        qs = questions[t]
        rng.shuffle(qs)
        cut = max(1, round(len(qs) * train_fraction))
        world.questions[t] = qs
        world.cuts[t] = cut
    return world


def split_questions(world: World, qtype: str) -> tuple[list[Question], list[Question]]:
    """(train, test) questions of one type: disjoint lists."""
    qs, cut = world.questions[qtype], world.cuts[qtype]
    return qs[:cut], qs[cut:]


def _questions(rng, people, cities, countries, orgs, events) -> dict[str, list[Question]]:
    out: dict[str, list[Question]] = {t: [] for t in QTYPES}
    seen: set[str] = set()
    hq_industry = Counter((o.hq, o.industry) for o in orgs)

    def q(t: str, text: str, answer: str | int, path: list[tuple[str, str]]) -> None:
        if text in seen:
            return
        seen.add(text)
        out[t].append(Question(f"{t}-{len(out[t])}", text, (str(answer),), t,
                               tuple(pid for _, pid in path), tuple(h for h, _ in path)))

    def city_hop(ci: int) -> tuple[str, str]:
        c = cities[ci]
        return f"{c.name} city in", c.passage

    for p in people:
        c = cities[p.born_in]
        q("1hop", f"Where was {p.name} born?", c.name, [(f"{p.name} born", p.bio)])
        q("1hop", f"In which year was {p.name} born?", p.born_year, [(f"{p.name} born", p.bio)])
        q("2hop", f"In which country was {p.name} born?", countries[c.country].name,
          [(f"{p.name} born", p.bio), city_hop(p.born_in)])
        q("2hop", f"In which year was the city where {p.name} was born founded?", c.founded_year,
          [(f"{p.name} born", p.bio), (f"{c.name} city founded", c.passage)])
        if p.works_for is not None:
            o = orgs[p.works_for]
            q("1hop", f"Which organization does {p.name} work for?", o.name, [(f"{p.name} works for", p.career)])
            q("2hop", f"Who founded the organization that {p.name} works for?", people[o.founder].name,
              [(f"{p.name} works for", p.career), (f"{o.name} founded by", o.history)])
            q("2hop", f"In which city is the employer of {p.name} headquartered?", cities[o.hq].name,
              [(f"{p.name} works for", p.career), (f"{o.name} headquartered", o.profile)])
    for o in orgs:
        f = people[o.founder]
        q("1hop", f"Who founded {o.name}?", f.name, [(f"{o.name} founded by", o.history)])
        q("1hop", f"In which year was {o.name} founded?", o.founded_year, [(f"{o.name} founded", o.history)])
        q("1hop", f"In which city is {o.name} headquartered?", cities[o.hq].name,
          [(f"{o.name} headquartered", o.profile)])
        q("2hop", f"In which country is {o.name} headquartered?", countries[cities[o.hq].country].name,
          [(f"{o.name} headquartered", o.profile), city_hop(o.hq)])
        q("2hop", f"Where was the founder of {o.name} born?", cities[f.born_in].name,
          [(f"{o.name} founded by", o.history), (f"{f.name} born", f.bio)])
        q("bridge", f"In which city is the organization founded by {f.name} headquartered?", cities[o.hq].name,
          [(f"founded by {f.name}", o.history), (f"{o.name} headquartered", o.profile)])
        q("bridge", f"In which year was the city where the organization founded by {f.name} is headquartered "
                    f"founded?", cities[o.hq].founded_year,
          [(f"founded by {f.name}", o.history), (f"{o.name} headquartered", o.profile),
           (f"{cities[o.hq].name} city founded", cities[o.hq].passage)])
        if hq_industry[(o.hq, o.industry)] == 1:
            hq = cities[o.hq].name
            q("bridge", f"Who founded the {o.industry} company headquartered in {hq}?", f.name,
              [(f"{o.industry} company headquartered in {hq}", o.profile), (f"{o.name} founded by", o.history)])
    for k, c in enumerate(cities):
        q("1hop", f"In which country is {c.name} located?", countries[c.country].name, [city_hop(k)])
        q("1hop", f"In which year was {c.name} founded?", c.founded_year, [(f"{c.name} city founded", c.passage)])
        K = countries[c.country]
        q("2hop", f"What is the capital of the country where {c.name} is located?", cities[K.capital].name,
          [city_hop(k), (f"{K.name} country capital", K.passage)])
    for K in countries:
        q("1hop", f"What is the capital of {K.name}?", cities[K.capital].name, [(f"{K.name} country capital",
                                                                               K.passage)])
    for e in events:
        o = orgs[e.organizer]
        q("1hop", f"In which city is the {e.name} held?", cities[e.city].name, [(f"{e.name} held in", e.overview)])
        q("1hop", f"In which year was the {e.name} first held?", e.first_held, [(f"{e.name} first held", e.history)])
        q("1hop", f"Which organization organizes the {e.name}?", o.name, [(f"{e.name} organized by", e.overview)])
        q("2hop", f"In which country is the {e.name} held?", countries[cities[e.city].country].name,
          [(f"{e.name} held in", e.overview), city_hop(e.city)])
        q("bridge", f"In which country is the event organized by {o.name} held?",
          countries[cities[e.city].country].name, [(f"event organized by {o.name}", e.overview), city_hop(e.city)])
        q("bridge", f"Who founded the organization that organizes the {e.name}?", people[o.founder].name,
          [(f"{e.name} organized by", e.overview), (f"{o.name} founded by", o.history)])
    # comparisons: pairs of similar entities (same industry, same family, same country) with distinct years
    def peer(group: list, x, year: str):
        """A random member of ``group`` other than ``x`` with a different year (None if none found)."""
        for _ in range(min(20, 4 * len(group))):
            y = rng.choice(group)
            if y is not x and getattr(y, year) != getattr(x, year):
                return y
        return None

    groups: dict[tuple, list] = {}
    for o in orgs:
        groups.setdefault(("industry", o.industry), []).append(o)
    for p in people:
        groups.setdefault(("family", p.family), []).append(p)
    for c in cities:
        groups.setdefault(("country", c.country), []).append(c)
    for o in orgs:
        x = peer(groups[("industry", o.industry)], o, "founded_year")
        if x is not None:
            a, b = (o, x) if rng.random() < 0.5 else (x, o)
            win = a if a.founded_year < b.founded_year else b
            q("comparison", f"Which was founded earlier, {a.name} or {b.name}?", win.name,
              [(f"{a.name} founded", a.history), (f"{b.name} founded", b.history)])
    for p in people:
        x = peer(groups[("family", p.family)], p, "born_year")
        if x is not None:
            a, b = (p, x) if rng.random() < 0.5 else (x, p)
            win = a if a.born_year < b.born_year else b
            q("comparison", f"Who was born earlier, {a.name} or {b.name}?", win.name,
              [(f"{a.name} born", a.bio), (f"{b.name} born", b.bio)])
    for c in cities:
        x = peer(groups[("country", c.country)], c, "founded_year")
        if x is not None:
            a, b = (c, x) if rng.random() < 0.5 else (x, c)
            win = a if a.founded_year < b.founded_year else b
            q("comparison", f"Which city was founded earlier, {a.name} or {b.name}?", win.name,
              [(f"{a.name} city founded", a.passage), (f"{b.name} city founded", b.passage)])
    return out


@lru_cache(maxsize=4)
def default_world(seed: int = 0, scale: float = 1.0) -> World:
    """The shared default world (generated once per process)."""
    return generate_world(seed, scale)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic search world as JSONL files.")
    ap.add_argument("--out", required=True, help="directory for corpus.jsonl and questions.jsonl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args(argv)
    w = generate_world(a.seed, a.scale)
    out = Path(a.out)
    write_jsonl(out / "corpus.jsonl", (p.to_json() for p in w.passages))
    write_jsonl(out / "questions.jsonl", (q.to_json() for q in w.all_questions()))
    print(f"wrote {len(w.passages)} passages and {len(w.all_questions())} questions to {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
