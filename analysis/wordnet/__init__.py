"""WordNet for Blockout: the whole WordNet 3.0 noun hierarchy (shipped), curated synsets,
class -> synset resolution with reported guesses, nltk-exact similarity, references.

Nothing here needs nltk or network access; :mod:`analysis.wordnet.nltk_adapter` gives nltk's
reader over local WordNet 3.0 files when wanted (the tests compare against it).
"""

from analysis.wordnet.nouns import SynsetInfo, WordNet, load_wordnet
from analysis.wordnet.references import (
    ReferenceGrouping,
    chosen_path,
    class_lch_labeler,
    class_synsets,
    coarse_grouping,
    lch_labeler,
    require_synsets,
    wordnet_depth_groupings,
    wordnet_distances,
)
from analysis.wordnet.resolve import (ClassSynset, check_synset_map, guess_note, load_synset_map,
                                      resolve_class_synsets)
from analysis.wordnet.similarity import (
    lowest_common_hypernym,
    lowest_common_hypernyms,
    path_similarity,
    shortest_path_distance,
    wordnet_distance_matrix,
    wup_similarity,
)
from analysis.wordnet.table import CIFAR10_SYNSETS, CIFAR100_SYNSETS, curated_synset

#: Former name of :func:`load_wordnet` (when only a snapshot of the CIFAR synsets was shipped).
bundled_snapshot = load_wordnet

__all__ = [
    "CIFAR10_SYNSETS", "CIFAR100_SYNSETS", "ClassSynset", "ReferenceGrouping", "SynsetInfo", "WordNet",
    "bundled_snapshot", "check_synset_map", "chosen_path", "class_lch_labeler", "class_synsets",
    "coarse_grouping", "curated_synset", "guess_note", "lch_labeler", "load_synset_map", "load_wordnet",
    "lowest_common_hypernym", "lowest_common_hypernyms", "path_similarity", "require_synsets",
    "resolve_class_synsets", "shortest_path_distance", "wordnet_depth_groupings", "wordnet_distance_matrix",
    "wordnet_distances", "wup_similarity",
]
