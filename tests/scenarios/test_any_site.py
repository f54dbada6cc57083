"""The rule pack at sites that are not the reference one (#14).

For each of 21 generated sites (sitegen: IPv4, IPv6 and dual-stack addressing
plans, seven of each, deterministic by seed), config.example.yaml with only the
site's facts changed (host addresses, home networks, lists):

- `sentinel check` passes with the pack unchanged;
- `sentinel run` reaches READY (sd_notify) and stops cleanly (in a network
  namespace the test makes, capturing on its loopback);
- every network scenario of test_network_scenarios, its capture re-addressed to
  the site, raises the same alerts as at the reference site (same rules,
  severities, counts, and the same events moved to the site's addresses);
- the file scenarios (an intruder's changes found by `sentinel baseline
  verify`) raise the same alerts as at the reference site.

An IPv6-only site has no ARP, so the four ARP scenarios run at IPv4 and
dual-stack sites only; a dual-stack site replays every other scenario over IPv6.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenariokit import EXAMPLE_CONFIG, SENTINEL, Capture, FimSite, example_env, sentinel
from sitegen import Site, alert_key, make_site, mover
from test_file_scenarios import ATTACK
from test_network_scenarios import SCENARIOS as ALL_SCENARIOS

from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.metrics import Metrics
from sentinel.sources.net.replay import iter_pcap_events
from tests.conftest import REPO
from tests.test_daemon import NotifySocket

#: The scenarios of the reference site as it is. Those that change its lists (the
#: IPv6 neighbour-discovery ones need IPv6 addresses the reference site lacks) run
#: at their own dual-stack site in test_network_scenarios; re-addressing that site
#: is not this generator's job.
SCENARIOS = {name: sc for name, sc in ALL_SCENARIOS.items() if sc.lists is None}

SEEDS = list(range(21))
ARP_RULES = ("arp-",)


@functools.lru_cache(maxsize=4)
def _loaded(config_path: Path) -> tuple[Any, Any]:
    """A site's config and compiled rule pack, once per site rather than once per
    scenario: loading runs every rule's examples, which is most of a replay's time.
    Each replay still gets an engine of its own (fresh thresholds and suppression)."""
    config = load_config(config_path)
    return config, load_rules(config)


def in_process_replay(pcap: Path, config_path: Path) -> list[dict[str, Any]]:
    """What `sentinel replay` reports for ``pcap``, plus what the engine still holds at
    the end (open thresholds and suppression periods, as the daemon flushes at stop)."""
    config, rules = _loaded(config_path)
    engine = Engine(rules, host=config.host.name)
    out: list[Any] = []
    last = 0.0

    def tick(now: float) -> None:
        out.extend(engine.advance(now))
    for ev in iter_pcap_events([pcap], config, Metrics(), on_tick=tick):
        out.extend(engine.process(ev))
        last = ev.time
    out.extend(engine.advance(last + 86400))
    return [a.to_dict() for a in out]


def network_config(folder: Path, site: Site | None) -> Path:
    """config.example.yaml (with ``site``'s facts) for replays: no outputs."""
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    if site is not None:
        site.apply(cfg)
    cfg["rules"]["paths"] = [str(REPO / p) for p in cfg["rules"]["paths"]]
    cfg["state_dir"] = str(folder / "state")
    cfg["outputs"] = {"metrics": {"enabled": False}}
    cfg.pop("attest", None)
    path = folder / "network.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


#: IPv4 fragment attacks: translated to IPv6 they are another attack (an IPv6 first
#: fragment that stops inside the TCP header is dropped by the receiver, RFC 8200),
#: so like ARP they run over IPv4 wherever a site has it. IPv6 fragments have their
#: own scenarios in test_network_scenarios. So does ICMPv6's redirect, which is
#: neighbour discovery, not IPv4's translated. ICMP's timestamp request has no ICMPv6
#: form, so its sweep runs over IPv4 only. A MAC flood is one whatever the IP
#: version (its alerts name a made-up sender as ARP's do, an IPv4 address); IPv6
#: frames feed the station table alike (tests/sources/net/test_net_stations.py).
IPV4_ONLY = frozenset({"d15-fragmented-syn-to-database", "d15-tiny-first-fragment",
                       "d15-overlapping-fragments", "d15-dns-in-two-fragments",
                       "d16-icmp-redirect", "d17-mac-flooding",
                       "d17-mac-flooding-while-learning", "d05-timestamp-sweep"})


def version_for(site: Site, index: int, name: str) -> int | None:
    """The IP version a scenario runs over at ``site``; None: not applicable (ARP or an
    IPv4 fragment attack at an IPv6-only site)."""
    is_arp = SCENARIOS[name].rule.startswith(ARP_RULES) or name in IPV4_ONLY
    if site.family == "ipv4" or (is_arp and 4 in site.plans):
        return 4
    if is_arp:
        return None
    return 6 if site.family == "ipv6" or index % 2 else 4


class SiteFim(FimSite):
    """The reference site's watched tree, with a generated site's config."""

    def __init__(self, tmp: Path, site: Site | None) -> None:
        self.site_facts = site
        super().__init__(tmp)

    def derive(self) -> dict[str, Any]:
        cfg = super().derive()
        if self.site_facts is not None:
            self.site_facts.apply(cfg)
        cfg["network"]["interfaces"] = ["lo"]  # the loopback of the daemon's own namespace
        return cfg


def offline_alerts(tmp: Path, site: Site | None) -> tuple[SiteFim, list[tuple[Any, ...]]]:
    """The file scenarios: baseline init, the intruder's changes, baseline verify."""
    fim = SiteFim(tmp, site)
    fim.init()
    for path, op in ATTACK:
        op(fim.at(path))
    code, alerts, err = fim.verify()
    assert code == 1, err
    keys = sorted((fim.site_path(a["event"]["path"]), a["rule"], a["severity"],
                   a["event"]["kind"], a["count"]) for a in alerts)
    return fim, keys


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference site: each scenario's frames, and the alerts they raise there."""
    folder = tmp_path_factory.mktemp("reference")
    config = network_config(folder, None)
    frames: dict[str, Capture] = {}
    alerts: dict[str, list[dict[str, Any]]] = {}
    for name, sc in SCENARIOS.items():
        c = Capture()
        sc.build(c)
        frames[name] = c
        alerts[name] = in_process_replay(c.write(folder / f"{name}.pcap"), config)
        # the comparison is not empty: each scenario's own detection fires here
        assert sc.rule in {a["rule"] for a in alerts[name]}, name
    _, fim = offline_alerts(tmp_path_factory.mktemp("reference-fim"), None)
    return {"frames": frames, "alerts": alerts, "fim": fim}


def test_generated_sites_are_deterministic_and_cover_every_family() -> None:
    assert [make_site(s).lists() for s in SEEDS] == [make_site(s).lists() for s in SEEDS]
    assert Counter(make_site(s).family for s in SEEDS) == {"ipv4": 7, "ipv6": 7, "dual": 7}
    assert len({make_site(s).lists()["tally_server"][0] for s in SEEDS}) == len(SEEDS)


def run_until_ready(config: Path, tmp: Path, seed: int) -> None:
    """`sentinel run` reaches READY=1, then SIGTERM stops it with exit 0.

    It runs in a network namespace of its own, capturing on that namespace's
    loopback: the host's loopback carries other programs' traffic."""
    ns = f"sitegen-{os.getpid()}-{seed}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    notify = NotifySocket(tmp / "notify.sock")
    # a daemon that does not stop dumps every thread's stack (SIGABRT) for the failure
    env = {**example_env(), "NOTIFY_SOCKET": str(notify.path), "PYTHONFAULTHANDLER": "1"}
    env.pop("WATCHDOG_USEC", None)
    proc: subprocess.Popen[str] | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, SENTINEL, "run", "-c", str(config)],
                                env=env, text=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        notify.wait_for("READY=1", timeout=90)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"sentinel did not stop within 60 s of SIGTERM; its threads:\n{err}")
        assert proc.returncode == 0, err
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        notify.close()
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{make_site(s).family}-{s}" for s in SEEDS])
def test_pack_checks_starts_and_detects_the_same_at_a_generated_site(
        seed: int, tmp_path: Path, reference: dict[str, Any]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the daemon runs in a network namespace the test makes")
    site = make_site(seed)
    # the file scenarios, on a tree watched through the site's config
    fim, fim_alerts = offline_alerts(tmp_path / "fim", site)
    assert fim_alerts == reference["fim"]
    # check: the site's whole config, webhooks and all, with the pack unchanged
    full: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    site.apply(full)
    full["rules"]["paths"] = [str(REPO / p) for p in full["rules"]["paths"]]
    full_path = tmp_path / "config.yaml"
    full_path.write_text(yaml.safe_dump(full, sort_keys=False))
    done = sentinel("check", "-c", full_path)
    assert done.returncode == 0, done.stderr
    # run: READY on the site's config (state and watched tree under tmp_path)
    run_until_ready(fim.config, tmp_path, seed)
    # the network scenarios, re-addressed
    config = network_config(tmp_path, site)
    for i, (name, sc) in enumerate(SCENARIOS.items()):
        version = version_for(site, i, name)
        if version is None:
            continue
        c = Capture()
        c.frames = [(t, site.readdress(raw, version), wirelen + (20 if version == 6 and
                                                                  raw[12:14] == b"\x08\x00"
                                                                  else 0))
                    for t, raw, wirelen in reference["frames"][name].frames]
        got = in_process_replay(c.write(tmp_path / f"{name}.pcap"), config)
        move = mover(site, version)
        want = Counter(alert_key(a, move) for a in reference["alerts"][name])
        assert Counter(alert_key(a) for a in got) == want, (
            f"{name} over IPv{version} at {site.lists()}")
        assert sc.rule in {a["rule"] for a in got}
