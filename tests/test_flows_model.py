"""Pure p_hot pieces: delayed labels (never from the future), features, the online model and the shard core."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dim.config import Settings
from flows.features import feature_names, object_features
from flows.heat import HeatParams, HeatState
from flows.labels import DelayedLabels
from flows.model import BINNED, FOREST, OnlineModel
from flows.offline import run_offline

H = 86400.0
T0 = 1_700_000_000.0


def test_labels_are_released_only_after_the_horizon_and_count_only_later_reads():
    labels = DelayedLabels(horizon_s=H, hot_reads=2)
    labels.on_read("a", T0)  # before the prediction: a feature, not part of the label
    labels.add("a", T0, {"f": 1.0}, 0.5)
    labels.add("b", T0 + 10, {"f": 2.0}, 0.5)
    labels.on_read("a", T0 + 100)
    labels.on_read("b", T0 + 20)
    labels.on_read("a", T0 + H + 1)  # after the horizon: not counted
    assert labels.pop_due(T0 + H - 1) == []  # the future is not known yet
    due = labels.pop_due(T0 + H)
    assert [(d.key, d.y) for d in due] == [("a", False)]
    labels.on_read("b", T0 + 30)
    due = labels.pop_due(T0 + H + 10)
    assert [(d.key, d.y, d.p) for d in due] == [("b", True, 0.5)]
    assert len(labels) == 0


def test_settled_predictions_stay_positive():
    labels = DelayedLabels(horizon_s=100.0, hot_reads=2)
    for i in range(5):
        labels.add("k", T0 + i, {}, 0.1)
    for i in range(50):
        labels.on_read("k", T0 + 5 + i)
    out = labels.pop_due(T0 + 1000)
    assert [d.y for d in out] == [True] * 5


def test_features_have_the_issue_list_and_are_finite():
    p = HeatParams()
    s = HeatState(p)
    s.add(p, T0, "PUT", 0, 500)
    s.add(p, T0 + 60, "GET", 500, 500)
    x = object_features(p, s, T0 + 7200)
    assert list(x) == feature_names(p)
    for name in ("read_heat_1h", "write_heat_7d", "read_ratio_1h_1d", "log_size", "log_age_s", "log_idle_s",
                 "hour_sin", "dow_cos", "write_share"):
        assert name in x
    assert all(math.isfinite(v) for v in x.values())
    assert x["write_share"] == 0.5 and x["log_idle_s"] == math.log1p(7140)


def test_online_model_warms_up_then_serves_the_better_scoring_model():
    m = OnlineModel(seed=1, forest_fraction=1.0, warmup=50, window=500)
    rng = random.Random(0)
    assert m.predict({"a": 1.0}) is None
    # An XOR concept of two binned features: no additive model of bins fits it, the forest does.
    for _ in range(1500):
        a, b = rng.random(), rng.random()
        m.learn({"read_ratio_a": a, "write_share": b}, (a > 0.5) != (b > 0.5))
    assert m.selected == FOREST and m.scores[FOREST].get() < m.scores[BINNED].get()
    assert 0.0 <= m.predict({"read_ratio_a": 0.9, "write_share": 0.1}) <= 1.0


def test_the_binned_logistic_regression_wins_an_additive_concept():
    m = OnlineModel(seed=1, forest_fraction=1.0, warmup=50, window=500)
    rng = random.Random(0)
    # Additive and non-linear in each feature (a ramp in one, a bump in the other): what the piecewise-linear
    # basis models exactly.
    for _ in range(4000):
        a, b = rng.random(), rng.random()
        p = 0.1 + 0.6 * min(1.0, max(0.0, (a - 0.5) / 0.3)) + 0.25 * max(0.0, 1 - abs(b - 0.45) / 0.2)
        m.learn({"read_ratio_a": a, "write_share": b}, rng.random() < p)
    assert m.selected == BINNED and m.scores[BINNED].get() < m.scores[FOREST].get()


def test_the_prior_serves_until_the_regression_beats_it_on_the_same_labels():
    # The heat prior is a contender: a model replaces it only with `warmup` labels and a lower rolling log loss
    # than the prior's on the same labels - and gives way to it again when it stops being better.
    from flows.model import PRIOR

    rng = random.Random(4)

    def labels(n, informative_prior):
        for _ in range(n):
            a, b = rng.random(), rng.random()
            p_true = 0.05 + 0.9 * a if not informative_prior else 0.05 + 0.9 * b
            # the features carry `a`; the prior knows `b` (when informative) or says 0.5
            yield {"read_ratio_a": a}, rng.random() < p_true, (p_true if informative_prior else 0.5)

    m = OnlineModel(seed=1, forest_fraction=0.05, warmup=100, window=300)
    for i, (x, y, prior) in enumerate(labels(99, informative_prior=False)):
        m.learn(x, y, prior=prior)
        assert m.selected == PRIOR and m.predict(x) is None  # warming up, however good it already is
    for x, y, prior in labels(400, informative_prior=False):
        m.learn(x, y, prior=prior)
    assert m.selected == BINNED and m.predict({"read_ratio_a": 0.9}) > 0.6
    assert m.vs_prior[BINNED].get() < m.vs_prior[PRIOR].get()
    # The world changes: what the model sees stops mattering and the prior knows the answer.
    for x, y, prior in labels(600, informative_prior=True):
        m.learn(x, y, prior=prior)
    assert m.selected == PRIOR and m.predict({"read_ratio_a": 0.9}) is None
    assert m.summary()["prior_scored"] == 1099 and m.summary()["selected"] == PRIOR


def test_without_a_prior_the_model_serves_by_its_label_count():
    m = OnlineModel(seed=1, forest_fraction=0.05, warmup=30, window=300)
    for i in range(30):
        assert m.predict({"write_share": 0.5}) is None
        m.learn({"write_share": 0.5}, i % 2 == 0)
    assert m.selected == BINNED and m.predict({"write_share": 0.5}) is not None and m.prior_scored == 0


def test_the_basis_spreads_each_value_over_its_two_nearest_knots_and_adds_the_log_ratios():
    from flows.model import hat_bins

    out = hat_bins({"write_share": 0.25, "log_reads": 2.0, "log_age_s": 10.0, "log_idle_s": 4.0,
                    "log_size": 5.0, "hour_sin": 0.5})
    assert math.isclose(out["write_share=2"], 0.5) and math.isclose(out["write_share=3"], 0.5)
    assert not any(k.startswith("hour_sin") for k in out)  # not binned
    # reads per age: 2 - 10 = -8 -> knot -16 of width 0.5 exactly; the next knot's weight is 0 and left out
    assert math.isclose(out["reads_per_age=-16"], 1.0) and "reads_per_age=-15" not in out
    assert math.isclose(out["age_per_idle=12"], 1.0)  # 10 - 4 = 6
    assert math.isclose(out["reads_per_size=1"], 1.0)  # 2 - 0.3 * 5 = 0.5 -> knot 1
    assert math.isclose(out["log_idle_s=8"], 1.0) and "log_idle_s=9" not in out
    for name in ("log_reads", "log_age_s", "log_idle_s", "log_size", "write_share"):
        assert math.isclose(sum(v for k, v in out.items() if k.startswith(name + "=")), 1.0)


def test_offline_core_learns_from_delayed_labels_and_is_deterministic():
    s = Settings()
    s.flow.model_warmup = 20
    s.flow.forest_fraction = 0.5
    s.flow.reads_min_count = 10  # a small stream: let the calibration know reads soon, so "cold" is offered
    rng = random.Random(5)
    events = []
    for i in range(4000):
        k = min(int(rng.paretovariate(1.2)), 200)
        events.append((f"b/o{k}", T0 + i * 60.0, "GET", 10, 10))
    a = run_offline(s, events, shards=2)
    b = run_offline(s, events, shards=2)
    labelled = a.labelled
    assert labelled and all(lab.at + s.flow.horizon_s <= T0 + 4000 * 60.0 for lab in labelled)
    assert [(x.key, x.at, x.y, x.p) for x in labelled] == [(x.key, x.at, x.y, x.p) for x in b.labelled]
    assert [o.model_dump() for o in a.outputs] == [o.model_dump() for o in b.outputs]
    assert any(st.predictor.model.scored >= 20 for st in a.shards)
    assert {o.outlook for o in a.outputs if hasattr(o, "outlook")} >= {"hot", "cold"}


def test_a_basis_kept_with_the_label_gives_what_the_pipeline_gives():
    # The predictor computes hat_bins(x) once per prediction and learns its label from it later: the model must
    # end up exactly where River's pipeline (transforming x itself at every call) would.
    from river import compose, linear_model, optim

    from flows.model import BINNED_LEARNING_RATE, hat_bins

    rng = random.Random(3)
    river_pipeline = compose.FuncTransformer(hat_bins) | linear_model.LogisticRegression(
        optimizer=optim.AdaGrad(BINNED_LEARNING_RATE))
    cached = OnlineModel(seed=2, forest_fraction=0.3, warmup=20, window=200)
    plain = OnlineModel(seed=2, forest_fraction=0.3, warmup=20, window=200)
    for _ in range(600):
        x = {"log_reads": rng.uniform(0, 5), "log_idle_s": rng.uniform(0, 12), "log_age_s": rng.uniform(0, 14),
             "write_share": rng.random(), "hour_sin": rng.uniform(-1, 1)}
        y = rng.random() < 0.3 + 0.1 * x["log_reads"] - 0.02 * x["log_idle_s"]
        basis = hat_bins(x)
        p_cached, p_plain = cached.predict(x, basis), plain.predict(x)
        assert p_cached == p_plain
        if p_plain is not None and plain.selected == BINNED:
            assert p_plain == plain.models[BINNED].predict_proba_one(x)[True]
        cached.learn(x, y, basis)
        plain.learn(x, y)
        river_pipeline.learn_one(x, y)
    assert cached.summary() == plain.summary() and cached.scored > 20
    weights = [m["LogisticRegression"]._weights.to_dict()
               for m in (cached.models[BINNED], plain.models[BINNED], river_pipeline)]
    assert weights[0] == weights[1] == weights[2] and len(weights[0]) > 20


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["read", "predict", "advance"]), st.integers(0, 3),
                          st.floats(min_value=-200, max_value=400)), max_size=120),
       st.integers(min_value=1, max_value=3))
def test_every_label_counts_exactly_the_later_reads_inside_its_horizon(steps, k):
    # Reference: a prediction's label is whether >= k reads of its object come after it in stream order, with event
    # time in [at, at + horizon], before the label is released (reads later than that are lost to it by design).
    labels, horizon, clock = DelayedLabels(horizon_s=300.0, hot_reads=k), 300.0, T0
    made: list[tuple[int, str, float]] = []  # (step index, key, at)
    reads: list[tuple[int, str, float]] = []
    released: dict[int, tuple[bool, int, float]] = {}  # prediction's step -> (label, release step, watermark)
    for i, (what, obj, dt) in enumerate(steps):
        key, t = f"o{obj}", clock + dt
        if what == "read":
            labels.on_read(key, t)
            reads.append((i, key, t))
        elif what == "predict":
            labels.add(key, t, {"i": float(i)}, 0.5)
            made.append((i, key, t))
        else:
            clock = max(clock, t)
        for lab in labels.pop_due(clock - 60.0):
            released[int(lab.x["i"])] = (lab.y, i, clock - 60.0)
    for lab in labels.pop_due(float("inf")):
        released[int(lab.x["i"])] = (lab.y, len(steps), float("inf"))
    assert sorted(released) == [i for i, _, _ in made]  # each prediction labelled exactly once
    for i, key, at in made:
        y, released_at, watermark = released[i]
        assert watermark >= at + horizon  # never from the future
        later = sum(1 for j, rk, t in reads if i < j <= released_at and rk == key and at <= t <= at + horizon)
        assert y == (later >= k), (i, key, at)


def test_an_event_time_in_milliseconds_is_a_dead_letter_and_leaves_the_shard_clock_alone():
    # One producer sending milliseconds would move the shard's event-time clock ~50,000 years ahead and cool every
    # object at once (a cold candidate for each: the solver would move them all down).
    from flows.dataflow import process_batch
    from flows.predict import make_predictor
    from flows.shard import FlowParams, ShardState
    from schemas import Candidate, DeadLetter, topics

    s = Settings()
    shard = ShardState(FlowParams.from_settings(s), make_predictor(s))
    raw = '{{"event_time": {t}, "bucket": "b", "key": "{k}", "op": "GET", "bytes": 1, "object_size": 2000000}}'
    batch = [(i, raw.format(t=T0 + 60 * i, k=f"o{i % 5}").encode(), None) for i in range(20)]
    batch.insert(10, (99, raw.format(t=int((T0 + 600) * 1000), k="o1").encode(), None))
    out: list = []
    process_batch(shard, 0, batch, out)
    letters = [DeadLetter.model_validate_json(v) for topic, _, v in out if topic == topics.DEAD_LETTERS]
    assert [d.offset for d in letters] == [99] and "milliseconds" in letters[0].reason
    assert shard.clock == T0 + 60 * 19 and shard.events == 20
    assert all(Candidate.model_validate_json(v).as_of <= T0 + 60 * 19 for topic, _, v in out
               if topic == topics.CANDIDATES)


def test_an_event_far_ahead_of_its_record_timestamp_is_a_dead_letter_when_the_guard_is_on():
    # A plausible but wrong future time (a producer's clock a year ahead) would advance the shard clock and cool
    # every object of the shard. With flow.max_event_lead_s it is judged against the record's own timestamp.
    from flows.dataflow import process_batch
    from flows.predict import make_predictor
    from flows.shard import FlowParams, ShardState
    from schemas import DeadLetter, topics

    s = Settings()
    raw = '{{"event_time": {t}, "bucket": "b", "key": "{k}", "op": "GET", "bytes": 1, "object_size": 2000}}'
    stamp = int(T0 * 1000)  # the records were produced at T0
    batch = [(i, raw.format(t=T0 + 60 * i, k=f"o{i % 3}").encode(), stamp + 60_000 * i) for i in range(10)]
    batch.insert(5, (99, raw.format(t=T0 + 365 * 86400, k="o1").encode(), stamp + 300_000))
    batch.insert(7, (98, raw.format(t=T0 + 10_000, k="o2").encode(), None))  # no timestamp: nothing to judge by
    for lead, letters_expected, clock in ((3600.0, [99], T0 + 10_000), (None, [], T0 + 365 * 86400)):
        shard = ShardState(FlowParams.from_settings(s), make_predictor(s))
        out: list = []
        process_batch(shard, 0, batch, out, max_lead_s=lead)
        letters = [DeadLetter.model_validate_json(v) for topic, _, v in out if topic == topics.DEAD_LETTERS]
        assert [d.offset for d in letters] == letters_expected
        assert all("ahead of its record's timestamp" in d.reason for d in letters)
        assert shard.clock == clock and shard.events == 12 - len(letters_expected)
