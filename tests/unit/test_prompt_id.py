"""`prompt_id`: equal prompts share an id, prompts that differ inside their text do not."""

from soda_plugin.format.prompt_id import prompt_id


def user(text, role="user"):
    return [{"role": role, "content": text}]


def test_indentation_inside_a_prompt_makes_another_prompt():
    four = "Fix this:\ndef f():\n    return 1\n"
    two = "Fix this:\ndef f():\n  return 1\n"
    assert prompt_id(user(four)) != prompt_id(user(two))
    assert prompt_id(user("a  b")) != prompt_id(user("a b"))


def test_surrounding_whitespace_line_ends_and_role_case_do_not():
    assert prompt_id(user("  What is 2+2?\n")) == prompt_id(user("What is 2+2?"))
    assert prompt_id(user("line one\r\nline two")) == prompt_id(user("line one\nline two"))
    assert prompt_id(user("hi", role=" User")) == prompt_id(user("hi"))
    assert prompt_id(user("hi") + user("x", "assistant")) != prompt_id(user("hi"))
