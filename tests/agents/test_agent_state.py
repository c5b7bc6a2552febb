"""The agent's durable state: spool, read cursor, watermark and rejects, each step one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agents import ConfigError
from agents._state import AgentState, RejectRow, encode_position

SOURCE = "csv:/data/ed.csv"


def _spool(state: AgentState, n: int, *, start: str = "s") -> int:
    seq = state.spool(SOURCE, f"{start}{n}", {"offset": n * 100}, [], (f"batch-{n}", 10, b"sealed-%d" % n))
    assert seq is not None
    return seq


def test_positions_encode_canonically() -> None:
    """The same position always gives the same text, whatever the key order (it is hashed)."""
    assert encode_position({"b": 1, "a": "x"}) == encode_position({"a": "x", "b": 1}) == '{"a":"x","b":1}'


def test_spooled_batches_are_pending_until_acknowledged(tmp_path: Path) -> None:
    """A spooled batch stays pending, in order, until acknowledged; then it is gone."""
    with AgentState(tmp_path) as state:
        first, second = _spool(state, 1), _spool(state, 2)
        assert [e.batch_id for e in state.pending()] == ["batch-1", "batch-2"]
        state.acknowledge(first)
        assert [e.batch_id for e in state.pending()] == ["batch-2"]
        state.acknowledge(second)
        assert state.pending() == []


def test_read_position_moves_when_spooled_and_watermark_when_acknowledged(tmp_path: Path) -> None:
    """The read cursor follows the spool; the watermark only follows acknowledgements."""
    with AgentState(tmp_path) as state:
        seq = _spool(state, 1)
        assert state.read_position(SOURCE) == {"offset": 100}
        assert state.watermark(SOURCE) is None
        state.acknowledge(seq)
        assert state.watermark(SOURCE) == {"offset": 100}


def test_watermark_never_skips_an_unacknowledged_batch(tmp_path: Path) -> None:
    """Acknowledgements out of order: the watermark waits for the oldest, then jumps past both."""
    with AgentState(tmp_path) as state:
        first, second, _third = _spool(state, 1), _spool(state, 2), _spool(state, 3)
        state.acknowledge(second)
        assert state.watermark(SOURCE) is None
        state.acknowledge(first)
        assert state.watermark(SOURCE) == {"offset": 200}
        assert [e.batch_id for e in state.pending()] == ["batch-3"]


def test_state_survives_reopening(tmp_path: Path) -> None:
    """What was spooled is still pending after the process is gone (a new connection sees it)."""
    with AgentState(tmp_path) as state:
        _spool(state, 1)
    with AgentState(tmp_path) as state:
        assert [e.sealed for e in state.pending()] == [b"sealed-1"]
        assert state.read_position(SOURCE) == {"offset": 100}


def test_the_same_stretch_spooled_twice_is_kept_once(tmp_path: Path) -> None:
    """Re-reading a stretch after a crash spools the same batch id and rejects once, not twice."""
    rejects = [RejectRow(7, "sex", "value not listed in the map")]
    with AgentState(tmp_path) as state:
        for _ in range(2):
            state.spool(SOURCE, "start-1", {"offset": 100}, rejects, ("batch-1", 10, b"x"))
        assert len(state.pending()) == 1
        assert list(state.rejects(SOURCE)) == rejects


def test_a_stretch_of_rejects_only_advances_both_positions(tmp_path: Path) -> None:
    """A stretch with no record to send moves the read cursor and, with nothing pending, the watermark."""
    with AgentState(tmp_path) as state:
        assert state.spool(SOURCE, "start", {"offset": 50}, [RejectRow(2, "row", "bad")], None) is None
        assert state.watermark(SOURCE) == {"offset": 50}


def test_forget_source_restarts_reading_but_keeps_the_spool(tmp_path: Path) -> None:
    """--from-start forgets the position and rejects of the source, never a batch waiting to be sent."""
    with AgentState(tmp_path) as state:
        state.spool(SOURCE, "s", {"offset": 100}, [RejectRow(2, "row", "bad")], ("batch-1", 1, b"x"))
        state.forget_source(SOURCE)
        assert state.read_position(SOURCE) is None
        assert list(state.rejects(SOURCE)) == []
        assert len(state.pending()) == 1


def test_a_second_agent_on_the_same_state_is_refused(tmp_path: Path) -> None:
    """Two agents sharing a state_dir would interleave spools; the second gets a clear ConfigError."""
    with (
        AgentState(tmp_path),
        pytest.raises(ConfigError, match="another agent process"),
        AgentState(tmp_path),
    ):
        pass


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    """A state file that is not SQLite names the file instead of raising a database traceback."""
    (tmp_path / "agent-state.sqlite3").write_bytes(b"this is not a database" * 100)
    with (
        pytest.raises(ConfigError, match=r"agent-state\.sqlite3: not an agent state file"),
        AgentState(tmp_path),
    ):
        pass


def test_state_from_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A state file written by another agent version is refused rather than misread."""
    with AgentState(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "agent-state.sqlite3")
    with db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(ConfigError, match="another agent version"), AgentState(tmp_path):
        pass
