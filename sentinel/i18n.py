"""Languages and the display time zone: what people read, never what is signed.

Two languages are shipped: English (``en``, the rule files' own text) and
Bahasa Indonesia (``id``, from ``rules/i18n/*.yaml`` or a rule's ``i18n`` key).
Alerts carry every language's title and description under ``i18n``, so a
webhook in another language than the site's picks its text without rendering
the rule again. Times shown to people use the configured IANA zone (WIB, WITA,
WIT in Indonesia); the journal, attestations and the alert's ``time`` stay UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from sentinel.config import Config, Window

#: Every language sentinel can show; English is the rule files' own text.
LANGUAGES: tuple[str, ...] = ("en", "id")
DEFAULT_LANGUAGE = "en"
DEFAULT_TIMEZONE = "UTC"
EN_DASH = "\u2013"  # between the ends of a time window

#: Fixed texts in Indonesian, keyed by the English text (the English is the key itself).
#: Formal register, as Indonesian government agencies write.
_ID: dict[str, str] = {
    # suppression summaries and the Alertmanager digest
    "times in": "kali dalam",
    "events; first": "kejadian; yang pertama",
    # the incident report
    "Incident report": "Laporan insiden",
    "Host": "Host",
    "generated": "dibuat",
    "by sentinel": "oleh sentinel",
    "alerts": "peringatan",
    "most severe": "paling berat",
    "Timeline": "Linimasa",
    "Alerts": "Peringatan",
    "Delivery per recipient": "Pengiriman per penerima",
    "Journal": "Jurnal",
    "Attestations": "Atestasi",
    "Time (UTC)": "Waktu (UTC)",
    "Local time": "Waktu setempat",
    "Severity": "Tingkat",
    "Rule": "Aturan",
    "Title": "Judul",
    "What": "Kejadian",
    "Count": "Jumlah",
    "Delivery": "Pengiriman",
    "Event": "Peristiwa",
    "none": "tidak ada",
    "No alerts in this window.": "Tidak ada peringatan dalam rentang waktu ini.",
    "every journaled alert": "semua peringatan dalam jurnal",
    "alerts from": "peringatan dari",
    "until": "sampai",
    "the first": "yang pertama",
    "now": "sekarang",
    "Times are UTC, with local time beside them.":
        "Waktu dalam UTC, dengan waktu setempat di sebelahnya.",
    "This page has no scripts and loads nothing from the network.":
        "Halaman ini tidak memuat skrip dan tidak mengambil apa pun dari jaringan.",
    "Generated": "Dibuat",
    "on": "di",
    # the report's chips, flags and statuses
    "journal intact": "jurnal utuh",
    "journal TAMPERED": "jurnal DIUBAH",
    "journal not checked": "jurnal tidak diperiksa",
    "no attestations": "tidak ada atestasi",
    "{n} attestation valid": "{n} atestasi sah",
    "{n} attestations valid": "{n} atestasi sah",
    "attestations NOT VALID": "atestasi TIDAK SAH",
    "attestations not checked": "atestasi tidak diperiksa",
    "{n} delivery failed": "{n} pengiriman gagal",
    "{n} deliveries failed": "{n} pengiriman gagal",
    "{n} delivery pending": "{n} pengiriman tertunda",
    "{n} deliveries pending": "{n} pengiriman tertunda",
    "every delivery done": "semua pengiriman selesai",
    "{n} alert with an implausible time": "{n} peringatan dengan waktu yang tidak wajar",
    "{n} alerts with an implausible time": "{n} peringatan dengan waktu yang tidak wajar",
    "record fails its MAC": "MAC catatan tidak cocok",
    "time implausible: tampered record or unset clock":
        "waktu tidak wajar: catatan diubah atau jam sistem belum diatur",
    "time implausible": "waktu tidak wajar",
    "journal record": "catatan jurnal",
    "{n} line could not be read as a record": "{n} baris tidak dapat dibaca sebagai catatan",
    "{n} lines could not be read as records": "{n} baris tidak dapat dibaca sebagai catatan",
    "delivered": "terkirim",
    "pending": "tertunda",
    "failed": "gagal",
    "not routed": "tidak dirutekan",
    "unknown": "tidak diketahui",
    "this recipient does not take this alert": "penerima ini tidak menerima peringatan ini",
    "accepted by the recipient (no longer in the spool)":
        "diterima oleh penerima (tidak lagi ada di antrean)",
    "the journaled alert is malformed": "peringatan dalam jurnal tidak berbentuk sah",
    "{n} failed attempt so far": "{n} percobaan gagal sejauh ini",
    "{n} failed attempts so far": "{n} percobaan gagal sejauh ini",
    "no spool at {spool}: nothing was queued for it on this host":
        "tidak ada antrean di {spool}: tidak ada yang diantrekan untuknya di host ini",
    "cannot read the spool {spool}: {why}": "antrean {spool} tidak dapat dibaca: {why}",
    # the report's journal and key checks
    "not checked: {why}": "tidak diperiksa: {why}",
    "no journal at {path}: no alerts were recorded":
        "tidak ada jurnal di {path}: tidak ada peringatan yang tercatat",
    "cannot read the journal: {why}": "jurnal tidak dapat dibaca: {why}",
    "TAMPERED at {where}: {why}; {records} records verified before it":
        "DIUBAH di {where}: {why}; {records} catatan terverifikasi sebelumnya",
    "intact: {records} records in {files} file(s), head {head}":
        "utuh: {records} catatan dalam {files} berkas, kepala {head}",
    "intact: {records} records in {files} file(s), head {head}; the last line"
    " ({file}:{line}) is incomplete, as a crash mid-write leaves it":
        "utuh: {records} catatan dalam {files} berkas, kepala {head}; baris terakhir"
        " ({file}:{line}) tidak lengkap, seperti yang ditinggalkan oleh kegagalan saat menulis",
    "no attestations in {folder}": "tidak ada atestasi di {folder}",
    "checked with the public key {key}": "diperiksa dengan kunci publik {key}",
    "not checked: no public key given and {why}":
        "tidak diperiksa: kunci publik tidak diberikan dan {why}",
    "checked with the public half of {key}": "diperiksa dengan bagian publik dari {key}",
    # the report's one-line summaries of events
    "{qname} {qtype} from {src} to {dst}": "{qname} {qtype} dari {src} ke {dst}",
    "{op} {ip} is at {mac}": "{op} {ip} berada di {mac}",
    "{src} → {dst} type {type} code {code}": "{src} → {dst} tipe {type} kode {code}",
    "changed": "berubah",
    # connection directions (CONTRACT §3)
    "inbound": "masuk",
    "outbound": "keluar",
    "local": "lokal",
    "transit": "transit",
    # the report's timeline
    "bars": "batang",
    "{n} minute": "{n} menit",
    "{n} minutes": "{n} menit",
    "{n} hour": "{n} jam",
    "{n} hours": "{n} jam",
    "{n} day": "{n} hari",
    "{n} days": "{n} hari",
    # the report's incident groups
    "Incidents and sources": "Insiden dan sumber",
    "Incident or source": "Insiden atau sumber",
    "incident": "insiden",
    "source address": "alamat sumber",
    "file": "berkas",
    "rule": "aturan",
    "Most severe": "Paling berat",
    "First (UTC / local)": "Pertama (UTC / setempat)",
    "Last (UTC / local)": "Terakhir (UTC / setempat)",
    "Rules": "Aturan",
    "Alert rows": "Baris peringatan",
    "… {n} more": "… {n} lainnya",
    # the report's delivery table
    "No webhook recipients are configured: alerts are in the journal only.":
        "Tidak ada penerima webhook yang dikonfigurasi: peringatan hanya tercatat di jurnal.",
    "Recipient": "Penerima",
    "Routing": "Perutean",
    "Delivered": "Terkirim",
    "Pending": "Tertunda",
    "Failed": "Gagal",
    "Not routed": "Tidak dirutekan",
    "Unknown": "Tidak diketahui",
    "format": "format",
    "min severity": "tingkat minimum",
    "include tags": "sertakan tag",
    "exclude tags": "kecualikan tag",
    "include rules": "sertakan aturan",
    "exclude rules": "kecualikan aturan",
    "language": "bahasa",
    "any": "semua",
    "the site": "bawaan situs",
    "Delivered: taken by the recipient under the current routing and no longer in its spool."
    " Pending: still being retried. Failed: refused for good (kept in the spool's"
    " dead-letter table).":
        "Terkirim: diterima oleh penerima menurut perutean saat ini dan tidak lagi ada di"
        " antreannya. Tertunda: masih dicoba ulang. Gagal: ditolak secara permanen (disimpan"
        " di tabel surat mati antrean).",
    # the report's attestation table
    "{n} attestation in": "{n} atestasi di",
    "{n} attestations in": "{n} atestasi di",
    "chain valid back to sequence 0": "rantai sah hingga urutan 0",
    "NOT VALID": "TIDAK SAH",
    "not checked": "tidak diperiksa",
    "warning": "peringatan",
    "matches the journal": "sesuai dengan jurnal",
    "DOES NOT match the journal": "TIDAK sesuai dengan jurnal",
    "files": "berkas",
    "records": "catatan",
    "Seq": "Urutan",
    "Time": "Waktu",
    "Why": "Alasan",
    "Baseline (Merkle root)": "Garis dasar (akar Merkle)",
    "Journal head": "Kepala jurnal",
    "Windows open": "Jendela aktif",
    "The {n} older one is in the folder.": "{n} atestasi yang lebih lama ada di folder.",
    "The {n} older ones are in the folder.": "{n} atestasi yang lebih lama ada di folder.",
    # the one-line process field (sentinel.actors), and why a process is not known
    "user": "pengguna",
    "logged in as": "masuk sebagai",
    "not known": "tidak diketahui",
    "socket of": "soket milik",
    "socket closed before lookup": "soket sudah ditutup sebelum dicari",
    "process of another user not visible: needs CAP_SYS_PTRACE":
        "proses milik pengguna lain tidak terlihat: memerlukan CAP_SYS_PTRACE",
    "process exited before lookup": "proses sudah berakhir sebelum dicari",
    "socket held by no process": "soket tidak dipegang oleh proses mana pun",
    "lookup deadline passed": "batas waktu pencarian terlewati",
    "process lookup rate limited": "laju pencarian proses sedang dibatasi",
    "lookup queue full": "antrean pencarian penuh",
    "crafted packet, no socket": "paket rakitan, tanpa soket",
    "socket lookup unavailable": "pencarian soket tidak tersedia",
    "socket lookup failed": "pencarian soket gagal",
    "no audit record (a process started before audit was enabled, or a change"
    " through a descriptor opened earlier)":
        "tidak ada catatan audit (proses yang dimulai sebelum audit diaktifkan, atau"
        " perubahan melalui deskriptor yang dibuka sebelumnya)",
    "changed while sentinel was not running": "diubah saat sentinel tidak berjalan",
    "found by sentinel baseline verify": "ditemukan oleh sentinel baseline verify",
    "attribution unavailable: ": "atribusi tidak tersedia: ",
    "seen by rescan (": "terlihat saat pemindaian ulang (",
    # severities, as people read them
    "critical": "kritis",
    "high": "tinggi",
    "medium": "sedang",
    "low": "rendah",
    "info": "info",
}

_CATALOGS: dict[str, dict[str, str]] = {"id": _ID}


def alert_texts(language: str, texts: dict[str, tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """Title in ``language`` and the alert fields of an alert built outside the rules.

    ``texts`` maps a language to (title, description) and must hold ``en``; the
    shape of the returned ``description``, ``language`` and ``i18n`` is the one
    the engine gives rule alerts, so webhooks pick a recipient's language alike.
    """
    shown = texts.get(language, texts["en"])
    i18n = {lang: {"title": t, "description": d} for lang, (t, d) in texts.items()}
    return shown[0], {"description": shown[1], "language": language, "i18n": i18n}


def text(lang: str, english: str) -> str:
    """``english`` in ``lang``; the English itself when there is no translation."""
    return _CATALOGS.get(lang, {}).get(english, english)


#: Languages that write a decimal comma: to an Indonesian reader 4.948 is four
#: thousand nine hundred and forty-eight, 4,948 is a little under five.
DECIMAL_COMMA = frozenset({"id"})


def decimal(value: float, lang: str) -> str:
    """A fractional number as ``lang`` writes it."""
    shown = str(value)
    return shown.replace(".", ",") if lang in DECIMAL_COMMA else shown


def zone(name: str) -> tzinfo:
    """The time zone of an IANA name; raises ``ValueError`` saying what is valid."""
    if name in ("UTC", "Z", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = (f"{name!r} is not a known IANA time zone; valid: e.g. Asia/Jakarta (WIB),"
               " Asia/Makassar (WITA), Asia/Jayapura (WIT) or UTC")
        raise ValueError(msg) from None


def local_iso(ts: float, tz: tzinfo) -> str:
    """RFC 3339 in ``tz`` with milliseconds: ``2024-02-14T13:05:00.123+07:00``."""
    dt = datetime.fromtimestamp(ts, tz)
    off = dt.strftime("%z")
    offset = "Z" if tz is UTC else f"{off[:3]}:{off[3:]}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}" + offset


def human_time(ts: float, tz: tzinfo, seconds: bool = True) -> str:
    """A time for people: ``2024-02-14 13:05:00 WIB`` (the zone's own abbreviation)."""
    dt = datetime.fromtimestamp(ts, tz)
    abbr = dt.tzname() or dt.strftime("%z")
    # zones without a letter abbreviation give "+07"; show the full offset then
    if abbr[:1] in "+-":
        abbr = "UTC" + dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:]
    return dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + abbr


def span(lang: str, seconds: float) -> str:
    """A period for a summary title: ``10m`` in English, ``10 menit`` in Indonesian."""
    units = (("h", "jam", 3600), ("m", "menit", 60))
    for short, word, size in units:
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {word}" if lang == "id" else f"{n}{short}"
    return f"{seconds:g} detik" if lang == "id" else f"{seconds:g}s"


def summary_title(title: str, lang: str, total: int, seconds: float) -> str:
    """The title of a suppression summary: ``TITLE (N times in 10m)``."""
    return f"{title} ({total} {text(lang, 'times in')} {span(lang, seconds)})"


def retitled(extra: dict[str, Any], title: str, make: Callable[[str, str], str],
             ) -> tuple[str, dict[str, Any]]:
    """Title (site language) and ``i18n`` of an alert derived from one with ``title`` and
    ``extra``: ``make(title, language)`` words each language's title.

    The site language is the alert's ``language`` (English when absent).
    """
    lang = extra.get("language", DEFAULT_LANGUAGE)
    shown = make(title, lang if isinstance(lang, str) else DEFAULT_LANGUAGE)
    texts = extra.get("i18n")
    if not isinstance(texts, dict):
        return shown, {}
    out = {code: {**t, "title": make(str(t.get("title", "")), code)}
           for code, t in texts.items() if isinstance(t, dict)}
    return shown, {"i18n": out}


def summary_texts(extra: dict[str, Any], title: str, total: int, seconds: float,
                  ) -> tuple[str, dict[str, Any]]:
    """Title and ``i18n`` of a suppression summary of an alert with ``title`` and ``extra``."""
    return retitled(extra, title, lambda t, lang: summary_title(t, lang, total, seconds))


def storm_title(title: str, lang: str, folded: int, limit: int, seconds: float) -> str:
    """The title of a storm summary: how many alerts were folded past which rate."""
    if lang == "id":
        return (f"{title} (badai peringatan: {folded} peringatan lain dari aturan ini"
                f" digabungkan, melewati {limit} dalam {span(lang, seconds)})")
    return (f"{title} (alert storm: {folded} more alerts of this rule folded, past {limit}"
            f" in {span(lang, seconds)})")


def storm_texts(extra: dict[str, Any], title: str, folded: int, limit: int, seconds: float,
                ) -> tuple[str, dict[str, Any]]:
    """Title and ``i18n`` of a storm summary whose first folded alert has ``title``."""
    return retitled(extra, title,
                    lambda t, lang: storm_title(t, lang, folded, limit, seconds))


def localize(alert: dict[str, Any], lang: str | None, tz: tzinfo, tz_name: str
             ) -> dict[str, Any]:
    """The alert as one recipient reads it: its language's title and description, plus
    ``time_local`` and ``timezone``. ``time`` stays UTC; ``lang`` None keeps the site's."""
    out = dict(alert)
    texts = alert.get("i18n")
    if lang is not None and isinstance(texts, dict) and isinstance(texts.get(lang), dict):
        chosen = texts[lang]
        if isinstance(chosen.get("title"), str):
            out["title"] = chosen["title"]
        if isinstance(chosen.get("description"), str):
            out["description"] = chosen["description"]
        out["language"] = lang
    t = alert.get("time")
    if isinstance(t, str):
        from sentinel.events import parse_time

        try:
            out["time_local"] = local_iso(parse_time(t), tz)
            out["timezone"] = tz_name
        except ValueError:
            pass  # a record whose time does not parse keeps just that time
    return out


def languages_in_use(config: Config) -> set[str]:
    """The site's language and every webhook's own: what rules must be translated into."""
    return {config.language} | {w.language for w in config.outputs.webhooks if w.language}


def schedule_text(windows: tuple[Window, ...], tz: tzinfo) -> str:
    """A schedule as people read it: ``2024-02-14 13:00 WIB \u2013 2024-02-15 23:59 WIB``."""
    return ", ".join(f"{human_time(w.start.timestamp(), tz, seconds=False)} {EN_DASH}"
                     f" {human_time(w.end.timestamp(), tz, seconds=False)}"
                     for w in windows) or "(no windows)"
