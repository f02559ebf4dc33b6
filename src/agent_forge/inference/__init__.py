"""Running a forged agent: answers (plain or thinking), the hook points for expert dispatch and tool calls,
and the decoder plumbing thinking needs.

* `answer(agent, prompts) -> list[Reply]`: what `chat`, `eval --method generate` and the server call;
* `generate_with_thoughts`: Quiet-STaR inference (think before each answer token, mix, forget the thought);
* `split_thoughts`: cut raw text with delimiters into visible text and thought spans;
* `decoder`, `thought_sampling`: shared by thinking here and by the quietstar stage's training.

Imports `models` only; never a stage.
"""

from .answer import AnswerHook, Reply, agent_hooks, answer
from .text import split_thoughts
from .thinking import ThoughtfulAnswer, generate_with_thoughts

__all__ = ["AnswerHook", "Reply", "ThoughtfulAnswer", "agent_hooks", "answer", "generate_with_thoughts", "split_thoughts"]
