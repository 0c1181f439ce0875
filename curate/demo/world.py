"""The fixed fictional world the demo skills talk about: a word list, invented countries and invented
animals with their attributes.

Everything here is a constant (the generated names come from a fixed seed, independent of any pool
seed), so a pool, its held-out sets and the pre-training corpus all describe the same world.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

WORLD_SEED = 20240611

# About 500 common English words (3-9 letters) for the string transformations.
WORDS: tuple[str, ...] = tuple(
    """
    apple table river stone garden planet window candle forest bottle silver orange pencil basket
    bridge castle dragon engine feather finger flower guitar hammer island jacket kitten ladder
    lemon marble meadow mirror monkey needle ocean packet parrot pepper pillow pocket puzzle rabbit
    rocket saddle shadow socket spider spring summer tiger tomato tunnel turtle velvet wagon winter
    wizard yellow zebra anchor badge beacon blanket border branch breeze bucket butter cabin camera
    canyon carpet cheese cherry circle cloud clover coffee copper cotton crayon cricket crystal
    dancer desert diamond dinner doctor donkey dream eagle earth falcon farmer fence field forge
    fossil fountain frost ginger glove golden grape gravel harbor harvest helmet honey horizon hotel
    iceberg insect jelly jungle kettle kingdom lantern leaf library lizard magnet mango maple market
    meteor mitten moment morning mountain muffin museum napkin nectar night noodle oasis olive
    onion orbit otter oyster paddle palace panda paper parade pebble pelican penguin piano picnic
    pigeon pirate planter plum pond poppy potato prairie pumpkin quartz quill radar rainbow raven
    record ribbon riddle robin rooster ruby sailor salmon sandal scarf school season shell shelter
    signal sketch sleeve slipper snail sofa spoon squirrel stable stamp star statue storm stream
    sugar sunset swan sweater tablet teapot temple thunder ticket timber toast torch tower tractor
    travel treasure trumpet tulip tundra umbrella unicorn valley vessel village violin volcano
    walnut walrus water whale wheat whistle willow wind wolf wonder yogurt acorn alley arrow
    autumn bakery bamboo banjo barrel beetle berry biscuit blossom bonnet breadbox brick bubble
    buffalo button cactus camel canal canoe captain carrot cattle cellar chalk chapel chimney
    cinema citrus clock coast comet compass cookie coral cradle crane crown cupboard curtain daisy
    dolphin domino drawer drum elbow ember fiddle flame flute fog galaxy garlic gazelle
    geyser giraffe glacier goblet gondola gorilla granite hamster hazel hedge heron hippo hollow
    hornet husky igloo ink ivory jaguar jasmine jigsaw juniper kayak kiwi koala lagoon lava lily
    linen lobster locket lotus lynx mammoth mantle melon mint moose moss moth nutmeg oak
    octopus opal orchid owl paintbox panther parsley peach peanut pearl pine pixel plaza pony
    puddle quail quiver raft raisin reef rhino saffron sapphire satchel scooter seagull sequin
    sheep shovel shrimp skate sled sloth sparrow spinach sponge spruce squid stork sunflower swamp
    syrup thimble thistle tofu toucan trolley trout tuba twig vanilla violet vulture waffle
    wasp weasel wicker yak yarn zinnia almond archer atlas bandit banner bison blade bolt boulder
    bramble bronze cabbage cameo cedar cinder cobalt cocoa cypress delta dune easel elm emerald
    fable fern flint gadget garnet gecko goose gull harp hatchet hawk heath hickory iris jade kelp
    kernel kite lark ledge lentil lichen lilac loom lute mace mallet maze mesa mill minnow mosaic
    nickel nomad nugget oar orchard osprey pagoda papaya pasta pecan petal pewter pickle pier
    plank plaid prism pulley quarry quince radish rapids ridge rind rivet robe rustle sage sandbar
    scone sextant shale sherbet shrub sickle silo slate sorrel spindle spire sprig stilt sundial
    tack tapir tassel thorn tinsel topaz trellis turnip tweed urchin vane vault vine
    wafer wharf wren yolk
    """.split()
)

ATTRIBUTE_NAMES = ("capital", "language", "currency", "river")  # "river": the country's main river


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    language: str
    currency: str
    river: str

    def value(self, attribute: str) -> str:
        return {
            "capital": self.capital,
            "language": self.language,
            "currency": self.currency,
            "river": self.river,
        }[attribute]


# Seven values per attribute: with 48 animals laid out as an orthogonal array (see `animals`), two
# animals share at most one attribute value, which keeps their descriptions far apart.
SIZES = ("tiny", "small", "medium-sized", "large", "huge", "giant", "slender")
COLORS = ("silver", "golden", "green", "blue", "red", "grey", "striped")
HABITATS = ("forests", "deserts", "rivers", "mountains", "swamps", "caves", "meadows")
DIETS = ("berries", "insects", "fish", "seeds", "mushrooms", "leaves", "crabs")
CALLS = ("hums", "whistles", "chirps", "growls", "clicks", "sings", "croaks")
ACTIVE_TIMES = ("at dawn", "at dusk", "at night", "at noon", "in the morning", "in the afternoon", "in the evening")

ANIMAL_PREFIXES = (
    "frost", "ember", "moss", "dune", "reef", "storm", "thorn", "cinder", "mist", "amber", "shadow", "copper",
    "willow", "glimmer", "pebble", "marsh", "sun", "moon", "ash", "cloud", "brook", "flint", "briar", "dusk",
    "coral", "spark", "fern", "hail", "rust", "velvet", "ivy", "salt", "tide", "cobalt", "maple", "quartz",
    "saffron", "ink", "honey", "opal", "rain", "slate", "thistle", "bramble", "sable", "juniper", "lichen", "crystal",
)
ANIMAL_BASES = (
    "otter", "heron", "lizard", "beetle", "fox", "owl", "toad", "badger", "moth", "newt", "hare", "lynx",
    "crane", "shrew", "gecko", "vole", "finch", "stoat", "ferret", "marten", "weasel", "mole", "wren", "lark",
    "swift", "crow", "raven", "bison", "elk", "ibex", "yak", "tapir", "sloth", "lemur", "panda", "koala",
    "llama", "camel", "goat", "ram", "boar", "mink", "seal", "squid", "eel", "carp", "trout", "crab",
)


@dataclass(frozen=True)
class Animal:
    name: str  # e.g. "frost otter"
    size: str
    color: str
    habitat: str
    diet: str
    call: str
    active: str


ASPECTS = ("size", "color", "habitat", "diet", "call", "active time")


_UNWANTED = ("sex", "fuc", "fuk", "fic", "foc", "cum", "bum", "nan", "nul", "non", "kil", "dik", "pis", "gay", "nig", "fag")


def _invented_name(rng: random.Random, syllables: tuple[int, int], endings: tuple[str, ...]) -> str:
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    parts = [rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(*syllables))]
    return ("".join(parts) + rng.choice(endings)).capitalize()


@lru_cache(maxsize=None)
def countries() -> tuple[Country, ...]:
    """48 invented countries, each with four attributes (192 facts). Every name is unique."""
    rng = random.Random(WORLD_SEED)
    taken = set(WORDS)

    def fresh(syllables: tuple[int, int], endings: tuple[str, ...]) -> str:
        while True:
            name = _invented_name(rng, syllables, endings)
            if name.lower() not in taken and not any(bad in name.lower() for bad in _UNWANTED):
                taken.add(name.lower())
                return name

    out = []
    for _ in range(48):
        out.append(
            Country(
                name=fresh((2, 2), ("ria", "land", "via", "stan", "dor", "mia", "nia", "ca")),
                capital=fresh((2, 3), ("", "n", "r", "th", "sk")),
                language=fresh((1, 2), ("nese", "lish", "ric", "vian", "tic")),
                currency=fresh((2, 2), ("l", "n", "r", "x")).lower(),
                river=fresh((2, 2), ("", "n", "ra", "lo", "th")),
            )
        )
    return tuple(out)


@lru_cache(maxsize=None)
def animals() -> tuple[Animal, ...]:
    """48 invented animals ("frost otter", ...) with six attributes each; no two share a name word.

    Animal i gets cell (q, r) of a 7x7 grid and attribute k gets value (q + k*r) mod 7: for two
    attributes k != l the pair of values determines (q, r), so two animals agree on at most one attribute.
    """
    rng = random.Random(WORLD_SEED + 1)
    bases = list(ANIMAL_BASES)
    rng.shuffle(bases)
    cells = rng.sample(range(49), len(ANIMAL_PREFIXES))
    labels = [rng.sample(values, 7) for values in (SIZES, COLORS, HABITATS, DIETS, CALLS, ACTIVE_TIMES)]
    out = []
    for prefix, base, cell in zip(ANIMAL_PREFIXES, bases, cells):
        q, r = divmod(cell, 7)
        size, color, habitat, diet, call, active = (labels[k][(q + k * r) % 7] for k in range(6))
        out.append(Animal(f"{prefix} {base}", size, color, habitat, diet, call, active))
    return tuple(out)


def _check() -> None:
    assert len(set(WORDS)) == len(WORDS), "duplicate word in WORDS"
    assert len(ANIMAL_PREFIXES) == len(ANIMAL_BASES) == len(set(ANIMAL_PREFIXES)) == len(set(ANIMAL_BASES)) == 48


_check()
