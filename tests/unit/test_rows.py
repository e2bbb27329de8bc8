import copy
import re

import pytest

from soda_plugin.format.rows import BadRowError, BadRowReason, BadRowTally, OnBadRow, SodaFields, parse_row
from soda_data import valid_rows

FIELDS = SodaFields()


def _row(**changes):
    row = copy.deepcopy(valid_rows(1)[0])
    row.update(changes)
    return row


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ({k: v for k, v in _row().items() if k != "teacher_response"}, "teacher_response", BadRowReason.MISSING_FIELD),
        (_row(teacher_response=None), "teacher_response", BadRowReason.MISSING_FIELD),
        (_row(teacher_response="   \n"), "teacher_response", BadRowReason.EMPTY),
        (_row(teacher_response=42), "teacher_response", BadRowReason.NOT_STRING),
        (_row(student_response=["a list"]), "student_response", BadRowReason.NOT_STRING),
        (_row(student_response=""), "student_response", BadRowReason.EMPTY),
        (_row(content="What is 2+2?"), "content", BadRowReason.BAD_MESSAGES),
        (_row(content=[]), "content", BadRowReason.BAD_MESSAGES),
        (_row(content=[{"role": "user"}]), "content[0]", BadRowReason.BAD_MESSAGES),
        (_row(content=[{"role": "user", "content": 3}]), "content[0].content", BadRowReason.NOT_STRING),
        (_row(content=[{"role": "user", "content": " "}]), "content[0].content", BadRowReason.EMPTY),
        (_row(content=[{"role": "assistant", "content": "hi"}]), "content", BadRowReason.ROLES_OUT_OF_ORDER),
        (
            _row(content=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}]),
            "content", BadRowReason.ROLES_OUT_OF_ORDER,
        ),
        (
            _row(content=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
            "content", BadRowReason.ROLES_OUT_OF_ORDER,
        ),
        (_row(content=[{"role": "system", "content": "s"}]), "content", BadRowReason.ROLES_OUT_OF_ORDER),
        (_row(student_response="The answer is  3.\n"), "student_response", BadRowReason.CHOSEN_EQUALS_REJECTED),
    ],
)
def test_every_bad_row_names_its_index_field_and_reason(row, field, reason):
    if reason is BadRowReason.CHOSEN_EQUALS_REJECTED:
        row["teacher_response"] = "The answer is 3."
    with pytest.raises(BadRowError, match=re.escape(f"soda row 7: field `{field}`")) as info:
        parse_row(row, FIELDS, index=7, need_student=True)
    assert info.value.reason is reason
    assert info.value.index == 7
    assert "soda.on_bad_row: skip" in str(info.value)


def test_sft_view_does_not_need_the_student_answer():
    row = {k: v for k, v in _row().items() if k != "student_response"}
    parsed = parse_row(row, FIELDS, index=0, need_student=False)
    assert parsed.student is None and parsed.teacher == row["teacher_response"]


def test_system_and_multi_turn_prompts_are_valid_and_input_is_not_mutated():
    row = _row(content=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?", "name": "extra keys are dropped"},
    ])
    before = copy.deepcopy(row)
    parsed = parse_row(row, FIELDS, index=0, need_student=True)
    assert row == before
    assert [m["role"] for m in parsed.messages] == ["system", "user", "assistant", "user"]
    assert parsed.messages[-1] == {"role": "user", "content": "2+2?"}


def test_field_names_come_from_the_dataset_entry():
    fields = SodaFields.from_dataset_config({"field_messages": "prompt", "field_chosen": "gpt", "field_rejected": "q0"})
    row = {"prompt": [{"role": "user", "content": "x"}], "gpt": "yes", "q0": "no"}
    assert parse_row(row, fields, index=0, need_student=True).student == "no"
    assert SodaFields.from_dataset_config(None) == SodaFields("content", "teacher_response", "student_response")


def test_tally_counts_per_reason_under_skip_and_raises_under_error():
    errors = [
        BadRowError(3, "teacher_response", BadRowReason.EMPTY, "is empty"),
        BadRowError(5, "teacher_response", BadRowReason.EMPTY, "is empty"),
        BadRowError(9, "content", BadRowReason.ROLES_OUT_OF_ORDER, "bad"),
    ]
    tally = BadRowTally(OnBadRow.SKIP)
    for error in errors:
        tally.record(error)
    assert tally.counts == {"empty": 2, "roles_out_of_order": 1}
    assert tally.summary(20, "the data") == (
        "soda: skipped 3 of 20 rows in the data (`soda.on_bad_row: skip`): "
        "empty=2 (first at soda row 3), roles_out_of_order=1 (first at soda row 9)"
    )
    with pytest.raises(BadRowError):
        BadRowTally(OnBadRow.ERROR).record(errors[0])


def test_bad_row_error_survives_a_pickle_round_trip():
    """Axolotl's dataset map raises it in a worker; the parent unpickles it."""
    import pickle

    from soda_plugin.format.rows import BadRowError, BadRowReason

    error = BadRowError(7, "teacher_response", BadRowReason.EMPTY, "is empty")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BadRowError
    assert (copy.index, copy.field, copy.reason, copy.detail) == (7, "teacher_response", BadRowReason.EMPTY, "is empty")
    assert str(copy) == str(error)
