"""The judge stage: greedy student answers, the judge's references and verdicts through the
shared verdict protocol (`soda_plugin.verdict`), reports, charts and the judged table
(docs/judge.md)."""
