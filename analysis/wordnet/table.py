"""Curated class -> WordNet 3.0 noun synset tables for the bundled label sets.

The first WordNet sense of a class name is often the wrong one (``tiger.n.01`` is a fierce
person, ``seal.n.01`` is sealing wax, ``ray.n.01`` is a beam of light), so every class below
was checked by hand against the WordNet 3.0 database (``/usr/share/wordnet``): the comment
on each line is the gloss of the chosen synset (abridged). ``tests/test_wordnet.py`` checks
the names, offsets and glosses against the shipped WordNet 3.0 nouns and, when installed, against
nltk over WordNet 3.0.

Choices a reviewer may want to revisit:

* fruit and vegetable classes (apple, orange, pear, sweet_pepper) use the *fruit/food* sense,
  which is what CIFAR's images show; trees use the *tree* sense, never the wood sense;
* ``aquarium_fish`` has no synset; ``goldfish.n.01`` ("used as pond or aquarium fishes") is the
  closest leaf (``fish.n.01`` would make the class an ancestor of trout, shark and ray);
* ``girl`` uses ``female_child.n.01`` to match ``boy`` -> ``male_child.n.01`` (CIFAR's images
  are children), ``lamp`` the household lamp (``lamp.n.02``, a piece of furniture),
  ``bowl`` the vessel (``bowl.n.01``), ``mushroom`` the fungus (``mushroom.n.02``),
  ``forest``/``mountain``/``plain``/``sea``/``cloud`` the landscape objects.
"""

from __future__ import annotations

CIFAR100_SYNSETS: dict[str, str] = {
    "apple": "apple.n.01",  # fruit with red or yellow or green skin and sweet to tart crisp whitish flesh
    "aquarium_fish": "goldfish.n.01",  # small golden or orange-red freshwater fishes used as pond or aquarium fishes
    "baby": "baby.n.01",  # a very young child (birth to 1 year) who has not yet begun to walk or talk
    "bear": "bear.n.01",  # massive plantigrade carnivorous or omnivorous mammals with long shaggy coats
    "beaver": "beaver.n.07",  # large semiaquatic rodent with webbed hind feet and a broad flat tail (not the fur)
    "bed": "bed.n.01",  # a piece of furniture that provides a place to sleep
    "bee": "bee.n.01",  # any of numerous hairy-bodied insects including social and solitary species
    "beetle": "beetle.n.01",  # insect having biting mouthparts and front wings modified to form horny covers
    "bicycle": "bicycle.n.01",  # a wheeled vehicle that has two wheels and is moved by foot pedals
    "bottle": "bottle.n.01",  # a glass or plastic vessel used for storing drinks or other liquids
    "bowl": "bowl.n.01",  # a round vessel that is open at the top; used chiefly for holding food or liquids
    "boy": "male_child.n.01",  # a youthful male person
    "bridge": "bridge.n.01",  # a structure that allows people or vehicles to cross an obstacle
    "bus": "bus.n.01",  # a vehicle carrying many passengers; used for public transport
    "butterfly": "butterfly.n.01",  # diurnal insect typically having a slender body with knobbed antennae
    "camel": "camel.n.01",  # cud-chewing mammal used as a draft or saddle animal in desert regions
    "can": "can.n.01",  # airtight sealed metal container for food or drink or paint etc.
    "castle": "castle.n.02",  # a large building formerly occupied by a ruler and fortified against attack
    "caterpillar": "caterpillar.n.01",  # a wormlike and often brightly colored and hairy or spiny larva
    "cattle": "cattle.n.01",  # domesticated bovine animals as a group regardless of sex or age
    "chair": "chair.n.01",  # a seat for one person, with a support for the back
    "chimpanzee": "chimpanzee.n.01",  # intelligent somewhat arboreal ape of equatorial African forests
    "clock": "clock.n.01",  # a timepiece that shows the time of day
    "cloud": "cloud.n.02",  # a visible mass of water or ice particles suspended at a considerable altitude
    "cockroach": "cockroach.n.01",  # any of numerous chiefly nocturnal insects; some are domestic pests
    "couch": "sofa.n.01",  # an upholstered seat for more than one person
    "crab": "crab.n.01",  # decapod having eyes on short stalks and a broad flattened carapace
    "crocodile": "crocodile.n.01",  # large voracious aquatic reptile having a long snout with massive jaws
    "cup": "cup.n.01",  # a small open container usually used for drinking; usually has a handle
    "dinosaur": "dinosaur.n.01",  # any of numerous extinct terrestrial reptiles of the Mesozoic era
    "dolphin": "dolphin.n.02",  # any of various small toothed whales with a beaklike snout (not dolphinfish)
    "elephant": "elephant.n.01",  # five-toed pachyderm
    "flatfish": "flatfish.n.02",  # fishes having flattened bodies that swim along the sea floor (not the food)
    "forest": "forest.n.02",  # land that is covered with trees and shrubs
    "fox": "fox.n.01",  # alert carnivorous mammal with pointed muzzle and ears and a bushy tail
    "girl": "female_child.n.01",  # a youthful female person
    "hamster": "hamster.n.01",  # short-tailed Old World burrowing rodent with large cheek pouches
    "house": "house.n.01",  # a dwelling that serves as living quarters for one or more families
    "kangaroo": "kangaroo.n.01",  # any of several herbivorous leaping marsupials of Australia
    "keyboard": "keyboard.n.01",  # device consisting of a set of keys on a piano or typewriter or computer
    "lamp": "lamp.n.02",  # a piece of furniture holding one or more electric light bulbs
    "lawn_mower": "lawn_mower.n.01",  # garden tool for mowing grass on lawns
    "leopard": "leopard.n.02",  # large feline of African and Asian forests (not the pelt)
    "lion": "lion.n.01",  # large gregarious predatory feline of Africa and India
    "lizard": "lizard.n.01",  # relatively long-bodied reptile with usually two pairs of legs and a tapering tail
    "lobster": "lobster.n.02",  # edible marine crustaceans of the families Homaridae and Nephropsidae (not the flesh)
    "man": "man.n.01",  # an adult person who is male (as opposed to a woman)
    "maple_tree": "maple.n.02",  # trees or shrubs of the genus Acer bearing winged seeds in pairs (not the wood)
    "motorcycle": "motorcycle.n.01",  # a motor vehicle with two wheels and a strong frame
    "mountain": "mountain.n.01",  # a land mass that projects well above its surroundings
    "mouse": "mouse.n.01",  # any of numerous small rodents (not the computer device)
    "mushroom": "mushroom.n.02",  # mushrooms and related fleshy fungi (including toadstools, puffballs, morels)
    "oak_tree": "oak.n.02",  # a deciduous tree of the genus Quercus; has acorns and lobed leaves (not the wood)
    "orange": "orange.n.01",  # round yellow to orange fruit of any of several citrus trees
    "orchid": "orchid.n.01",  # any of numerous plants of the orchid family
    "otter": "otter.n.02",  # freshwater carnivorous mammal having webbed and clawed feet (not the fur)
    "palm_tree": "palm.n.03",  # any plant of the family Palmae having an unbranched trunk crowned by large leaves
    "pear": "pear.n.01",  # sweet juicy gritty-textured fruit available in many varieties
    "pickup_truck": "pickup.n.01",  # a light truck with an open body and low sides and a tailboard
    "pine_tree": "pine.n.01",  # a coniferous tree (not the timber)
    "plain": "plain.n.01",  # extensive tract of level open land
    "plate": "plate.n.04",  # dish on which food is served or from which food is eaten
    "poppy": "poppy.n.01",  # annual or biennial or perennial herbs having showy flowers
    "porcupine": "porcupine.n.01",  # relatively large rodents with sharp erectile bristles
    "possum": "opossum.n.02",  # nocturnal arboreal marsupial having a naked prehensile tail
    "rabbit": "rabbit.n.01",  # burrowing animals of the family Leporidae having long ears and short tails
    "raccoon": "raccoon.n.02",  # an omnivorous nocturnal mammal native to North America (not the fur)
    "ray": "ray.n.07",  # cartilaginous fishes having horizontally flattened bodies (not a beam of light)
    "road": "road.n.01",  # an open way (generally public) for travel or transportation
    "rocket": "rocket.n.01",  # any vehicle self-propelled by a rocket engine
    "rose": "rose.n.01",  # any of many shrubs of the genus Rosa that bear roses
    "sea": "sea.n.01",  # a division of an ocean or a large body of salt water
    "seal": "seal.n.09",  # marine mammals that come on shore to breed (not sealing wax)
    "shark": "shark.n.01",  # any of numerous elongate mostly marine carnivorous fishes
    "shrew": "shrew.n.02",  # small mouselike mammal with a long snout; related to moles (not the nagging woman)
    "skunk": "skunk.n.04",  # American musteline mammal ejecting an intensely malodorous fluid (not a rotter)
    "skyscraper": "skyscraper.n.01",  # a very tall building with many stories
    "snail": "snail.n.01",  # freshwater or marine or terrestrial gastropod mollusk usually having a shell
    "snake": "snake.n.01",  # limbless scaly elongate reptile; some are venomous
    "spider": "spider.n.01",  # predatory arachnid with eight legs, two poison fangs, two feelers
    "squirrel": "squirrel.n.01",  # a kind of arboreal rodent having a long bushy tail
    "streetcar": "streetcar.n.01",  # a wheeled vehicle that runs on rails and is propelled by electricity
    "sunflower": "sunflower.n.01",  # any plant of the genus Helianthus having large flower heads
    "sweet_pepper": "sweet_pepper.n.02",  # large mild crisp thick-walled capsicum peppers (the vegetable)
    "table": "table.n.02",  # a piece of furniture having a smooth flat top supported by legs (not a data table)
    "tank": "tank.n.01",  # an enclosed armored military vehicle; has a cannon and moves on caterpillar treads
    "telephone": "telephone.n.01",  # electronic equipment that converts sound into electrical signals
    "television": "television_receiver.n.01",  # an electronic device that receives television signals and displays them
    "tiger": "tiger.n.02",  # large feline of forests in most of Asia having a tawny coat with black stripes
    "tractor": "tractor.n.01",  # a wheeled vehicle with large wheels; used in farming
    "train": "train.n.01",  # public transport provided by a line of railway cars coupled together
    "trout": "trout.n.02",  # game and food fishes of cool fresh waters (not the flesh)
    "tulip": "tulip.n.01",  # any of numerous perennial bulbous herbs having linear or broadly lanceolate leaves
    "turtle": "turtle.n.02",  # aquatic and land reptiles having a bony shell and flipper-like limbs (not the sweater)
    "wardrobe": "wardrobe.n.01",  # a tall piece of furniture that provides storage space for clothes
    "whale": "whale.n.02",  # any of the larger cetacean mammals (not a very large person)
    "willow_tree": "willow.n.01",  # any of numerous deciduous trees and shrubs of the genus Salix
    "wolf": "wolf.n.01",  # any of various predatory carnivorous canine mammals
    "woman": "woman.n.01",  # an adult female person (as opposed to a man)
    "worm": "worm.n.01",  # any of numerous relatively small elongated soft-bodied animals
}

CIFAR10_SYNSETS: dict[str, str] = {
    "airplane": "airplane.n.01",  # an aircraft that has a fixed wing and is powered by propellers or jets
    "automobile": "car.n.01",  # a motor vehicle with four wheels
    "bird": "bird.n.01",  # warm-blooded egg-laying vertebrates characterized by feathers
    "cat": "cat.n.01",  # feline mammal usually having thick soft fur and no ability to roar
    "deer": "deer.n.01",  # distinguished from Bovidae by the male's having solid deciduous antlers
    "dog": "dog.n.01",  # a member of the genus Canis
    "frog": "frog.n.01",  # any of various tailless stout-bodied amphibians with long hind limbs
    "horse": "horse.n.01",  # solid-hoofed herbivorous quadruped domesticated since prehistoric times
    "ship": "ship.n.01",  # a vessel that carries passengers or freight
    "truck": "truck.n.01",  # an automotive vehicle suitable for hauling
}

#: Fashion-MNIST (Zalando's class names). ``T-shirt/top`` is WordNet's T-shirt (``jersey.n.03``, whose
#: lemmas are jersey, T-shirt, tee_shirt); ``Bag`` is the handbag sense (``bag.n.04``: the images are
#: handbags, not sacks); ``Ankle boot`` has no lemma of its own and takes ``boot.n.01``.
FASHION_MNIST_SYNSETS: dict[str, str] = {
    "t_shirt/top": "jersey.n.03",  # a close-fitting pullover shirt (lemmas jersey, T-shirt, tee_shirt)
    "trouser": "trouser.n.01",  # a garment extending from the waist to the knee or ankle, covering each leg separately
    "pullover": "pullover.n.01",  # a sweater that is put on by pulling it over the head
    "dress": "dress.n.01",  # a one-piece garment for a woman; has skirt and bodice
    "coat": "coat.n.01",  # an outer garment that has sleeves and covers the body from shoulder down; worn outdoors
    "sandal": "sandal.n.01",  # a shoe consisting of a sole fastened by straps to the foot
    "shirt": "shirt.n.01",  # a garment worn on the upper half of the body
    "sneaker": "gym_shoe.n.01",  # a canvas shoe with a pliable rubber sole (lemmas gym_shoe, sneaker, tennis_shoe)
    "bag": "bag.n.04",  # a container used for carrying money and small personal items (lemmas bag, handbag, purse)
    "ankle_boot": "boot.n.01",  # footwear that covers the whole foot and lower leg
}

#: MNIST digits, named by their words: the cardinal-number senses (``zero.n.01`` is "nothing").
MNIST_SYNSETS: dict[str, str] = {
    "zero": "zero.n.02",  # a mathematical element that when added to another number yields the same number
    "one": "one.n.01",  # the smallest whole number or a numeral representing this number
    "two": "two.n.01",  # the cardinal number that is the sum of one and one
    "three": "three.n.01",  # the cardinal number that is the sum of one and one and one
    "four": "four.n.01",  # the cardinal number that is the sum of three and one
    "five": "five.n.01",  # the cardinal number that is the sum of four and one
    "six": "six.n.01",  # the cardinal number that is the sum of five and one
    "seven": "seven.n.01",  # the cardinal number that is the sum of six and one
    "eight": "eight.n.01",  # the cardinal number that is the sum of seven and one
    "nine": "nine.n.01",  # the cardinal number that is the sum of eight and one
}

LABEL_SETS: dict[str, dict[str, str]] = {"cifar100": CIFAR100_SYNSETS, "cifar10": CIFAR10_SYNSETS,
                                         "fashion-mnist": FASHION_MNIST_SYNSETS, "mnist": MNIST_SYNSETS}


def curated_synset(class_name: str) -> str | None:
    """The curated synset of a bundled class name, or None.

    >>> curated_synset("tiger"), curated_synset("Maple Tree"), curated_synset("zebra")
    ('tiger.n.02', 'maple.n.02', None)
    >>> curated_synset("T-shirt/top"), curated_synset("Ankle boot"), curated_synset("zero")
    ('jersey.n.03', 'boot.n.01', 'zero.n.02')
    """
    key = class_name.strip().lower().replace(" ", "_").replace("-", "_")
    for table in LABEL_SETS.values():
        if key in table:
            return table[key]
    return None
