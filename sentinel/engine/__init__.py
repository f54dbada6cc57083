"""The rule engine: YAML rules compiled into matchers; events in, alerts out, no I/O.

What the daemon and the commands use::

    rules = load_rules(config)          # ProblemError with every problem, or a RuleSet
    problems = check_examples(rules)    # each rule's examples, run in isolation
    engine = Engine(rules, host="tally-01", metrics=metrics)
    alerts = engine.process(event)      # time is event.time
    alerts += engine.advance(now)       # about once a second: suppression summaries
    engine.swap(load_rules(config))     # reload; unchanged rules keep their state

The language is documented in ``rules/README.md``.
"""

from __future__ import annotations

from sentinel.engine.engine import Engine
from sentinel.engine.example_run import check_examples
from sentinel.engine.loader import RuleSet, load_rule_files, load_rules
from sentinel.located import Problem, ProblemError

__all__ = ["Engine", "Problem", "ProblemError", "RuleSet", "check_examples", "load_rule_files",
           "load_rules"]
