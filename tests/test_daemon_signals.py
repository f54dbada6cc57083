"""SIGTERM and SIGHUP never deadlock the daemon, whatever its main thread holds.

A signal handler runs between two bytecodes of the main thread. The daemon once
logged from its SIGTERM handler: when the signal landed while the main thread was
writing a log line (holding the writer's lock), the handler waited for that lock
forever and the daemon never stopped. Here the main thread holds the log writer's
lock, as in the middle of a write, when the signals arrive.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    import structlog
    from structlog._output import _get_lock_for_file
    from sentinel import logs
    from sentinel.config_reader import load_config
    from sentinel.daemon import Daemon
    from sentinel.engine import load_rules

    cfg = Path(sys.argv[1])
    config = load_config(cfg)
    logs.configure(stream=sys.stdout)
    d = Daemon(cfg, config, load_rules(config))
    d._install_signals()
    structlog.get_logger().info("warm_up")  # the writer's lock exists for stdout
    with _get_lock_for_file(sys.stdout):  # as if in the middle of writing a line
        signal.raise_signal(signal.SIGHUP)
        signal.raise_signal(signal.SIGTERM)
    print("handlers returned", d._signalled == signal.SIGTERM, d._hup, flush=True)
""")


def test_signal_handlers_return_while_the_log_writer_is_busy(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host: {{name: t, addresses: [10.20.0.10]}}\nstate_dir: {tmp_path}\n"
                   "outputs: {metrics: {enabled: false}}\n")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "handlers returned True True"
