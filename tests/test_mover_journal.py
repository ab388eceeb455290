"""The move journal: durable lines, a torn last line, one owner at a time, compaction."""

from __future__ import annotations

import pytest

from dim.config import Settings
from mover.journal import JournalLocked, MoveJournal
from schemas import Move, MoveEvent, MoveState

S = MoveState


def settings(tmp_path) -> Settings:
    return Settings(mover={"journal_dir": tmp_path / "journal"})


def move(mid: str) -> Move:
    return Move(move_id=mid, plan_id="p", bucket="b", key=mid, size=1, from_locations=["a:r:t", "b:r:t"],
                to_locations=["a:r:t", "c:r:t"], expected_version=1)


def ev(mid: str, state: MoveState, ts: float = 100.0) -> MoveEvent:
    return MoveEvent(move_id=mid, plan_id="p", bucket="b", key=mid, state=state, ts=ts)


def test_lines_survive_a_reopen_and_a_torn_tail_is_skipped(tmp_path):
    with MoveJournal(settings(tmp_path)) as j:
        j.append(ev("m1", S.PLANNED), move=move("m1"), base_version=1)
        j.append(ev("m1", S.COPYING))
    with open(j.path, "a") as f:
        f.write('{"event": {"move_id": "m1", "sta')  # the crash cut the last write short
    with MoveJournal(settings(tmp_path)) as j2:
        entry = j2.entry("m1")
        assert [e.state for e in entry.events] == [S.PLANNED, S.COPYING]
        assert entry.move == move("m1") and entry.base_version == 1
        assert [e.move.move_id for e in j2.unfinished()] == ["m1"]


def test_one_process_owns_a_journal(tmp_path):
    with MoveJournal(settings(tmp_path)):
        with pytest.raises(JournalLocked):
            MoveJournal(settings(tmp_path))
        MoveJournal(settings(tmp_path), instance="1").close()  # another instance has its own file


def test_compaction_drops_only_long_finished_moves(tmp_path):
    with MoveJournal(settings(tmp_path)) as j:
        for mid, end_ts in (("old", 100.0), ("recent", 990.0)):
            j.append(ev(mid, S.PLANNED, end_ts), move=move(mid), base_version=1)
            j.append(ev(mid, S.DELETED, end_ts))
        j.append(ev("open", S.PLANNED), move=move("open"), base_version=1)
        assert j.compact(keep_finished_s=100.0, now=1000.0) == 1
        j.append(ev("open", S.COPYING))
    with MoveJournal(settings(tmp_path)) as j2:
        assert set(j2.entries) == {"recent", "open"}
        assert j2.entry("recent").finished and j2.entry("open").move == move("open")
        assert [e.state for e in j2.entry("open").events] == [S.PLANNED, S.COPYING]
