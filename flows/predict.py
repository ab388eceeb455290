"""Which p_hot predictor a shard uses (placeholder until the River learner lands: the heat-based prior)."""

from __future__ import annotations

from flows.shard import PriorPredictor


def make_predictor(settings):
    return PriorPredictor()
