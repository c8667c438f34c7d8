"""Projection of LiteLLM spend-log rows into the lite and full forms, on real and edited rows."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aria_stream.backfill import project_entry
from aria_stream.events import encode_json
from aria_stream.jsonrows import RowSplitter
from aria_stream.models import (
    FULL_STRING_MAX_CHARS,
    SpendLogEntry,
    project_full,
    project_lite,
)

FIXTURES = Path(__file__).parent / "fixtures"

SUCCESS_LITE = {
    "request_id": "chatcmpl-4e3069bc-bc93-40c5-b96f-1fd298c0616f",
    "start_time": "2026-12-04T20:01:16.534000Z",
    "duration_ms": 33,
    "model": "openai/gpt-4o-mini",
    "model_group": "gpt-4o-mini",
    "provider": "openai",
    "status": "success",
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "total_tokens": 30,
    "spend": 1.35e-05,
    "cache_hit": None,
    "key_alias": "team-beta-key",
    "team_id": None,
    "user": "bob",
    "end_user": "end-user-0",
    "session_id": "7470c656-41de-48b4-8070-1d9ca0fd8fa4",
    "error_code": None,
    "error_class": None,
    "error_message": None,
}
FAILURE_LITE = {
    "request_id": "e5f8e0a2-4072-453e-8519-3feffd26d4e3",
    "start_time": "2026-12-04T20:01:15.463000Z",
    "duration_ms": 662,
    "model": "openai/gpt-4o",
    "model_group": "fail-connect",
    "provider": "openai",
    "status": "failure",
    "prompt_tokens": 18,
    "completion_tokens": 0,
    "total_tokens": 18,
    "spend": 0.0,
    "cache_hit": False,
    "key_alias": None,
    "team_id": None,
    "user": "default_user_id",
    "end_user": "end-user-4",
    "session_id": "c78f96d4-04b0-43c0-9483-c045374d8dfe",
    "error_code": "500",
    "error_class": "InternalServerError",
    "error_message": (
        "litellm.InternalServerError: InternalServerError: OpenAIException - Connection error."
        "\n\nLiteLLM: model group 'fail-connect' failed with the error above. No fallback was"
        " attempted."
    ),
}
UI_SUCCESS_LITE = {
    "request_id": "chatcmpl-cff37370-b428-4c21-8d27-27966250cf31",
    "start_time": "2026-12-04T20:01:16.658000Z",
    "duration_ms": 80,
    "model": "gemini/gemini-1.5-flash",
    "model_group": "gemini-1.5-flash",
    "provider": "gemini",
    "status": "success",
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "total_tokens": 30,
    "spend": 0.0,
    "cache_hit": None,
    "key_alias": "team-beta-key",
    "team_id": None,
    "user": "bob",
    "end_user": "end-user-2",
    "session_id": "d46be83b-f9e1-4fc8-8ab2-116c3cd36950",
    "error_code": None,
    "error_class": None,
    "error_message": None,
}
UI_FAILURE_LITE = {
    "request_id": "df47d4a7-0011-490d-8958-4081db38b288",
    "start_time": "2026-12-04T20:01:16.728000Z",
    "duration_ms": 246,
    "model": "openai/gpt-4o",
    "model_group": "fail-ratelimit",
    "provider": "openai",
    "status": "failure",
    "prompt_tokens": 18,
    "completion_tokens": 0,
    "total_tokens": 18,
    "spend": 0.0,
    "cache_hit": False,
    "key_alias": "team-beta-key",
    "team_id": None,
    "user": "bob",
    "end_user": "end-user-3",
    "session_id": "8592cd24-6fbe-46c8-81ae-6c92c34c5ac6",
    "error_code": "429",
    "error_class": "RateLimitError",
    "error_message": (
        "litellm.RateLimitError: this is a mock rate limit error\n\nLiteLLM: model group"
        " 'fail-ratelimit' failed with the error above. No fallback was attempted."
    ),
}


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def lite_json(row: dict[str, Any]) -> dict[str, Any]:
    """Project a row the way the stream does, into the JSON-ready lite dict."""
    return SpendLogEntry.from_upstream(row).model_dump(mode="json")


def split_fixture(name: str) -> tuple[list[Any], dict[str, Any]]:
    splitter = RowSplitter()
    data = (FIXTURES / name).read_bytes()
    items = []
    for offset in range(0, len(data), 4096):
        items.extend(splitter.feed(data[offset : offset + 4096]))
    items.extend(splitter.close())
    return items, splitter.envelope


@pytest.fixture
def success_row() -> dict[str, Any]:
    return load_fixture("spend_logs.success_row.json")


@pytest.fixture
def failure_row() -> dict[str, Any]:
    return load_fixture("spend_logs.failure_row.json")


@pytest.fixture
def ui_failure_row() -> dict[str, Any]:
    return load_fixture("spend_logs_ui.failure_page.json")["data"][0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("spend_logs.success_row.json", SUCCESS_LITE),
        ("spend_logs.failure_row.json", FAILURE_LITE),
    ],
)
def test_lite_legacy_samples_exact(name: str, expected: dict[str, Any]):
    assert lite_json(load_fixture(name)) == expected


@pytest.mark.parametrize(
    ("name", "expected", "envelope"),
    [
        (
            "spend_logs_ui.success_page.json",
            UI_SUCCESS_LITE,
            {"total": 200, "page": 1, "page_size": 1, "total_pages": 200, "total_is_capped": False},
        ),
        (
            "spend_logs_ui.failure_page.json",
            UI_FAILURE_LITE,
            {"total": 50, "page": 1, "page_size": 1, "total_pages": 50, "total_is_capped": False},
        ),
    ],
)
def test_lite_ui_pages_exact(name: str, expected: dict[str, Any], envelope: dict[str, Any]):
    rows, page = split_fixture(name)

    assert [lite_json(row) for row in rows] == [expected]
    assert page == envelope


def test_lite_project_lite_fields(success_row):
    lite = project_lite(success_row)

    assert list(lite) == list(SUCCESS_LITE)
    assert lite["start_time"].isoformat() == "2026-12-04T20:01:16.534000+00:00"


def test_lite_success_sample_encoded_text(success_row):
    assert encode_json(lite_json(success_row)) == (
        '{"request_id":"chatcmpl-4e3069bc-bc93-40c5-b96f-1fd298c0616f",'
        '"start_time":"2026-12-04T20:01:16.534000Z","duration_ms":33,'
        '"model":"openai/gpt-4o-mini","model_group":"gpt-4o-mini","provider":"openai",'
        '"status":"success","prompt_tokens":10,"completion_tokens":20,"total_tokens":30,'
        '"spend":0.0000135,"cache_hit":null,"key_alias":"team-beta-key","team_id":null,'
        '"user":"bob","end_user":"end-user-0","session_id":"7470c656-41de-48b4-8070-1d9ca0fd8fa4",'
        '"error_code":null,"error_class":null,"error_message":null}'
    )


@pytest.mark.xfail(
    reason="the lite event row of the real success sample is 417 bytes without its null "
    "members; 400 needs shorter member names or fewer fields",
    strict=True,
)
def test_lite_success_sample_at_most_400_bytes(success_row):
    _, row = project_entry(success_row, False)
    assert len(encode_json(row).encode()) <= 400


def test_lite_metadata_json_string(ui_failure_row):
    edited = copy.deepcopy(ui_failure_row)
    edited["metadata"] = json.dumps(edited["metadata"])

    assert lite_json(edited) == UI_FAILURE_LITE


def test_lite_metadata_string_with_lone_surrogate(ui_failure_row):
    """orjson rejects an escaped lone surrogate, so such a metadata string lost every field."""
    edited = copy.deepcopy(ui_failure_row)
    edited["metadata"]["error_information"]["traceback"] = "cut \ud83d"
    edited["metadata"] = json.dumps(edited["metadata"])

    assert lite_json(edited) == UI_FAILURE_LITE


@pytest.mark.parametrize("metadata", [None, "", "not json", "[1, 2]", 42])
def test_lite_unusable_metadata_ignored(success_row, metadata):
    success_row["metadata"] = metadata

    assert lite_json(success_row) == {**SUCCESS_LITE, "key_alias": None}


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-12-04T20:01:16Z", "2026-12-04T20:01:16.000000Z"),
        ("2026-12-04T20:01:16.5Z", "2026-12-04T20:01:16.500000Z"),
        ("2026-12-04T20:01:16.53Z", "2026-12-04T20:01:16.530000Z"),
        ("2026-12-04T20:01:16.534+00:00", "2026-12-04T20:01:16.534000Z"),
        ("2026-12-04T20:01:16.5341+00:00", "2026-12-04T20:01:16.534100Z"),
        ("2026-12-04T20:01:16.53412Z", "2026-12-04T20:01:16.534120Z"),
        ("2026-12-04T20:01:16.534123Z", "2026-12-04T20:01:16.534123Z"),
        ("2026-12-04T20:01:16", "2026-12-04T20:01:16.000000Z"),
        ("2026-12-04T20:01:16.534", "2026-12-04T20:01:16.534000Z"),
        ("2026-12-04 20:01:16.534000", "2026-12-04T20:01:16.534000Z"),
        ("2026-12-04T21:31:16.534+01:30", "2026-12-04T20:01:16.534000Z"),
        ("2026-12-04T15:01:16.534-05:00", "2026-12-04T20:01:16.534000Z"),
    ],
)
def test_lite_start_time_formats(success_row, start: str, expected: str):
    success_row["startTime"] = start

    assert lite_json(success_row)["start_time"] == expected


@pytest.mark.parametrize(
    ("start", "end", "duration"),
    [
        ("2026-12-04T20:01:16.534000Z", "2026-12-04T20:01:17.001000Z", 467),
        ("2026-12-04T20:01:16.534+00:00", "2026-12-04T20:01:16.534+00:00", 0),
        ("2026-12-04T20:01:16.534", "2026-12-04T20:01:18.5342Z", 2000),
        ("2026-12-04T20:01:16.534Z", "2026-12-04T21:01:16.634+01:00", 100),
    ],
)
def test_lite_duration_from_end_time(success_row, start: str, end: str, duration: int):
    del success_row["request_duration_ms"]
    success_row["startTime"] = start
    success_row["endTime"] = end

    assert lite_json(success_row)["duration_ms"] == duration


def test_lite_duration_null_uses_end_time(success_row):
    success_row["request_duration_ms"] = None

    assert lite_json(success_row)["duration_ms"] == 33


def test_lite_duration_unknown_without_end_time(success_row):
    del success_row["request_duration_ms"]
    del success_row["endTime"]

    assert lite_json(success_row)["duration_ms"] is None


def test_lite_older_row_without_new_columns(ui_failure_row):
    for column in ["request_duration_ms", "litellm_call_id", "organization_id", "agent_id"]:
        del ui_failure_row[column]

    assert lite_json(ui_failure_row) == UI_FAILURE_LITE


@pytest.mark.parametrize(
    ("status", "metadata_status", "expected"),
    [
        ("success", None, "success"),
        ("failure", None, "failure"),
        (None, None, "success"),
        (None, "failure", "failure"),
        (None, "success", "success"),
        ("", "failure", "failure"),
        ("success", "failure", "success"),
    ],
)
def test_lite_status(success_row, status, metadata_status, expected: str):
    success_row["status"] = status
    success_row["metadata"]["status"] = metadata_status

    assert lite_json(success_row)["status"] == expected


def test_lite_no_status_metadata_string(ui_failure_row):
    del ui_failure_row["status"]
    ui_failure_row["metadata"] = json.dumps(ui_failure_row["metadata"])

    assert lite_json(ui_failure_row)["status"] == "failure"


@pytest.mark.parametrize(
    ("cache_hit", "expected"),
    [("True", True), ("False", False), ("None", None), ("", None), (None, None), (True, True)],
)
def test_lite_cache_hit(success_row, cache_hit, expected):
    success_row["cache_hit"] = cache_hit

    assert lite_json(success_row)["cache_hit"] is expected


def test_lite_unknown_fields_ignored(success_row):
    success_row["brand_new_column"] = {"nested": [1, 2, 3]}
    success_row["session_total_spend"] = 12.5

    assert lite_json(success_row) == SUCCESS_LITE


def test_lite_team_id_from_metadata(success_row):
    success_row["metadata"]["user_api_key_team_id"] = "team-from-key"

    assert lite_json(success_row)["team_id"] == "team-from-key"


def test_lite_error_message_cut_to_300(ui_failure_row):
    message = "litellm.BadRequestError: " + "x" * 1000
    ui_failure_row["metadata"]["error_information"]["error_message"] = message

    lite = lite_json(ui_failure_row)

    assert lite["error_message"] == message[:299] + "…"
    assert len(lite["error_message"]) == 300


def test_lite_error_message_of_300_kept(ui_failure_row):
    message = "e" * 300
    ui_failure_row["metadata"]["error_information"]["error_message"] = message

    assert lite_json(ui_failure_row)["error_message"] == message


@pytest.mark.parametrize("request_id", [None, ""])
def test_lite_without_request_id_rejected(success_row, request_id):
    success_row["request_id"] = request_id

    with pytest.raises(ValueError, match=r"^row has no request_id$"):
        project_lite(success_row)


def test_lite_missing_request_id_rejected(success_row):
    del success_row["request_id"]

    with pytest.raises(ValueError, match=r"^row has no request_id$"):
        project_lite(success_row)


@pytest.mark.parametrize("start", ["yesterday", "", None, 1796414476, "2026-13-04T20:01:16Z"])
def test_lite_bad_start_time_rejected(success_row, start):
    success_row["startTime"] = start

    with pytest.raises(ValueError) as caught:
        project_lite(success_row)

    assert str(caught.value) == (
        f"row 'chatcmpl-4e3069bc-bc93-40c5-b96f-1fd298c0616f' has no valid startTime: {start!r}"
    )


def test_full_keeps_every_upstream_field(failure_row):
    full = project_full(failure_row)

    assert set(full) == set(failure_row) | {"lite"}
    for key, value in failure_row.items():
        assert full[key] == value, key
    assert full["lite"] == FAILURE_LITE


def test_full_decodes_metadata_string(ui_failure_row):
    metadata = ui_failure_row["metadata"]
    ui_failure_row["metadata"] = json.dumps(metadata)

    full = project_full(ui_failure_row)

    # The key hash is shown shortened; everything else is kept as sent.
    assert full["metadata"] == {**metadata, "user_api_key": "78f90069…b2b6"}
    assert full["lite"] == UI_FAILURE_LITE


def test_full_keeps_undecodable_metadata_string(success_row):
    """A metadata string that was not a JSON object was replaced by an empty object."""
    success_row["metadata"] = "{'python': 'repr'}"

    full = project_full(success_row)

    assert full["metadata"] == "{'python': 'repr'}"


def test_full_cuts_long_strings(success_row):
    prompt = "p" * (FULL_STRING_MAX_CHARS + 10)
    traceback = "t" * 100_000
    success_row["proxy_server_request"]["messages"][0]["content"] = prompt
    success_row["metadata"]["error_information"] = {"traceback": traceback}
    success_row["response"] = "r" * FULL_STRING_MAX_CHARS

    full = project_full(success_row)

    content = full["proxy_server_request"]["messages"][0]["content"]
    assert content == prompt[:FULL_STRING_MAX_CHARS]
    assert full["metadata"]["error_information"]["traceback"] == "t" * FULL_STRING_MAX_CHARS
    assert full["response"] == "r" * FULL_STRING_MAX_CHARS
    assert full["truncated"] == {
        "proxy_server_request.messages[0].content": FULL_STRING_MAX_CHARS + 10,
        "metadata.error_information.traceback": 100_000,
    }


def test_full_cuts_long_string_in_metadata_string(ui_failure_row):
    ui_failure_row["metadata"]["error_information"]["traceback"] = "t" * 70_000
    ui_failure_row["metadata"] = json.dumps(ui_failure_row["metadata"])

    full = project_full(ui_failure_row)

    assert len(full["metadata"]["error_information"]["traceback"]) == FULL_STRING_MAX_CHARS
    assert full["truncated"] == {"metadata.error_information.traceback": 70_000}


def test_full_without_long_strings_has_no_truncated(success_row):
    assert "truncated" not in project_full(success_row)


def test_full_leaves_input_row_unchanged(success_row):
    success_row["response"] = "r" * 70_000
    before = copy.deepcopy(success_row)

    project_full(success_row)

    assert success_row == before
