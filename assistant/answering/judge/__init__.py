"""The judge: what the evaluator sees in a local answer (features, answer types) and its
:class:`~assistant.answering.judge.evaluator.Judgement` (P(correct), P(answerable), P(paid helps)). It
observes only; what to do about a judgement is :mod:`assistant.answering.decision`'s."""
