"""Replay buffer: deduplication, per-key capacity, balanced sampling, JSON round trip."""

import json
import random

from agent_forge.training.replay import ReplayBuffer


def test_dedup_and_capacity_keep_the_newest():
    buf = ReplayBuffer(capacity=3)
    assert buf.add("a:1", [("p1", "x"), ("p1", "x"), ("p2", "y")]) == 2
    buf.add("a:1", [("p3", "z"), ("p4", "w")])
    assert buf.count("a:1") == 3
    state = buf.state_dict()
    assert ["p1", "x"] not in state["items"]["a:1"]


def test_sampling_is_balanced_across_keys():
    buf = ReplayBuffer()
    buf.add("big:1", [(f"q{i}", str(i)) for i in range(200)])
    buf.add("small:1", [("only", "1")])
    drawn = buf.sample(100, random.Random(0))
    assert sum(1 for p in drawn if p == ("only", "1")) == 50


def test_state_round_trip_through_json():
    buf = ReplayBuffer(capacity=5)
    buf.add("k:2", [("a", "b"), ("c", "d")])
    again = ReplayBuffer.from_state(json.loads(json.dumps(buf.state_dict())))
    assert again.state_dict() == buf.state_dict()
    assert again.sample(0, random.Random(0)) == [] and ReplayBuffer().sample(3, random.Random(0)) == []
