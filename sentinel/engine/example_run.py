"""Running each rule's embedded examples: every example on a fresh engine that holds
only its rule, compiled with the facts the examples were written for.

Apart from the loader so that the loader never needs the engine (the engine takes
the loader's RuleSet; this module takes both).
"""

from __future__ import annotations

from sentinel.engine.engine import Engine
from sentinel.engine.loader import RuleSet
from sentinel.located import Problem


def check_examples(rules: RuleSet) -> list[Problem]:
    """One problem per example whose outcome disagrees, positioned at the example."""
    problems: list[Problem] = []
    for live in rules.rules:
        compiled, facts = rules.example_rules.get(live.id, (None, "the config's lists"))
        rule = compiled or live
        alone = RuleSet([rule])
        for ex in rule.examples:
            engine = Engine(alone, host="example")
            alerts = [a for ev in ex.events for a in engine.process(ev)]
            if bool(alerts) == ex.expect:
                continue
            n = len(ex.events)
            what = "the event" if n == 1 else f"the {n} events"
            if ex.expect:
                msg = (f"{ex.label}: {what} should raise an alert but did not"
                       " (check the kind, every field test, the schedule and any threshold;"
                       f" examples run against {facts})")
            else:
                msg = (f"{ex.label}: {what} should not raise an alert but did:"
                       f" {alerts[0].title} (examples run against {facts})")
            problems.append(Problem(ex.mark, msg, rule.id))
    return problems
