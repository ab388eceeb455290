"""The shard's p_hot predictor: features -> River model (or the heat prior while it warms up) -> a pending
prediction that is labelled H later and only then learned. Pure; the flow and the offline evaluators use it alike.
"""

from __future__ import annotations

import random

from flows.features import object_features
from flows.heat import poisson_at_least
from flows.labels import DelayedLabels, Labelled
from flows.model import OnlineModel, hat_bins


class RiverPredictor:
    def __init__(self, horizon_s: float, hot_reads: int, seed: int = 0, forest_fraction: float = 0.05,
                 warmup: int = 100, window: int = 2000, forest_models: int = 5, forest_kind: str = "amf",
                 label_fraction: float = 1.0, record: bool = False):
        if not 0 < label_fraction <= 1:
            raise ValueError("label_fraction must be in (0, 1]")
        self.labels = DelayedLabels(horizon_s, hot_reads)
        self.model = OnlineModel(seed=seed, forest_fraction=forest_fraction, warmup=warmup, window=window,
                                 forest_models=forest_models, forest_kind=forest_kind)
        self.hot_reads = hot_reads
        # Every evaluation is served a p_hot; a seeded random share of them is also queued for a label and learned
        # (unbiased; bounds the cost of features kept, label bookkeeping and learning - docs/flows.md).
        self.label_fraction = label_fraction
        self.rng = random.Random(seed ^ 0x5EED)
        # Offline evaluators set record=True and drain `labelled`: (prediction served, label) pairs in label order.
        self.record = record
        self.labelled: list[Labelled] = []
        self.labels_learned = 0

    def on_evaluate(self, shard, key: str, rec, at: float, mu: float, read_heat: list[float],
                    write_heat: list[float]) -> float:
        x = object_features(shard.params.heat, rec, at, read_heat, write_heat)
        model = self.model
        labelled = self.label_fraction >= 1.0 or self.rng.random() < self.label_fraction
        # The model's basis of x, computed once: for the prediction and, kept with the label, for its learning.
        basis = hat_bins(x) if labelled or model.uses_basis else None
        p = model.predict(x, basis)
        # The prior's p_hot: served while no model beats it, and kept with a label so that the model is scored
        # against it on the same labels (flows/model.py).
        prior = poisson_at_least(mu, self.hot_reads) if p is None or labelled else None
        if p is None:
            p = prior
        if labelled:
            self.labels.add(key, at, x, p, basis, prior)
        return p

    def on_read(self, key: str, t: float) -> None:
        self.labels.on_read(key, t)

    def advance(self, watermark: float) -> None:
        if not self.labels.due(watermark):  # the common case, once per event: keep it cheap
            return
        for lab in self.labels.pop_due(watermark):
            self.model.learn(lab.x, lab.y, lab.basis, lab.prior)
            self.labels_learned += 1
            lab.basis = None
            if self.record:
                # Compact: feature values in feature_names() order (dicts of millions of labels do not fit).
                lab.x = tuple(lab.x.values())
                self.labelled.append(lab)

    def upgrade_from_format_3(self) -> None:
        """A predictor restored from a format-3 snapshot (flows.shard.restore_shard): its pending predictions
        carry no prior, and its model has no scores against the prior yet."""
        for pending in self.labels.pending():
            pending.prior = None
        self.model.upgrade_from_format_3()


def make_predictor(settings, shard_id: int = 0, record: bool = False) -> RiverPredictor:
    f = settings.flow
    return RiverPredictor(
        horizon_s=f.horizon_s,
        hot_reads=f.hot_reads,
        # Seeded per shard: reproducible, and identical whatever worker the shard runs on.
        seed=f.model_seed + shard_id,
        forest_fraction=f.forest_fraction,
        warmup=f.model_warmup,
        window=f.model_window,
        forest_models=f.forest_models,
        forest_kind=f.forest_kind,
        label_fraction=f.label_fraction,
        record=record,
    )
