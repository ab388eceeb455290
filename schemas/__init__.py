"""Contracts: every event, topic and table of Data-in-Motion, defined once and imported everywhere else."""

from schemas.models import (
    ALL_MODELS,
    MAX_EVENT_TIME,
    MAX_KEY_BYTES,
    MAX_OBJECT_SIZE,
    TERMINAL_MOVE_STATES,
    AccessEvent,
    Candidate,
    DeadLetter,
    Move,
    MoveEvent,
    MoveState,
    ObjectHeat,
    Op,
    Placement,
    PlacementPlan,
    Replica,
)

__all__ = [
    "ALL_MODELS",
    "MAX_EVENT_TIME",
    "MAX_KEY_BYTES",
    "MAX_OBJECT_SIZE",
    "TERMINAL_MOVE_STATES",
    "AccessEvent",
    "Candidate",
    "DeadLetter",
    "Move",
    "MoveEvent",
    "MoveState",
    "ObjectHeat",
    "Op",
    "Placement",
    "PlacementPlan",
    "Replica",
]
