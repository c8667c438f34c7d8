from aria_stream.simulator import Simulator
from tests.sse import read_events, rows_of


async def test_stream_backfill_sends_meta_entries_progress_done(server, simulator: Simulator):
    response = await server.get("/api/spend/stream", params={"limit": "120"})
    events = await read_events(response)
    names = [event.event for event in events]
    assert names[0] == "meta"
    assert names[-1] == "done"
    assert "progress" in names
    rows = rows_of(events)
    expected = [row.request_id for row in simulator.visible_rows()[:120]]
    assert [row["request_id"] for row in rows] == expected
