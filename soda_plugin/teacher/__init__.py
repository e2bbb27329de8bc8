"""Collect the teacher's answers to the training prompts through a text-only API.

`collect.run_collection` is the entry point (`soda teacher` is its command
line). Output rows follow the pair builder's teacher schema (`records.py`). This package
imports nothing heavy at import time: the pair builder reads `flags.TeacherFlag`.
"""
