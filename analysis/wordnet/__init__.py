"""WordNet for Blockout: curated synsets, a shipped snapshot, nltk-exact similarity, references.

Nothing here needs nltk or network access for the bundled label sets (CIFAR-100, CIFAR-10);
:mod:`analysis.wordnet.nltk_adapter` gives nltk's reader over local WordNet 3.0 files when wanted.
"""

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
from analysis.wordnet.similarity import (
    lowest_common_hypernym,
    lowest_common_hypernyms,
    path_similarity,
    shortest_path_distance,
    wordnet_distance_matrix,
    wup_similarity,
)
from analysis.wordnet.snapshot import Snapshot, SynsetInfo, build_snapshot, bundled_snapshot
from analysis.wordnet.table import CIFAR10_SYNSETS, CIFAR100_SYNSETS, curated_synset

__all__ = [
    "CIFAR10_SYNSETS", "CIFAR100_SYNSETS", "ReferenceGrouping", "Snapshot", "SynsetInfo",
    "build_snapshot", "bundled_snapshot", "chosen_path", "class_lch_labeler", "class_synsets",
    "coarse_grouping", "curated_synset", "lch_labeler", "lowest_common_hypernym",
    "lowest_common_hypernyms", "path_similarity", "require_synsets", "shortest_path_distance",
    "wordnet_depth_groupings", "wordnet_distance_matrix", "wordnet_distances", "wup_similarity",
]
