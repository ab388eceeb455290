"""Kafka topic names, defined once. The suffix is the contract version carried on the topic."""

from __future__ import annotations

ACCESS = "dim.access.v1"  # AccessEvent, key = "<bucket>/<key>"
CANDIDATES = "dim.candidates.v1"  # Candidate, key = "<bucket>/<key>"
HEAT = "dim.heat.v1"  # ObjectHeat snapshots, key = "<bucket>/<key>"
PLANS = "dim.plans.v1"  # PlacementPlan, key = plan_id (the plan header with its moves)
MOVES = "dim.moves.v1"  # Move, one record per move, key = "<bucket>/<key>" (mover partitions by object)
MOVE_EVENTS = "dim.move-events.v1"  # MoveEvent, key = "<bucket>/<key>"
PLACEMENTS = "dim.placements.v1"  # Placement after each committed change, key = "<bucket>/<key>"
DEAD_LETTERS = "dim.dead-letters.v1"  # DeadLetter, key = source topic
AUDITS = "dim.audits.v1"  # AuditRecord, key = audit_id
FLOW_STATUS = "dim.flow-status.v1"  # ShardStatus, key = the shard (access partition) number

ALL_TOPICS = (ACCESS, CANDIDATES, HEAT, PLANS, MOVES, MOVE_EVENTS, PLACEMENTS, DEAD_LETTERS, AUDITS,
              FLOW_STATUS)


def object_key(bucket: str, key: str) -> bytes:
    """Kafka message key of an object: everything about one object lands on one partition."""
    return f"{bucket}/{key}".encode()
