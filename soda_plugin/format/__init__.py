"""The shared row and prompt format, imported by training and by every tool.

`rows` (one `soda` row, parsed and validated), `chat_format` (the student's chat template,
rendered one way everywhere), `prompt_id` (the id every stage joins on), `flags` (what
the teacher tool marks on an answer), `fileio` (atomic writes, JSON lines).
"""
