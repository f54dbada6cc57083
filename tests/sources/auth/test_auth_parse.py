"""Records of sshd, sudo, su, login and PAM into event fields, hostile ones included.

The sudo, su and login lines are the texts those programs write on Debian 12
(sudo 1.9.13, util-linux 2.38 su, shadow 4.13 login); sshd's are checked live in
test_auth_sshd_live.py and here for what a client controls.
"""

from __future__ import annotations

from sentinel.sources.auth.parse import parse_journal_record, parse_syslog_line

ISO = "2026-12-01T20:22:25.123456+00:00 tally-01 "


def one(line: str) -> tuple[str, dict[str, object]]:
    got = parse_syslog_line(line, 0.0)
    assert len(got) == 1, got
    return got[0][0], got[0][2]


def test_a_user_name_that_forges_a_from_clause_keeps_the_real_address() -> None:
    kind, f = one(ISO + "sshd[12]: Failed password for invalid user x from 1.2.3.4 port 22"
                  " from 10.0.0.5 port 5123 ssh2")
    assert kind == "auth.login"
    assert (f["user"], f["src_ip"], f["src_port"], f["invalid_user"]) == (
        "x from 1.2.3.4 port 22", "10.0.0.5", 5123, True)


def test_an_address_that_is_not_an_ip_drops_the_record_instead_of_guessing() -> None:
    assert parse_syslog_line(ISO + "sshd[1]: Accepted password for a from 10.0.0.999 port 1"
                             " ssh2", 0.0) == []


def test_accepted_publickey_with_the_key_fingerprint_tail() -> None:
    _, f = one(ISO + "sshd[12]: Accepted publickey for root from 2001:db8::5 port 5123 ssh2:"
               " ED25519 SHA256:AbCdEf")
    assert (f["user"], f["src_ip"], f["method"], f["success"]) == (
        "root", "2001:db8::5", "publickey", True)


def test_the_rfc3339_stamp_is_the_event_time() -> None:
    got = parse_syslog_line(ISO + "sshd[12]: Invalid user admin from 10.0.0.5 port 5123", 9.0)
    assert got[0][1] == 1796156545.123456
    bsd = parse_syslog_line("Dec  1 20:22:25 tally-01 sshd[12]: Invalid user admin from"
                            " 10.0.0.5 port 5123", 9.0)
    assert bsd[0][1] == 9.0  # no year, no zone: the time it was read


def test_sudo_command_keeps_a_forged_separator_and_a_refusal_is_a_failure() -> None:
    kind, f = one(ISO + "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ;"
                  " COMMAND=/usr/bin/id ; USER=nobody")
    assert kind == "auth.privilege"
    assert (f["user"], f["target_user"], f["command"], f["success"]) == (
        "alice", "root", "/usr/bin/id ; USER=nobody", True)
    _, f = one(ISO + "sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ;"
               " PWD=/tmp ; USER=root ; COMMAND=/bin/sh")
    assert (f["success"], f["message"]) == (False, "3 incorrect password attempts")
    _, f = one(ISO + "sudo:      eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ;"
               " USER=root ; COMMAND=/bin/sh")
    assert f["success"] is False


def test_su_success_and_failure() -> None:
    assert one(ISO + "su[5]: (to root) alice on pts/0")[1]["success"] is True
    _, f = one(ISO + "su[5]: FAILED SU (to root) alice on pts/0")
    assert (f["user"], f["target_user"], f["success"], f["service"]) == (
        "alice", "root", False, "su")


def test_console_logins() -> None:
    _, f = one(ISO + "login[7]: pam_unix(login:session): session opened for user root(uid=0)"
               " by LOGIN(uid=0)")
    assert (f["user"], f["success"], f["service"]) == ("root", True, "login")
    # shadow's note beside that record would count the same login twice
    assert parse_syslog_line(ISO + "login[7]: ROOT LOGIN  on '/dev/tty1'", 0.0) == []
    _, f = one(ISO + "login[7]: FAILED LOGIN (1) on '/dev/tty1' FOR 'alice', Authentication"
               " failure")
    assert (f["user"], f["tty"], f["success"]) == ("alice", "/dev/tty1", False)
    _, f = one(ISO + "login[7]: FAILED LOGIN 2 FROM tty2 FOR bob, Authentication failure")
    assert (f["user"], f["tty"]) == ("bob", "tty2")


def test_a_pam_failure_of_another_service_is_a_failed_login_but_sshds_is_not_counted_twice(
        ) -> None:
    _, f = one(ISO + "vsftpd[9]: pam_unix(vsftpd:auth): authentication failure; logname="
               " uid=0 euid=0 tty=ftp ruser=bob rhost=10.1.1.1  user=bob")
    assert (f["user"], f["src_ip"], f["service"], f["success"]) == (
        "bob", "10.1.1.1", "vsftpd", False)
    assert parse_syslog_line(ISO + "sshd[9]: pam_unix(sshd:auth): authentication failure;"
                             " logname= uid=0 euid=0 tty=ssh ruser= rhost=10.1.1.1 user=bob",
                             0.0) == []


def test_a_folded_repeat_counts_every_try() -> None:
    got = parse_syslog_line(ISO + "sshd[12]: message repeated 3 times: [ Failed password for"
                            " root from 10.0.0.5 port 5123 ssh2]", 0.0)
    assert [g[2]["user"] for g in got] == ["root"] * 3


def test_a_journal_record_with_a_message_that_is_not_utf8() -> None:
    """journalctl -o json writes such a MESSAGE as a list of byte values."""
    msg = list(b"Invalid user \xff\xfeevil from 10.0.0.5 port 22")
    got = parse_journal_record({"SYSLOG_IDENTIFIER": "sshd", "MESSAGE": msg,
                                "__REALTIME_TIMESTAMP": "1796156545123456"}, 0.0)
    assert got[0][2]["user"] == "\\xff\\xfeevil"
    assert got[0][1] == 1796156545.123456


def test_unrelated_records_give_nothing() -> None:
    assert parse_syslog_line(ISO + "CRON[3]: pam_unix(cron:session): session opened for user"
                             " root(uid=0) by (uid=0)", 0.0) == []
    assert parse_syslog_line("garbage", 0.0) == []
    assert parse_journal_record({"MESSAGE": 5}, 0.0) == []


def test_a_success_after_failures_carries_their_counts_and_clears_them() -> None:
    from sentinel.sources.auth.parse import WINDOW, Streaks

    st = Streaks()
    fails = [{"user": "root", "src_ip": "10.0.0.5", "service": "sshd", "success": False}
             for _ in range(3)]
    for i, f in enumerate(fails):
        st.note(f, 100.0 + i)
    assert [f["failures_before"] for f in fails] == [0, 1, 2]
    other = {"user": "alice", "src_ip": "10.0.0.5", "service": "sshd", "success": False}
    st.note(other, 104.0)
    assert (other["failures_before"], other["src_failures_before"]) == (0, 3)
    ok = {"user": "root", "src_ip": "10.0.0.5", "service": "sshd", "success": True}
    st.note(ok, 105.0)
    assert (ok["failures_before"], ok["src_failures_before"]) == (3, 4)
    again = {"user": "root", "src_ip": "10.0.0.5", "service": "sshd", "success": True}
    st.note(again, 106.0)
    assert (again["failures_before"], again["src_failures_before"]) == (0, 0)
    # failures older than the window do not count
    st.note({"user": "bob", "service": "login", "success": False}, 0.0)
    late = {"user": "bob", "service": "login", "success": True}
    st.note(late, WINDOW + 1.0)
    assert (late["failures_before"], late["src_failures_before"]) == (0, 0)


def test_a_journal_record_tagged_sshd_by_another_program_is_dropped() -> None:
    """``logger -t sshd "Accepted ..."``: journald's own _COMM says who wrote it."""
    rec = {"SYSLOG_IDENTIFIER": "sshd", "MESSAGE": "Accepted publickey for root from"
           " 10.0.0.5 port 22 ssh2", "__REALTIME_TIMESTAMP": "1"}
    assert parse_journal_record({**rec, "_COMM": "logger"}, 0.0) == []
    assert len(parse_journal_record({**rec, "_COMM": "sshd"}, 0.0)) == 1
    assert len(parse_journal_record({**rec, "_COMM": "sshd-session"}, 0.0)) == 1
