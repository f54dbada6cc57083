"""The domain matchers and name transforms keep their last answer (the DNS rules of a
pack ask them about one event's name in turn): an answer kept is never another
name's, whatever the order of the questions."""

from __future__ import annotations

import random

from sentinel.engine.fields import TRANSFORMS, label_entropy, registered_domain
from sentinel.engine.lists import domain_matcher


def test_rules_naming_the_same_domains_share_one_matcher_that_answers_each_name() -> None:
    a, b = domain_matcher(["kpu.go.id"]), domain_matcher(["*.KPU.go.id."])
    assert a is b  # one matcher for one list, however it was written
    assert domain_matcher(["example.org"]) is not a
    names = ["kpu.go.id", "x.kpu.go.id", "evil.example", "kpu.go.id.evil.example",
             "XKPU.GO.ID", "pemilu.KPU.go.id."]
    want = {n: n.lower().rstrip(".") in ("kpu.go.id", "x.kpu.go.id", "pemilu.kpu.go.id")
            for n in names}
    rng = random.Random(5)
    for _ in range(500):
        n = rng.choice(names)
        assert a(n) is want[n], n
        assert a(n) is want[n], n  # asked again: the kept answer
    assert a(None) is False and a(42) is False


def test_name_transforms_answer_each_name_asked_in_any_order() -> None:
    registered, entropy = TRANSFORMS["registered"].fn, TRANSFORMS["entropy"].fn
    names = [f"{i:x}{'ab' * i}.t.exfil.example" for i in range(20)] + ["x.kpu.go.id"]
    rng = random.Random(6)
    for _ in range(300):
        n = rng.choice(names)
        assert registered(n) == registered_domain(n)
        assert entropy(n) == label_entropy(n)
