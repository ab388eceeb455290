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


def test_a_step_recorded_after_a_torn_tail_survives_the_next_crash(tmp_path):
    # The first line appended after a crash must not be glued to the torn fragment (and skipped with it on the
    # next restart): recovery's own records - a commit found in the catalog, a roll-back - are such lines.
    with MoveJournal(settings(tmp_path)) as j:
        j.append(ev("m1", S.PLANNED), move=move("m1"), base_version=1)
    with open(j.path, "a") as f:
        f.write('{"event": {"move_id": "m1", "sta')
    with MoveJournal(settings(tmp_path)) as j2:
        j2.append(ev("m1", S.ROLLED_BACK))
        j2.append(ev("m2", S.PLANNED), move=move("m2"), base_version=1)
    with MoveJournal(settings(tmp_path)) as j3:
        assert [e.state for e in j3.entry("m1").events] == [S.PLANNED, S.ROLLED_BACK]
        assert j3.entry("m2").move == move("m2")
        assert [e.move.move_id for e in j3.unfinished()] == ["m2"]
    assert j3.path.read_bytes().endswith(b"\n") and b"sta{" not in j3.path.read_bytes()


@pytest.mark.parametrize("second_write", ["completes", "fails"])
def test_a_short_write_is_completed_or_cut_back(tmp_path, monkeypatch, second_write):
    # os.write may write part of a line (a full disk): the journal must end on a whole line either way.
    import errno
    import os

    real_write, calls = os.write, []

    def short_then(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        if second_write == "fails":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with MoveJournal(settings(tmp_path)) as j:
        j.append(ev("m1", S.PLANNED), move=move("m1"), base_version=1)
        monkeypatch.setattr(os, "write", short_then)
        if second_write == "fails":
            with pytest.raises(OSError):
                j.append(ev("m1", S.COPYING))
        else:
            j.append(ev("m1", S.COPYING))
        monkeypatch.setattr(os, "write", real_write)
        j.append(ev("m1", S.ROLLED_BACK))
    assert len(calls) == 2
    with MoveJournal(settings(tmp_path)) as j2:
        expected = [S.PLANNED, S.ROLLED_BACK] if second_write == "fails" else [S.PLANNED, S.COPYING, S.ROLLED_BACK]
        assert [e.state for e in j2.entry("m1").events] == expected


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
