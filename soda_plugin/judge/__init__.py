"""The paper's GPT-4o Score: greedy student answers, a judge reference per prompt, pairwise
verdicts in both orders, S/(S+R) averaged, a seeded bootstrap interval (docs/judge.md)."""

from .calls import JudgeCalls, JudgeSettings
from .scoring import BenchmarkScore, Order, benchmark_score, bootstrap_interval, prompt_score
from .template import DEFAULT_TEMPLATE, JudgeTemplate, UnparsableVerdictError, load_template, parse_verdict

__all__ = ["BenchmarkScore", "DEFAULT_TEMPLATE", "JudgeCalls", "JudgeSettings", "JudgeTemplate", "Order",
           "UnparsableVerdictError", "benchmark_score", "bootstrap_interval", "load_template", "parse_verdict",
           "prompt_score"]
