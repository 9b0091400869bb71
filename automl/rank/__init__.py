"""The rank stage: a class-balanced probe set (:mod:`.probe`), every bank model's embeddings of it, cached
(:mod:`.embeddings`), transferability scores (:mod:`automl.transferability`) and the predicted fine-tuned
accuracy (:mod:`automl.predictor`), put together as a :class:`Ranking` (:mod:`.stage`)."""

from automl.rank.embeddings import FeatureError, Features, extract_bank, extract_features, feature_key
from automl.rank.probe import sample_probe
from automl.rank.stage import RankedModel, Ranking, rank_bank, ranking_table, write_ranking_csv

__all__ = ["FeatureError", "Features", "RankedModel", "Ranking", "extract_bank", "extract_features", "feature_key",
           "rank_bank", "ranking_table", "sample_probe", "write_ranking_csv"]
