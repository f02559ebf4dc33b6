"""The four task kinds: proportions, retrieval prompts, organic data files, and the solver/critic scenario."""

import random

import pytest

from agent_forge.config.curriculum import TaskMixConfig
from agent_forge.errors import ForgeError
from agent_forge.stages.curriculum.episodes import (
    Episode, TaskMixer, learning_signal_weights, load_organic_pairs, retrieval_prompt, sample_train_task, self_awareness_prefix,
)
from agent_forge.stages.curriculum.multi_agent import critic_episodes, verdict_scorer
from agent_forge.memory.bm25 import BM25Retriever
from agent_forge.stages.curriculum.rollout import Sample
from agent_forge.tasks import KnowledgeBase, split_of_task

TARGETS = {"arithmetic": 3, "logic": 2, "facts": 1}


def test_mix_follows_the_configured_weights():
    mixer = TaskMixer(TaskMixConfig(organic=2, synthetic=3, retrieval=1, multi_agent=0), 0, 0.0, False)
    assert mixer.counts(8, random.Random(0)) == {"organic": 2, "synthetic": 6, "retrieval": 2, "multi_agent": 0}
    episodes, demos = mixer.draw(8, TARGETS, 1.0, 1, {}, random.Random(1))
    kinds = [e.kind for e in episodes]
    assert kinds.count("synthetic") == 6 and kinds.count("retrieval") == 2 and len(demos) == 2
    # by default organic demonstrations are the corpora's worked solutions: prompt and reference answer
    assert all(p and a for p, a in demos)
    # difficulty 1: every synthetic prompt sits at its domain's target level, and all come from the train split
    assert all(e.task.level == TARGETS[e.task.domain] for e in episodes if e.kind == "synthetic")
    assert all(split_of_task(e.task) == "train" for e in episodes)


def test_difficulty_zero_draws_the_level_below():
    mixer = TaskMixer(TaskMixConfig(organic=0, synthetic=1, retrieval=0, multi_agent=0), 0, 0.0, False)
    episodes, _ = mixer.draw(12, {"arithmetic": 3}, 0.0, 1, {}, random.Random(2))
    assert {e.task.level for e in episodes} == {2}


def test_organic_demonstrations_follow_the_difficulty_knob():
    mixer = TaskMixer(TaskMixConfig(organic=40), 0, 0.0, False)
    below = mixer.demonstrations({"arithmetic": 3}, random.Random(3), difficulty=0.0)
    at_target = mixer.demonstrations({"arithmetic": 3}, random.Random(3), difficulty=1.0)
    mixed = mixer.demonstrations({"arithmetic": 3}, random.Random(3), difficulty=0.5)
    assert len(below) == len(at_target) == len(mixed) == 40
    # arithmetic level 2 adds 3-digit numbers, level 3 2-digit ones with carries: the operands tell them apart
    digits = lambda pairs: {len(p.split("+")[0]) for p, _ in pairs}
    assert digits(below) == {3} and digits(at_target) == {2} and digits(mixed) == {2, 3}


def test_prefix_says_who_where_and_how_well():
    mixer = TaskMixer(TaskMixConfig(organic=0, synthetic=1, retrieval=0, multi_agent=0), 0, 1.0, True)
    episodes, _ = mixer.draw(4, {"logic": 2}, 1.0, 3, {"logic": 0.5}, random.Random(0))
    assert all(e.prompt.startswith(self_awareness_prefix(3, "logic", 0.5)) for e in episodes)
    assert all(e.prompt.endswith(e.task.prompt) for e in episodes)
    assert "50" in self_awareness_prefix(3, "logic", 0.5) and "l3" in self_awareness_prefix(3, "logic", 0.5)


def test_retrieval_prompt_carries_the_needed_fact_among_distractors():
    kb = KnowledgeBase.build(0)
    retriever = BM25Retriever(kb.statements())
    rng = random.Random(0)
    hits = 0
    for _ in range(20):
        task = sample_train_task("facts", 1, rng, 0)
        prompt = retrieval_prompt(task, retriever, rng, 4)
        context = prompt.split("\n")[0]
        assert prompt.endswith(task.prompt) and context.count(".") == 4
        hits += task.answer in context
    assert hits >= 10  # a real retriever, not an oracle: most one-fact questions find their statement


def test_organic_files_load_and_bad_ones_fail_clearly(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"prompt": "1+1", "answer": "2"}\n\n')
    tsv = tmp_path / "b.txt"
    tsv.write_text("abc\tcba\n")
    assert load_organic_pairs([str(jsonl), str(tsv)]) == [("1+1", "2"), ("abc", "cba")]
    bad = tmp_path / "c.txt"
    bad.write_text("no separator here\n")
    with pytest.raises(ForgeError, match="c.txt:1"):
        load_organic_pairs([str(bad)])
    with pytest.raises(ForgeError, match="not found"):
        load_organic_pairs([str(tmp_path / "missing.jsonl")])
    # the user's files replace the default worked solutions
    mixer = TaskMixer(TaskMixConfig(organic=3, organic_paths=[str(jsonl), str(tsv)]), 0, 0.0, False)
    _, demos = mixer.draw(4, TARGETS, 1.0, 1, {}, random.Random(0))
    assert len(demos) == 3 and set(demos) <= {("1+1", "2"), ("abc", "cba")}


def test_critic_episodes_balance_right_and_wrong_answers():
    task = sample_train_task("arithmetic", 1, random.Random(0), 0)
    episodes = [Episode(task, task.prompt, "multi_agent"), Episode(task, task.prompt, "synthetic")]
    samples = [Sample(0, [], [], task.answer, 1.0), Sample(0, [], [], "999", 0.0), Sample(1, [], [], "1", 0.0)]
    critics = critic_episodes(episodes, samples, random.Random(0))
    assert sorted(c.task.answer for c in critics) == ["no", "yes"]
    for c in critics:
        assert c.score(c.task.answer) == 1.0 and c.score("yes no") == 0.0
    assert verdict_scorer("no")("no, it is wrong") == 1.0 and verdict_scorer("no")("yes") == 0.0


def test_learning_signal_weights_favour_domains_near_one_half():
    weights = learning_signal_weights(["arithmetic", "logic", "strings", "facts"],
                                      {"arithmetic": 0.5, "logic": 1.0, "strings": 0.0}, floor=0.05)
    assert weights["arithmetic"] == pytest.approx(0.3)
    assert weights["logic"] == pytest.approx(0.05) and weights["strings"] == pytest.approx(0.05)
    assert weights["facts"] == pytest.approx(0.3)  # no estimate yet: treated as p = 1/2


def test_draw_follows_domain_weights():
    mixer = TaskMixer(TaskMixConfig(synthetic=1.0, retrieval=0.0, multi_agent=0.0, organic=0), 0, 0.0, False)
    episodes, _ = mixer.draw(200, {"arithmetic": 2, "logic": 2}, 1.0, 1, {}, random.Random(3),
                             domain_weights={"arithmetic": 0.9, "logic": 0.1})
    share = sum(e.task.domain == "arithmetic" for e in episodes) / len(episodes)
    assert 0.8 < share < 0.97
