"""p_hot model: River pipelines learning online, chosen by prequential score. Pure; shared by the flow and the
offline evaluators.

Candidates: a logistic regression over a piecewise-linear basis of the features and of four log-ratios of them
(`FuncTransformer(hat_bins) | LogisticRegression`: an additive model, non-linear in each feature at the cost of a
linear model; AdaGrad, whose per-weight learning rates suit basis features of very different frequencies; the
transformer is this pipeline's preprocessing, where a StandardScaler would be for raw features), and a tree ensemble - an
Aggregated Mondrian Forest by default (online, well calibrated) or an Adaptive Random Forest (`forest_kind="arf"`,
drift-aware). The logistic regression learns from every labelled prediction (~10 us a label); the forest (~250 us
a label) from a seeded random share of them (`forest_fraction`): learning it from all would cap the flow at a few
thousand events/s (docs/flows.md). Both are scored prequentially - predict first, then learn - on exactly the
forest's share, so the comparison is fair, with a rolling log loss (a proper scoring rule: p_hot feeds expected
costs, so calibration matters, and the window lets the choice follow drift).

The heat's Poisson prior (what serves before any model) is a contender too: every label carries the prior's p_hot
at its prediction, and the regression is scored against it on every label. A model serves only once it has
`warmup` scored labels (the forest: `warmup` of its share) and only while the regression's rolling log loss is
below the prior's on the same labels; otherwise `predict` returns None and the caller serves the prior. On the
demo's trace sample the regression beats the prior after 50 labels in every shard (log loss 0.28-0.69 vs
0.44-0.76; 0.31-0.49 vs 0.58-0.93 after 300): a fixed warm-up counted in the forest's share (4,000 labels at 5 %)
kept the worse prior serving for the whole demo.

A StandardScaler | LogisticRegression pipeline used to be a third candidate: it never won on the Twitter trace,
scored 0.002-0.003 ROC-AUC below the binned one, and its learning was a third of the flow's learning time.
"""

from __future__ import annotations

import math
import random

from river import compose, forest, linear_model, metrics, optim, utils

BINNED, FOREST, PRIOR = "logreg_binned", "forest", "prior"
# AdaGrad step size of the binned logistic regression (best of 0.05-0.3 on the Twitter trace, bench/prediction_quality.py).
BINNED_LEARNING_RATE = 0.1

# Bin widths by feature-name prefix (features are logs, ratios or shares). Each value is spread over the two
# nearest knots of its grid (a "hat" basis: weights 1 - f and f): a logistic regression over these is an additive
# model of piecewise-linear functions - non-linear in each feature, as cheap as a linear one. One-hot bins (step
# functions) scored 0.0011 ROC-AUC less on the Twitter trace (replay of 528k labels: 0.9050 vs 0.9061).
_BIN_WIDTHS = (("read_heat_", 0.25), ("write_heat_", 0.25), ("read_ratio_", 0.1), ("log_reads", 0.35),
               ("log_size", 0.5), ("log_age_s", 0.5), ("log_idle_s", 0.5), ("write_share", 0.1))
# Log-ratios an additive model cannot form from one feature at a time (a forest gets them by splitting on both):
# (name, a, b, c, bin width) -> a - c * b. Reads per unit of age and of idle time, age over idle time, reads per
# size^0.3. With them the replay scored 0.9092 (0.9061 without); the RandomForest given the same four scored
# 0.9089 (0.9075 without) - docs/flows.md.
DERIVED_RATIOS = (("reads_per_age", "log_reads", "log_age_s", 1.0, 0.5),
            ("reads_per_idle", "log_reads", "log_idle_s", 1.0, 0.5),
            ("age_per_idle", "log_age_s", "log_idle_s", 1.0, 0.5),
            ("reads_per_size", "log_reads", "log_size", 0.3, 0.5))
# feature name -> (bin width, {knot index i: (basis name of knot i, of knot i + 1)}, name), or None when the
# feature is not binned. Basis names are cached: formatting them was a third of the binned model's prediction cost.
_BINS_OF: dict[str, tuple[float, dict[int, tuple[str, str]], str] | None] = {}
_DERIVED_SPECS = [(a, b, c, (width, {}, name)) for name, a, b, c, width in DERIVED_RATIOS]


def _bins_of(name: str) -> tuple[float, dict[int, tuple[str, str]], str] | None:
    width = next((w for p, w in _BIN_WIDTHS if name.startswith(p)), None)
    spec = _BINS_OF[name] = (width, {}, name) if width is not None else None
    return spec


_UNSEEN = object()


def _knot_pair(spec: tuple[float, dict[int, tuple[str, str]], str], i: int) -> tuple[str, str]:
    name = spec[2]
    pair = spec[1][i] = (f"{name}={i}", f"{name}={i + 1}")
    return pair


def hat_bins(x: dict[str, float]) -> dict[str, float]:
    """The binned features and derived log-ratios of `x`, each spread over its two nearest knots. A basis feature
    of weight 0 is left out: without L2 (River's default) it changes neither the prediction nor, its gradient
    being 0, any weight, and a sixth of the basis features are 0 on the Twitter trace (values on a knot).
    Runs once per evaluation (most events): one dict lookup per knot pair, no Python-level helper calls."""
    specs = _BINS_OF
    binned: list[tuple[tuple, float]] = []  # (spec, value in bin widths)
    for name, value in x.items():
        spec = specs.get(name, _UNSEEN)
        if spec is _UNSEEN:
            spec = _bins_of(name)
        if spec is not None:
            binned.append((spec, value / spec[0]))
    for a, b_name, c, spec in _DERIVED_SPECS:
        va, vb = x.get(a), x.get(b_name)
        if va is not None and vb is not None:
            binned.append((spec, (va - c * vb) / spec[0]))
    out: dict[str, float] = {}
    floor = math.floor
    for spec, b in binned:
        i = floor(b)
        f = b - i
        pair = spec[1].get(i) or _knot_pair(spec, i)
        if f:
            out[pair[0]] = 1.0 - f
            out[pair[1]] = f
        else:  # a value on a knot: the other weight is 0 and would only cost (see above)
            out[pair[0]] = 1.0
    return out


def make_forest(kind: str, models: int, seed: int):
    """"amf": Aggregated Mondrian Forest (online, well calibrated); "arf": Adaptive Random Forest (drift-aware)."""
    if kind == "amf":
        return forest.AMFClassifier(n_estimators=models, seed=seed)
    if kind == "arf":
        return forest.ARFClassifier(n_models=models, seed=seed)
    raise ValueError(f"unknown forest kind {kind!r} (amf or arf)")


class OnlineModel:
    def __init__(self, seed: int = 0, forest_fraction: float = 0.05, window: int = 2000, warmup: int = 100,
                 forest_models: int = 5, forest_kind: str = "amf"):
        if not 0 < forest_fraction <= 1:
            raise ValueError("forest_fraction must be in (0, 1]")
        self.models = {
            BINNED: compose.FuncTransformer(hat_bins)
            | linear_model.LogisticRegression(optimizer=optim.AdaGrad(BINNED_LEARNING_RATE)),
            FOREST: make_forest(forest_kind, forest_models, seed),
        }
        # On the forest's share: the regression against the forest.
        self.scores = {name: utils.Rolling(metrics.LogLoss, window_size=window) for name in self.models}
        # On every label that carries the prior's p_hot: the regression against the prior.
        self.vs_prior = {name: utils.Rolling(metrics.LogLoss, window_size=window) for name in (BINNED, PRIOR)}
        self.forest_fraction = forest_fraction
        self.warmup = warmup
        self.rng = random.Random(seed)
        self.scored = 0  # labels of the forest's share (scored for both models)
        self.learned = 0
        self.prior_scored = 0  # labels scored against the prior
        self.selected = PRIOR

    @staticmethod
    def _p(model, x: dict[str, float]) -> float:
        p = model.predict_proba_one(x).get(True, 0.0)
        return p if math.isfinite(p) else 0.5

    @property
    def _binned_regression(self):
        # The pipeline's last step. Callers that already hold `hat_bins(x)` (computed once per prediction and
        # kept with its pending label) use it directly: exactly what the pipeline computes, without transforming
        # the same x again for the prediction, the label's scoring and the label's learning.
        return self.models[BINNED].steps["LogisticRegression"]

    @property
    def uses_basis(self) -> bool:
        """Does `predict` need `hat_bins(x)` (the binned regression serves)?"""
        return self.selected == BINNED

    def predict(self, x: dict[str, float], basis: dict[str, float] | None = None) -> float | None:
        """p_hot from the currently best model, or None while the prior serves (warming up, or scoring better)."""
        selected = self.selected
        if selected == BINNED:
            return self._p(self._binned_regression, basis if basis is not None else hat_bins(x))
        if selected == FOREST:
            return self._p(self.models[FOREST], x)
        return None

    def learn(self, x: dict[str, float], y: bool, basis: dict[str, float] | None = None,
              prior: float | None = None) -> None:
        """Learn one label (`basis`: hat_bins(x), if known; `prior`: the heat prior's p_hot when the prediction was
        made, if known). Each model is scored on it first (prequentially), then learns."""
        if basis is None:
            basis = hat_bins(x)
        regression = self._binned_regression
        p_regression = self._p(regression, basis)
        if prior is not None:
            _score(self.vs_prior[PRIOR], y, prior)
            _score(self.vs_prior[BINNED], y, p_regression)
            self.prior_scored += 1
        if self.rng.random() < self.forest_fraction:
            _score(self.scores[BINNED], y, p_regression)
            _score(self.scores[FOREST], y, self._p(self.models[FOREST], x))
            self.models[FOREST].learn_one(x, y)
            self.scored += 1
        regression.learn_one(basis, y)
        self.learned += 1
        self.selected = self._select()

    def _select(self) -> str:
        # The prior serves until the regression has `warmup` labels and whenever it scores worse than the prior on
        # the window. Without scores against the prior (callers that pass none; a state restored from before they
        # were kept, until `warmup` of them exist) the regression is judged by its count alone.
        if self.learned < self.warmup:
            return PRIOR
        vs = self.vs_prior
        if self.prior_scored >= self.warmup and not vs[BINNED].get() < vs[PRIOR].get():
            return PRIOR
        # The forest only on enough of its share and strictly better there (on a tie the cheaper model serves).
        if self.scored >= self.warmup and self.scores[FOREST].get() < self.scores[BINNED].get():
            return FOREST
        return BINNED

    def upgrade_from_format_3(self) -> None:
        """A model restored from before it was scored against the prior: it keeps serving by its label count
        until `warmup` scores against the prior exist (see _select)."""
        window = self.scores[BINNED].window_size
        self.vs_prior = {name: utils.Rolling(metrics.LogLoss, window_size=window) for name in (BINNED, PRIOR)}
        self.prior_scored = 0
        self.selected = self._select()

    def summary(self) -> dict[str, float | int | str]:
        return {"selected": self.selected, "scored": self.scored, "learned": self.learned,
                **{f"logloss_{n}": s.get() for n, s in self.scores.items()},
                "prior_scored": self.prior_scored,
                **{f"vs_prior_logloss_{n}": s.get() for n, s in self.vs_prior.items()}}


def _score(rolling, y: bool, p: float) -> None:
    p = min(1 - 1e-9, max(1e-9, p))
    rolling.update(y, {True: p, False: 1 - p})
