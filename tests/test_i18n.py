"""Language and display time zone: rule texts in English and Indonesian, translations
checked like rules, local time in WIB/WITA/WIT, check's schedules in local time."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.engine import Engine, ProblemError, RuleSet, load_rules
from sentinel.events import Event, format_time, parse_time
from sentinel.i18n import human_time, local_iso, summary_title, zone
from tests.conftest import REPO

#: 2024-02-14 13:05:00.123 in Jakarta
T = parse_time("2024-02-14T06:05:00.123Z")

DB_CONN = {"proto": "tcp", "src_ip": "10.20.0.99", "src_port": 40000, "dst_ip": "10.20.0.10",
           "dst_port": 5432, "direction": "inbound", "src_internal": True, "dst_internal": True,
           "iface": "eth0", "tcp_flags": "S"}


def example(language: str = "en", timezone: str = "UTC") -> Config:
    config = load_config(REPO / "config.example.yaml")
    return dataclasses.replace(config, language=language, timezone=timezone)


def db_alert(config: Config) -> dict[str, object]:
    engine = Engine(load_rules(config), host="tally-01")
    alerts = engine.process(Event("net.established", T, "tally-01", "network", dict(DB_CONN)))
    assert [a.rule for a in alerts] == ["tally-db-unauthorized-access"]
    return alerts[0].to_dict()


# -- the pack in both languages ---------------------------------------------------


def test_indonesian_site_shows_indonesian_and_carries_english(
        example_secrets: dict[str, str]) -> None:
    a = db_alert(example("id"))
    assert a["title"] == ("Basis data penghitungan suara (port 5432) menerima koneksi dari"
                          " 10.20.0.99, yang bukan server aplikasi")
    assert str(a["description"]).startswith("Basis data penghitungan suara di 10.20.0.10:5432")
    assert a["language"] == "id"
    texts = a["i18n"]
    assert isinstance(texts, dict)
    assert texts["en"]["title"] == ("Tally database (port 5432) accepted a connection from"
                                    " 10.20.0.99, which is not the app server")
    assert texts["id"]["title"] == a["title"]
    # the record people sign and verify stays UTC
    assert a["time"] == "2024-02-14T06:05:00.123Z" and "time_local" not in a


def test_english_site_shows_english_and_carries_indonesian(
        example_secrets: dict[str, str]) -> None:
    a = db_alert(example("en"))
    assert a["title"] == ("Tally database (port 5432) accepted a connection from 10.20.0.99,"
                          " which is not the app server")
    assert str(a["description"]).startswith("The tally database on 10.20.0.10:5432 accepted")
    texts = a["i18n"]
    assert isinstance(texts, dict)
    assert texts["id"]["title"].startswith("Basis data penghitungan suara")


def test_every_rule_of_the_pack_has_an_indonesian_title_and_description(
        example_secrets: dict[str, str]) -> None:
    rules = load_rules(example("id"))
    assert rules.check_texts({"en", "id"}) == []
    for r in rules:
        title, desc = r.i18n["id"]
        assert title.placeholders() == r.title.placeholders(), r.id
        assert (desc is None) == (r.description is None), r.id


# -- operator rules: inline and own catalog --------------------------------------

RULE = """
rules:
  - id: my-rule
    title: "Port {dst_port} reached from {src_ip}"
    description: "{src_ip} reached {dst_port}"
    severity: high
    kind: net.connection
    match: {dst_port: 5432}
    suppress: {key: src_ip, period: 10m}
"""
INLINE = RULE + """\
    i18n:
      id:
        title: "Port {dst_port} diakses dari {src_ip}"
        description: "{src_ip} mengakses {dst_port}"
"""
CATALOG = """
language: id
rules:
  my-rule:
    title: "Port {dst_port} diakses dari {src_ip}"
    description: "{src_ip} mengakses {dst_port}"
"""


def site(tmp_path: Path, rules: str, catalog: str | None = None, extra: str = "") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "mine.yaml").write_text(textwrap.dedent(rules).lstrip(), encoding="utf-8")
    if catalog is not None:
        (folder / "i18n").mkdir()
        (folder / "i18n" / "id.yaml").write_text(textwrap.dedent(catalog).lstrip(),
                                                 encoding="utf-8")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("host: {name: tally-01, addresses: [10.20.0.10]}\nstate_dir: state\n"
                   "rules: {paths: [rules/]}\n" + extra, encoding="utf-8")
    return cfg


def fire(rules: RuleSet, n: int = 1) -> list[dict[str, object]]:
    engine = Engine(rules, host="tally-01")
    out = []
    for i in range(n):
        out += engine.process(Event("net.connection", T + i, "tally-01", "network",
                                    dict(DB_CONN)))
    out += engine.advance(T + 3600)
    return [a.to_dict() for a in out]


@pytest.mark.parametrize("where", ["inline", "catalog"])
def test_operator_rule_indonesian_inline_or_in_own_catalog(tmp_path: Path, where: str) -> None:
    cfg = site(tmp_path, INLINE, None, "language: id\n") if where == "inline" else \
        site(tmp_path, RULE, CATALOG, "language: id\n")
    (a,) = fire(load_rules(load_config(cfg)))
    assert a["title"] == "Port 5432 diakses dari 10.20.0.99"
    assert a["description"] == "10.20.0.99 mengakses 5432"


def test_suppression_summary_is_worded_in_each_language(tmp_path: Path) -> None:
    _first, summary = fire(load_rules(load_config(site(tmp_path, INLINE, None,
                                                       "language: id\n"))), 3)
    assert summary["title"] == "Port 5432 diakses dari 10.20.0.99 (3 kali dalam 10 menit)"
    texts = summary["i18n"]
    assert isinstance(texts, dict)
    assert texts["en"]["title"] == "Port 5432 reached from 10.20.0.99 (3 times in 10m)"
    assert summary_title("x", "en", 3, 600) == "x (3 times in 10m)"


def check(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(cfg), *extra],
                          capture_output=True, text=True, timeout=60, cwd=cfg.parent)


def test_missing_translation_is_a_check_error_at_the_rule(tmp_path: Path) -> None:
    cfg = site(tmp_path, RULE, None, "language: id\n")
    proc = check(cfg)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'rules' / 'mine.yaml'}:2:5: rule 'my-rule': no"
                            " Indonesian (id) title and description"), first
    assert "Traceback" not in proc.stderr


def test_a_webhook_in_indonesian_requires_the_translation_too(tmp_path: Path) -> None:
    cfg = site(tmp_path, RULE, None, "outputs:\n  webhooks:\n    - {name: soc, url:"
               " 'http://127.0.0.1:9/', language: id}\n")
    assert check(cfg).returncode == 2
    cfg.write_text(cfg.read_text().replace("language: id", "language: en"))
    assert check(cfg).returncode == 0


@pytest.mark.parametrize(("title", "desc", "line", "col", "message"), [
    ("Port {dst_port} diakses", "{src_ip} mengakses {dst_port}", 4, 12,
     "my-rule (id).title: placeholders differ from the English title (missing {src_ip})"),
    ("Port {dst_port} dari {src_ip} {proto}", "{src_ip} mengakses {dst_port}", 4, 12,
     "my-rule (id).title: placeholders differ from the English title (not in English"
     " {proto})"),
    ("Port {dst_port} dari {src_ip}", "{src_ip} mengakses", 5, 18,
     "my-rule (id).description: placeholders differ from the English description (missing"
     " {dst_port})"),
    ("Port {dst_port} dari {src_ip}", "{src_ip} mengakses {dst_prot}", 5, 18,
     "my-rule (id).description: placeholder {dst_prot}: unknown field"),
])
def test_mismatched_placeholders_are_errors_at_the_translation(
        tmp_path: Path, title: str, desc: str, line: int, col: int, message: str) -> None:
    catalog = (f'language: id\nrules:\n  my-rule:\n    title: "{title}"\n'
               f'    description: "{desc}"\n')
    cfg = site(tmp_path, RULE, catalog)
    with pytest.raises(ProblemError) as exc:
        load_rules(load_config(cfg))
    (p,) = exc.value.problems
    assert (p.mark.file, p.mark.line, p.mark.col) == (str(tmp_path / "rules/i18n/id.yaml"),
                                                      line, col)
    assert p.message.startswith(message), p.message
    proc = check(cfg)
    assert proc.returncode == 2 and f"id.yaml:{line}:{col}: " in proc.stderr


def test_catalog_entry_for_an_unknown_rule_is_an_error_at_the_entry(tmp_path: Path) -> None:
    cfg = site(tmp_path, RULE, CATALOG + "  no-such-rule:\n    title: x\n")
    with pytest.raises(ProblemError) as exc:
        load_rules(load_config(cfg))
    (p,) = exc.value.problems
    assert (p.mark.line, p.mark.col) == (6, 3)
    assert "no rule has the id 'no-such-rule'" in p.message


def test_a_text_given_inline_and_in_a_catalog_is_an_error(tmp_path: Path) -> None:
    cfg = site(tmp_path, INLINE, CATALOG)
    with pytest.raises(ProblemError) as exc:
        load_rules(load_config(cfg))
    (p,) = exc.value.problems
    assert "rule 'my-rule' already has its Indonesian text at " in p.message
    assert p.mark.file.endswith("id.yaml") and p.mark.line == 3


# -- time zones --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "iso", "shown"), [
    ("Asia/Jakarta", "2024-02-14T13:05:00.123+07:00", "2024-02-14 13:05:00 WIB"),
    ("Asia/Makassar", "2024-02-14T14:05:00.123+08:00", "2024-02-14 14:05:00 WITA"),
    ("Asia/Jayapura", "2024-02-14T15:05:00.123+09:00", "2024-02-14 15:05:00 WIT"),
    ("UTC", "2024-02-14T06:05:00.123Z", "2024-02-14 06:05:00 UTC"),
])
def test_local_time_in_the_three_indonesian_zones(name: str, iso: str, shown: str) -> None:
    assert local_iso(T, zone(name)) == iso
    assert human_time(T, zone(name)) == shown
    assert parse_time(iso) == T  # the same instant, only shown differently
    assert format_time(T) == "2024-02-14T06:05:00.123Z"


def test_time_in_a_title_is_shown_in_the_display_zone(tmp_path: Path) -> None:
    rules = RULE.replace('title: "Port {dst_port} reached from {src_ip}"',
                         'title: "Port {dst_port} reached from {src_ip} at {time}"')
    (a,) = fire(load_rules(load_config(site(tmp_path, rules, None,
                                            "timezone: Asia/Makassar\n"))))
    assert a["title"] == "Port 5432 reached from 10.20.0.99 at 2024-02-14 14:05:00 WITA"
    assert a["time"] == "2024-02-14T06:05:00.123Z"


@pytest.mark.parametrize(("extra", "line", "col", "message"), [
    ("timezone: Asia/Jakrta\n", 4, 11, "timezone: 'Asia/Jakrta' is not a known IANA time zone;"
     " valid: e.g. Asia/Jakarta (WIB), Asia/Makassar (WITA), Asia/Jayapura (WIT) or UTC"),
    ("language: jv\n", 4, 11, "language is 'jv'; valid: en, id"),
    ("outputs:\n  webhooks:\n    - {name: soc, url: 'http://127.0.0.1:9/', language: fr}\n",
     6, 57, "outputs.webhooks[0].language is 'fr'; valid: en, id"),
])
def test_bad_language_or_zone_is_reported_at_its_position(
        tmp_path: Path, extra: str, line: int, col: int, message: str) -> None:
    cfg = site(tmp_path, INLINE, None, extra)
    proc = check(cfg)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"{cfg}:{line}:{col}: {message}"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("name", "shown"), [
    ("Asia/Jakarta", "counting: 2024-02-14 13:00 WIB \u2013 2024-02-15 23:59 WIB"),
    ("Asia/Makassar", "counting: 2024-02-14 14:00 WITA \u2013 2024-02-16 00:59 WITA"),
    ("Asia/Jayapura", "counting: 2024-02-14 15:00 WIT \u2013 2024-02-16 01:59 WIT"),
])
def test_check_shows_schedules_in_local_time(tmp_path: Path, name: str, shown: str) -> None:
    cfg = site(tmp_path, INLINE, None, f"timezone: {name}\nschedules:\n  counting:\n"
               '    - {start: "2024-02-14T13:00:00+07:00", end: "2024-02-15T23:59:00+07:00"}\n')
    proc = check(cfg)
    assert proc.returncode == 0, proc.stderr
    assert shown in proc.stdout.splitlines()
    js = check(cfg, "--format", "json")
    assert '"timezone": "' + name + '"' in js.stdout


# -- the report ----------------------------------------------------------------------


def test_report_in_indonesian_with_local_time_beside_utc(
        tmp_path: Path, example_secrets: dict[str, str]) -> None:
    """A journal written by an English site, reported for Indonesian readers in WIB."""
    from prometheus_client import CollectorRegistry

    from sentinel.attest.evidence import gather
    from sentinel.attest.report import render
    from sentinel.config import OutputsConfig
    from sentinel.metrics import Metrics
    from sentinel.sinks import build_delivery

    config = dataclasses.replace(example("en", "Asia/Jakarta"), state_dir=tmp_path,
                                 outputs=OutputsConfig())
    engine = Engine(load_rules(config), host="tally-01")
    (alert,) = engine.process(Event("net.established", T, "tally-01", "network",
                                    dict(DB_CONN)))
    d = build_delivery(config, Metrics(CollectorRegistry()))
    try:
        d.submit(alert)
    finally:
        d.close(5.0)
    ev = gather(config, None, None, T + 60, None)
    page = render(ev, "id", zone("Asia/Jakarta"))
    assert '<html lang="id">' in page
    assert "<h1>Laporan insiden: tally-01</h1>" in page
    assert "<th>Waktu (UTC)</th><th>Waktu setempat</th><th>Tingkat</th>" in page
    assert "<code>2024-02-14<br>06:05:00.123Z</code>" in page
    assert "<code>2024-02-14<br>13:05:00 WIB</code>" in page
    assert ("Basis data penghitungan suara (port 5432) menerima koneksi dari 10.20.0.99"
            in page)
    english = render(ev)
    assert "<th>Time (UTC)</th><th>Local time</th>" in english
    assert "Tally database (port 5432) accepted a connection from 10.20.0.99" in english


@pytest.mark.parametrize(("catalog", "line", "col", "message"), [
    ("language: id\nrules:\n  my-rule: [a, b]\n", 3, 12, "my-rule (id) must be a mapping"),
    ("language: fr\nrules: {}\n", 1, 11, "language is 'fr'; valid: id"),
    ("rules: {}\n", 1, 1, "missing required key 'language'"),
    ("language: id\nrules:\n  my-rule: {title: 'x {src_ip'}\n", 3, 20,
     "my-rule (id).title: unbalanced brace"),
    ("language: id\nrules: [\n", 3, 1, "YAML syntax error"),
])
def test_a_malformed_catalog_is_reported_at_its_position(
        tmp_path: Path, catalog: str, line: int, col: int, message: str) -> None:
    cfg = site(tmp_path, RULE, catalog)
    proc = check(cfg)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    where = f"{tmp_path / 'rules' / 'i18n' / 'id.yaml'}:{line}:{col}: "
    assert any(x.startswith(where) and message in x for x in proc.stderr.splitlines()), \
        proc.stderr


# -- sentinel's alerts about itself --------------------------------------------------


def test_sentinels_own_alerts_read_in_the_site_language_and_carry_both(
        example_secrets: dict[str, str]) -> None:
    """A reload that disables a rule, and a corrupt spool, as a Bawaslu responder reads them."""
    from sentinel.selfwatch.reload_diff import reload_alert
    from sentinel.sinks.build import corrupt_spool_alert

    summary = {"rules_added": [], "rules_removed": [], "rules_disabled": ["tally-binary-tampered"],
               "rules_changed": [], "config_keys_changed": []}
    for config in (example("id"), example("en")):
        alerts = [reload_alert(config, summary, T).to_dict(),
                  corrupt_spool_alert(config, "bawaslu", Path("spool.db.corrupt"), "x", T)
                  .to_dict()]
        for a in alerts:
            texts = a["i18n"]
            assert isinstance(texts, dict) and set(texts) == {"en", "id"}
            assert a["language"] == config.language
            assert a["title"] == texts[config.language]["title"]
            assert a["description"] == texts[config.language]["description"]
        reload_texts = alerts[0]["i18n"]
        assert isinstance(reload_texts, dict)
        assert reload_texts["id"]["title"].startswith("Aturan atau konfigurasi sentinel berubah")
        assert "Tidak lagi mendeteksi: tally-binary-tampered" in reload_texts["id"]["description"]
        assert reload_texts["en"]["title"].startswith("sentinel's rules or config changed")


# -- who did it, in the reader's language ------------------------------------------


def fim_change(**actor: object) -> Event:
    fields: dict[str, object] = {
        "path": "/opt/tally/bin/tally", "path_tags": ["tally-binaries"],
        "changed": ["content"], "offline": False, **actor}
    return Event("fim.modified", T, "tally-01", "fim", fields)


def test_the_process_line_is_written_in_each_alert_language(
        example_secrets: dict[str, str]) -> None:
    """An Indonesian description names the process in Indonesian words; the English
    text and the event's own ``process`` field (what machines read) stay English."""
    engine = Engine(load_rules(example("id")), host="tally-01")
    known = fim_change(process_pid=4242, process_exe="/usr/bin/vim.basic", process_uid=0,
                       process_user="root", process_login_uid=1000,
                       process_login_user="operator1", process_unknown=None,
                       process="/usr/bin/vim.basic (pid 4242, user root, uid 0,"
                       " logged in as operator1)")
    (a,) = [x.to_dict() for x in engine.process(known)]
    assert a["rule"] == "tally-binary-tampered"
    assert "Proses: /usr/bin/vim.basic (pid 4242, pengguna root, uid 0, masuk sebagai" \
        " operator1)." in str(a["description"])
    texts = a["i18n"]
    assert isinstance(texts, dict)
    assert "Process: /usr/bin/vim.basic (pid 4242, user root, uid 0, logged in as" \
        " operator1)." in texts["en"]["description"]
    assert a["event"]["process"].startswith("/usr/bin/vim.basic (pid 4242, user root")


@pytest.mark.parametrize(("why", "shown"), [
    ("changed while sentinel was not running",
     "tidak diketahui (diubah saat sentinel tidak berjalan)"),
    ("seen by rescan (overflow, periodic)",
     "tidak diketahui (terlihat saat pemindaian ulang (overflow, periodic))"),
    ("attribution unavailable: no kernel audit (EPERM)",
     "tidak diketahui (atribusi tidak tersedia: no kernel audit (EPERM))"),
])
def test_why_a_process_is_not_known_is_written_in_indonesian(
        example_secrets: dict[str, str], why: str, shown: str) -> None:
    engine = Engine(load_rules(example("id")), host="tally-01")
    (a,) = [x.to_dict() for x in engine.process(fim_change(
        process_unknown=why, process_uid=None, process=f"not known ({why})"))]
    assert f"Proses: {shown}." in str(a["description"])


def test_every_fixed_reason_a_process_is_not_known_has_its_indonesian_text() -> None:
    """Each reason the connection owner and the file attribution give, and each fixed
    start of a reason with a detail, is in the Indonesian catalog: a new reason added
    in English only would show English inside an Indonesian description."""
    from sentinel import actors
    from sentinel.i18n import text
    from sentinel.sources.audit.index import FOUND_BY_VERIFY, NO_RECORD, UNAVAILABLE
    from sentinel.sources.fim.reconcile import RESCANNED, WHILE_STOPPED
    from sentinel.sources.net.owner import REASONS
    fixed = [*REASONS, WHILE_STOPPED, FOUND_BY_VERIFY, NO_RECORD, *actors.DETAILED,
             "user", "logged in as", "not known", "socket of"]
    assert f"{RESCANNED} (" in actors.DETAILED and UNAVAILABLE in actors.DETAILED
    missing = [w for w in fixed if text("id", w) == w]
    assert missing == []
    owner = actors.unknown("socket closed before lookup", 1000, "operator1", "id")
    assert owner == ("tidak diketahui (soket sudah ditutup sebelum dicari; soket milik"
                     " pengguna operator1, uid 1000)")


def test_a_fraction_is_written_with_a_decimal_comma_in_indonesian(
        example_secrets: dict[str, str]) -> None:
    """4.948 reads as four thousand nine hundred and forty-eight to an Indonesian
    reader: the Indonesian text writes 4,948; the English keeps 4.948."""
    engine = Engine(load_rules(example("id")), host="tally-01")
    scan = Event("net.scan", T, "tally-01", "network", {
        "src_ip": "10.20.0.63", "src_internal": True, "dst_ip": "10.20.0.10", "ports": 223,
        "hosts": 1, "hosts_capped": False, "connections": 224, "probes": 39, "answered": 0,
        "duration": 4.948, "iface": "eth0"})
    (a,) = [x.to_dict() for x in engine.process(scan)]
    assert a["rule"] == "scan-ended"
    assert str(a["title"]).endswith("selama 4,948 detik")
    assert "selama 4,948 detik" in str(a["description"])
    texts = a["i18n"]
    assert isinstance(texts, dict)
    assert texts["en"]["title"].endswith("over 4.948 s")
    assert a["event"]["duration"] == 4.948  # the value machines read is a number
