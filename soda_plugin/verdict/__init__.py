"""The paper's GPT-4o Score protocol, shared by the judge stage and the pair filter: the
pairwise template, verdict parsing, S/(S+R) scoring with a seeded bootstrap, and the judge's
cached API calls (docs/judge.md)."""

from .calls import JudgeCalls, JudgeSettings
from .scoring import BenchmarkScore, Order, benchmark_score, bootstrap_interval, prompt_score
from .template import DEFAULT_TEMPLATE, JudgeTemplate, UnparsableVerdictError, load_template, parse_verdict

__all__ = ["BenchmarkScore", "DEFAULT_TEMPLATE", "JudgeCalls", "JudgeSettings", "JudgeTemplate", "Order",
           "UnparsableVerdictError", "benchmark_score", "bootstrap_interval", "load_template", "parse_verdict",
           "prompt_score"]
