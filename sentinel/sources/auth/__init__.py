"""Login and privilege activity (sshd, sudo, su, login, PAM) as events.

``build_auth_source(config, metrics)`` gives the daemon an :class:`AuthSource`
when the config's ``auth`` section names an input, else None.
"""

from sentinel.sources.auth.source import AuthSource, build_auth_source

__all__ = ["AuthSource", "build_auth_source"]
