"""Accuracy by domain and level, and log-likelihood of reference answers.

Accuracy is a percentage everywhere (`EvalReport`, `percent`). Two exact-match paths: `fast_exact_match` (one
teacher-forced forward pass per batch) and `generate_exact_match` (real greedy decoding scored by the task
verifiers). They agree item by item (tests/evaluation/test_paths_agree.py); `benchmarks/bench_fast_eval.py`
measures the speed ratio. Tables of accuracy: `evaluation.table`.
"""

from .teacher_forced import TeacherForcedResult, answer_loglik, fast_exact_match, teacher_forced
from .generation import generate_answers, generate_exact_match
from .report import EvalReport, evaluate, evaluate_agent, percent

__all__ = [
    "EvalReport", "evaluate_agent", "TeacherForcedResult", "answer_loglik", "evaluate", "fast_exact_match",
    "generate_answers", "generate_exact_match", "percent", "teacher_forced",
]
