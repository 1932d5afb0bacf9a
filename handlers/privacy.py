"""Personal data inside free text (UU PDP): found and masked before text leaves the bot.

Exports, digests and quotes show what residents said, never how to reach or identify
them: phone numbers, 16-digit NIK (and KK) numbers, e-mail addresses (also written
"budi[at]gmail.com"), names introduced the way Indonesians introduce them ("nama saya
Sari", "Pak Budi", "Mbah Karto", "Saya Rina", "I'm John") and home addresses down to the
house ("rumah saya di Jl. Melati No. 12").

What stays, because a complaint is worth nothing without it: the place of the problem
("jalan Diponegoro rusak", "depan Jl. Melati" keeps the street, only a house number goes),
RT/RW numbers, offices and roles ("Pak Camat", "Bu Lurah", "Pak RT"), "Ibu Kota", dates,
times, money, distances and numbers that are too short or too long to be a phone or a NIK.

`find(text)` gives the spans, `redact(text, lang)` the masked text. tests/data/masking.jsonl
holds the labelled sentences the rules are measured on (bench/bench_masking.py prints
precision and recall per kind and the cost per call).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import NamedTuple


class Span(NamedTuple):
    start: int
    end: int
    kind: str  # one of KINDS


# Overlaps are settled in this order: an e-mail address can hold digits, a NIK is a longer
# run of digits than a phone number, an address can hold a name-like street.
KINDS = ("email", "nik", "phone", "address", "name")

MASKS: dict[str, dict[str, str]] = {
    "id": {"email": "[email]", "nik": "[NIK]", "phone": "[telepon]", "name": "[nama]", "address": "[alamat]"},
    "en": {"email": "[email]", "nik": "[NIK]", "phone": "[phone]", "name": "[name]", "address": "[address]"},
}

# E-mail ---------------------------------------------------------------------------------
# "@" or an obfuscated "at": [at] (at) {at} <at>; dots may be written [dot] (dot) " dot ".
_AT = r"(?:@|[ ]@[ ]|[ ]?[\[({<][ ]?(?:at|et)[ ]?[\])}>][ ]?)"
_DOT = r"(?:\.|[ ]?[\[({<][ ]?dot[ ]?[\])}>][ ]?|[ ]dot[ ])"
_LOCAL = r"(?<![\w.%+-])\w[\w.%+-]*"
EMAIL = re.compile(rf"{_LOCAL}{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}[A-Za-z]{{2,}}\b", re.IGNORECASE)
# A bare " at " is an English word, so it only counts before a known top-level domain.
EMAIL_SPOKEN = re.compile(
    rf"{_LOCAL}[ ]at[ ][\w-]+(?:{_DOT}[\w-]+)*(?:\.|[ ]dot[ ])"
    r"(?:com|net|org|id|info|biz|edu|gov|io|me|my|sg|uk|us)\b",
    re.IGNORECASE,
)

# NIK ------------------------------------------------------------------------------------
# Exactly 16 digits, possibly grouped by single spaces, dots or dashes ("3520 0112 3456 7890").
# Not part of a longer grouped run: a 20-digit electricity token is not a NIK.
NIK = re.compile(r"(?<![0-9])(?<![0-9][ .-])[0-9](?:[ .-]?[0-9]){15}(?![0-9]|[ .-][0-9])")

# Phone ----------------------------------------------------------------------------------
# Mobile: 08.. / 628.. / +62 8.., 10-13 digits with the leading 0. Landline: a 3-4 digit
# area code from 02 to 09, contiguous or in brackets ("(0351) 895123"), then 5-8 digits.
# Other countries: "+" and a country code. Dates (05-03-2026), times (08.30) and money
# (Rp 50.000) have too few digits or no such start.
_SEP = r"[ .-]?"
PHONE = re.compile(
    r"(?<![\w+])(?:"
    rf"(?:\(?\+62\)?|\(?62\)?|0){_SEP}8[0-9](?:{_SEP}[0-9]){{7,10}}"
    rf"|(?:\(0[2-9][0-9]{{1,2}}\)|0[2-9][0-9]{{1,2}}|\(?\+?62\)?{_SEP}\(?[2-9][0-9]{{1,2}}\)?)"
    rf"{_SEP}[0-9](?:{_SEP}[0-9]){{4,7}}"
    rf"|\+(?!62)[1-9][0-9]{{0,2}}{_SEP}\(?[0-9]{{1,4}}\)?(?:{_SEP}[0-9]){{5,10}}"
    r")(?![0-9])"
)
# A mobile number written without its 0 ("WA saya 8123 4567 890") counts after a word that
# says a number follows; elsewhere such digits are meter or account numbers.
PHONE_AFTER_CUE = re.compile(
    r"\b(?:wa|whatsapp|hp|handphone|ponsel|telp|telpon|telepon|tlp|tel|no|nomor|nomer|kontak|"
    r"hubungi|call|phone|sms|mobile|contact)\b[^0-9\n]{0,20}?(?<![\w+])(8[1-9](?:[ .-]?[0-9]){7,10})(?![0-9])",
    re.IGNORECASE,
)

# Address --------------------------------------------------------------------------------
_STREET = (
    r"(?:jl|jln|jalan|gg|gang|perum|perumahan|komplek|kompleks|komp|griya|blok|lorong|"
    r"street|road|lane|avenue)"
)
_HOUSE_NO = r"(?:no|nomor|nomer|number|#)\.?[ ]?[0-9]{1,4}[A-Za-z]?(?:[/-][0-9A-Za-z]{1,3})?\b"
# A house number after a street or a house, in the same clause: the number goes, the street
# (where a problem is) stays: "got mampet depan Jl. Melati No. 12" -> "depan Jl. Melati [alamat]".
# ... unless the number is a public building's ("depan Masjid Baiturrahman No. 1").
_PUBLIC = (
    r"\b(?:masjid|musholl?a|mushola|langgar|gereja|pura|sekolah|sd|sdn|smp|smpn|sma|sman|smk|"
    r"kantor|balai|pasar|puskesmas|pustu|polindes|toko|ruko|hotel|bank|gedung)\b"
)
HOUSE_NUMBER = re.compile(
    rf"\b(?:{_STREET}|rumah|rmh|omah|house)\b\.?(?:(?:(?!{_PUBLIC})[^\n,;:!?]){{0,40}}?[ ])?,?[ ]?({_HOUSE_NO})",
    re.IGNORECASE,
)
# Where a resident says they live, the whole street address is theirs, not a problem's place.
HOME = re.compile(
    r"\b(?:alamat(?:[ ](?:saya|kami|ku|aku|rumah|lengkap|rumah[ ]saya))?|alamatku|"
    r"rumah[ ](?:saya|kami|aku|kula)|rumahku|omah(?:[ ](?:kula|kulo|aku|ku))|omahku|griya[ ]kula|"
    r"dalem[ ]kula|(?:saya|kami|aku)[ ]tinggal|tinggal|domisili|berdomisili|kediaman[ ](?:saya|kami)|"
    r"address(?:[ ]is)?|live[sd]?|living|house(?:[ ]is)?|home(?:[ ]is)?)"
    r"[ ]?[:,(]?(?:[ ](?:di|ing|wonten|neng|nang|at|in|is|sekarang[ ]di))?[ ]?"
    # Up to a house number within six words, in any case ("perum taman asri blok b no 14"),
    # else the street's capitalised words ("Jl. Dr. Soetomo", "Jl. Anggrek").
    rf"((?:{_STREET}\b\.?[ ]?(?:[\w'-]+\.?[ ]){{0,5}}?{_HOUSE_NO}"
    rf"|{_STREET}\b\.?[ ]?[^\W_][\w'-]*\.?"
    r"(?:[ ](?!(?:no|nomor|nomer|rt|rw|km|kec|kel|desa|kelurahan|kecamatan)\b)(?-i:[A-Z][\w'-]*)\.?"
    rf"|[ ][0-9]{{1,3}}\b|[ ]{_STREET}\b\.?[ ]?[0-9A-Za-z]+)*(?:,?[ ]?{_HOUSE_NO})?)"
    r"|[0-9]{1,4}[A-Za-z]?[ ](?:[A-Z][a-z]+[ ]){1,3}(?:Street|St|Road|Rd|Lane|Ln|Avenue|Ave|Drive|Dr)\b)",
    re.IGNORECASE,
)

# Name -----------------------------------------------------------------------------------
# What comes before a name, and how sure it makes us:
#   intro  "nama saya", "my name is", "Nama: ": the next words are a name in any case
#          ("nama saya sari wulandari", "NAMA SAYA BUDI SANTOSO");
#   title  "Pak", "Bu", "Mbah", "Cak", "Dik", "Ning", ... optionally with a role that is not
#          a place ("Pak RT Sugeng Riyadi", "Bu Bidan Rina"): capitalised words, or any word
#          when the whole text is written in lower case ("pak budi ga dateng");
#   self   "Saya Rina", "I'm John Smith", "Hormat saya, Budi", "an. Rahmawati": capitalised
#          words only, but for one lower-case word and a comma after a sentence's "saya"
#          ("saya ani, ibu rumah tangga").
_TITLES = (
    r"pak|bapak|bpk|bp|pk|bu|ibu|mas|mbak|mba|mbah|cak|dik|adik|dek|ning|neng|bang|abang|"
    r"kak|kakak|teh|teteh|kang|akang|om|tante|sdr|sdri|saudara|saudari|tuan|nyonya|ny|"
    r"mr|mrs|ms|miss|gus|ustadz|ustad|ustazah|kyai|kiai|romo|nyai|dr|dokter|bidan"
)
_ROLES = (
    r"(?:rt|rw)(?:[ ]?[0-9]{1,3})?|ketua|h|hj|haji|hajah|dr|drs|dra|ir|prof|kh|bidan|guru|"
    r"dokter|mantri|sekdes|carik|kasun|kadus|dukuh|kamituwo|modin|babinsa|pendeta|kakung|kung|uti|buyut|nyai"
)
# Offices of a place: "Pak Camat Maospati" names the kecamatan, "Pak Camat Bambang Suprapto"
# the man. After one of these only two or more name-like words count as a name.
_OFFICES = r"lurah|camat|kades|bupati|gubernur|walikota|wali[ ]kota|kepala[ ]desa|kepala[ ]dusun"
_INTRO_CUE = (
    r"(?P<intro>(?:nama[ ](?:saya|aku|ku|kula|kulo|gue|gw)|namaku|nami[ ](?:kula|kulo|dalem)|jenengku|"
    r"jeneng[ ](?:aku|kula)|(?:saya|aku)[ ]bernama|perkenalkan,?[ ](?:nama[ ])?saya|kenalkan,?[ ]saya|"
    r"my[ ]name[ ]is|my[ ]name's|(?:nama|name)(?:[ ](?:lengkap|pelapor|saya|full))?[ ]?:)"
    r"(?:[ ](?:adalah|ialah|yaitu|yakni|is))?[ ]?[:,]?)"
)
_SELF_CUE = (
    r"(?P<self>(?:(?:hormat[ ](?:saya|kami)|salam(?:[ ]hormat)?|regards)[ ]?,|a\.[ ]?n\.|an\.|a/n|"
    r"atas[ ]nama|(?:data|cc|kontak|contact(?:[ ]person)?|from|dari)[ ]?:|"
    r"i[ ]am|i['’]m|saya|aku|kula|kulo|gue|gw)"
    # "Salam hormat, Ir. Bambang Hermawan": degrees and Haji before the name.
    r"(?:[ ](?:ir|dr|drs|dra|prof|h|hj)\.)*)"
)
_TITLE_CUE = rf"(?P<title>(?:{_TITLES})\.?(?:[ ](?:{_ROLES})\.?)*(?:[ ](?P<office>{_OFFICES}))?)"
NAME_CUE = re.compile(rf"\b(?:{_INTRO_CUE}|{_SELF_CUE}|{_TITLE_CUE})[ \t\n]+", re.IGNORECASE)
# Every position a cue starts at, overlapping ones included ("NAMA SAYA H. NAMA SAYA"): the
# reference path must try each start, as the gated path does word by word.
_CUE_STARTS = re.compile(rf"\b(?=(?:{_INTRO_CUE}|{_SELF_CUE}|{_TITLE_CUE})[ \t\n]+)", re.IGNORECASE)
# The same, split by the cue's first word: anchored at a title only the title branch is
# tried (0.9 µs a match for NAME_CUE, measured on bench_export's texts).
_AFTER_TITLE = re.compile(rf"\b(?:{_TITLE_CUE})[ \t\n]+", re.IGNORECASE)
_AFTER_PERSON = re.compile(rf"\b(?:{_INTRO_CUE}|{_SELF_CUE})[ \t\n]+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_]))*(\.?)")
_GAP = re.compile(r"[ \t]+")
# Between two parts of a name ("Siti binti Ahmad", "Willem van Dijk").
_NAME_JOINERS = frozenset({"bin", "binti", "bt", "al", "van", "de", "der", "von", "da", "dos"})
# Words that follow a title or "saya" but are not names: roles and offices, relatives,
# everyday words (for lower-case texts), places. Lower case; checked against each word.
_NOT_NAMES_TEXT = """
    rt rw lurah camat kades kadus kasun kepala desa dusun kelurahan kecamatan kabupaten kota
    kampung bupati wakil wali walikota gubernur presiden menteri dewan dprd anggota ketua sekretaris
    bendahara kapolsek kapolres polisi tentara danramil babinsa satpam petugas pegawai staf
    guru dosen dokter bidan perawat mantri ustadz kyai haji direktur manajer pimpinan kepala
    pejabat pemimpin pengurus pj plt ogah tani nelayan sopir supir kurir ojek ojol tukang kasir
    penjual pedagang pemilik warga penduduk masyarakat rakyat kami kita kalian mereka dia ia beliau
    saya aku anda kamu engkau gue gw lu nya mu ku kula kulo panjenengan sampeyan awakmu
    ibu bapak pak bu mas mbak adik kakak anak cucu suami istri isteri mertua nenek kakek orang
    orangtua keluarga tetangga teman kawan saudara semua sekalian sekeluarga hamil menyusui
    rumah tangga kandung tiri angkat muda tua kecil besar lain itu ini tersebut sendiri juga
    yang dan atau dengan di ke dari untuk pada oleh dalam atas bawah depan belakang samping
    sebelah dekat antara sampai hingga sejak karena sebab agar supaya kalau jika bila kapan
    tidak tak nggak ngga gak ga enggak belum sudah udah telah sedang lagi masih akan mau ingin
    bisa dapat boleh harus perlu tolong mohon minta terima kasih maaf permisi selamat salam
    sangat amat sekali terlalu cukup kurang lebih paling hanya cuma saja aja pun kok sih dong
    deh lho ya iya ok oke baik benar betul ada adalah ialah yaitu yakni sebagai selaku seorang
    para sang si sering selalu pernah jarang baru lama sudah tadi nanti besok kemarin hari
    pagi siang sore malam minggu bulan tahun jam waktu sekarang kini dulu
    datang pergi pulang lapor melapor laporkan bilang kata bicara tanya jawab minta kasih beri
    bantu tinggal tinggalnya lihat dengar tahu kenal punya buat bikin jual beli bayar pakai kerja
    sakit rusak mati hilang banjir macet bocor kecewa senang sedih marah bingung setuju usul
    kota negara pertiwi kandungan kawin pkk posyandu puskesmas sekolah kantor balai pasar masjid
    jalan jl jln gang gg perum perumahan komplek blok lorong kompleks no nomor rt rw km
    kawasan wilayah daerah lokasi tempat sini situ sana mana apa siapa bagaimana kenapa mengapa
    semoga harap berharap mengharap percaya yakin sangat paham ngerti
    ingkang sampun dereng mboten nggih menika niku kalih saking dhateng badhe nyuwun matur
    sanget sedaya kathah sekedhik wonten ing neng nang karo lan utawa iki kuwi iku kae
    the a an and or of to in on at for from with by my your his her our their this that
    not no yes very so just also still already going writing from here there sorry happy
    sure glad afraid worried living resident citizen villager farmer teacher new old sick
    mister sir madam mrs mr ms miss mayor head chief officer police village district city
    kira rasa pikir yakin heran pribadi ulangi tegaskan ingatkan akui ucapkan sampaikan usulkan
    sarankan laporkan jelaskan tambahkan
"""
NOT_NAMES = (
    frozenset(_NOT_NAMES_TEXT.split())
    | frozenset(_TITLES.split("|"))
    | frozenset(w for w in re.sub(r"\(.*?\)|\[.*?\]|[?]", "", _ROLES).split("|") if w.isalpha())
)

_DIGITS = "0123456789"
_NO_DIGITS = str.maketrans("", "", _DIGITS)
_ASCII_FOLD: dict[int, str] | None = None


def _fold_table() -> dict[int, str]:
    """Unicode digits and the full-width "@" to ASCII, one character for one (spans stay)."""
    global _ASCII_FOLD  # built once, on the first text that needs it
    if _ASCII_FOLD is None:
        table = {
            c: str(unicodedata.decimal(chr(c))) for c in range(128, 0x20000) if unicodedata.category(chr(c)) == "Nd"
        }
        table[0xFF20] = "@"
        _ASCII_FOLD = table
    return _ASCII_FOLD


def _shape(word: str) -> str:
    if word[0].isupper():
        return "upper" if len(word) > 1 and word.isupper() else "title"
    return "lower" if word.islower() else ""


def _name_after(
    text: str, pos: int, cue: str, lower_text: bool, upper_text: bool, least: int = 1
) -> tuple[int, int] | None:
    """The span of the name of at least `least` words at `pos` after a cue of kind `cue`."""
    end = None
    shape = None
    words = 0
    pending_joiner = False
    i = pos
    n = len(text)
    while words < 4 and i < n:
        m = _WORD.match(text, i)
        if m is None:
            break
        word = m.group()
        dot = m.group(1)
        bare = word[:-1] if dot else word
        low = bare.lower()
        if words and low in _NAME_JOINERS and not pending_joiner:
            pending_joiner = True
        else:
            s = _shape(bare)
            if low in NOT_NAMES or not s:
                break
            if shape is None:
                if s == "lower" and not (cue == "intro" or (cue == "title" and lower_text)):
                    break
                if s == "upper" and cue != "intro" and not upper_text and len(bare) > 1:
                    break
                shape = s
            elif s != shape and not (shape == "upper" and s == "title" and len(bare) == 1):
                break
            pending_joiner = False
            words += 1
            end = m.end() if (dot and len(bare) == 1) else m.start() + len(bare)
            if dot and len(bare) > 1:
                break  # "Pak Budi. Besok ..." : the sentence ends the name
        g = _GAP.match(text, m.end())
        if g is None:
            break
        i = g.end()
    if end is None or words < least:
        return None
    return pos, end


# Cheap gates. A text is lowered, encoded to ASCII (anything else becomes "?") and split
# into words at C speed (0.5 µs for a 90-character text); each rule runs only where its
# first word is among them, and then only anchored at that word (NAME_CUE over a whole
# text costs 17 µs, anchored at one word ~1 µs). Measured on bench/bench_export.py's texts:
# 34 µs a call without the gates.
def _bytes_set(words: str | list[str]) -> frozenset[bytes]:
    """Lower-case words (a list, or one string of them) as bytes, for the word-set gates."""
    return frozenset(w.encode() for w in (words.split() if isinstance(words, str) else words))


_NON_WORD = bytes(c if chr(c).isalnum() else 32 for c in range(128)) + b" " * 128
_NAME_CUE_WORDS = _bytes_set(
    "nama namaku nami jenengku jeneng saya aku perkenalkan kenalkan my name hormat salam regards "
    "a an atas i kula kulo gue gw"
) | _bytes_set(_TITLES.split("|"))
# "Data: Budi", "Cc: Rudi": cues only with a colon, and "dari" is in most texts.
_COLON_CUE_WORDS = _NAME_CUE_WORDS | _bytes_set("data cc kontak contact from dari")
_HOME_WORDS = _bytes_set(
    "alamat alamatku rumah rumahku omah omahku griya dalem tinggal domisili berdomisili kediaman "
    "address live lives lived living house home"
)
_STREET_WORDS = _bytes_set([*_STREET.strip("(?:)").split("|"), "st", "rd", "ln", "ave", "dr"])
_HOUSE_WORDS = _STREET_WORDS | _bytes_set(["rumah", "rmh", "omah", "house"])
_PHONE_CUE_WORDS = _bytes_set(
    "wa whatsapp hp handphone ponsel telp telpon telepon tlp tel no nomor nomer kontak hubungi call "
    "phone sms mobile contact"
)
# Non-ASCII letters that IGNORECASE matching folds onto ASCII ones ("Pa\u212a" is "Pak" to
# the patterns): texts holding them take the slow path, every rule over the whole text.
# Only digits of other scripts and the full-width "@" are folded (str.translate with the
# table costs ~3 µs, so only texts that hold one pay it).
_NEEDS_FOLD = re.compile(r"[^\x00-\x7f\D]|\uff20")
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")


def _starts(lowered: str, words: frozenset[bytes]) -> list[tuple[int, bytes]]:
    """Where the words start in `lowered` as whole words (not "bu" inside "ibu"), and which."""
    found = []
    for encoded in words:
        word = encoded.decode()
        i = lowered.find(word)
        while i >= 0:
            if i == 0 or not (lowered[i - 1].isalnum() or lowered[i - 1] == "_"):
                found.append((i, encoded))
            i = lowered.find(word, i + 1)
    return found


_TITLE_WORDS = _bytes_set(_TITLES.split("|"))
_A = frozenset({b"a"})
_SELF_WORDS = frozenset({"saya", "aku", "kula", "kulo", "gue", "gw"})


def _names(subject: str, starts: list[tuple[int, bytes]] | None) -> list[Span]:
    lower_text = subject.islower()
    upper_text = subject.isupper()
    n = len(subject)
    spans = []
    matches: list[re.Match[str] | None]
    if starts is None:
        matches = [NAME_CUE.match(subject, cue.start()) for cue in _CUE_STARTS.finditer(subject)]
    else:
        matches = [(_AFTER_TITLE if word in _TITLE_WORDS else _AFTER_PERSON).match(subject, i) for i, word in starts]
    for m in matches:
        if m is None:
            continue
        cue = m.lastgroup or "title"
        j = m.end()
        if j >= n:
            continue
        if cue == "self" and subject[j].islower():
            # "saya ani, ibu rumah tangga": a sentence opening with "saya", one lower-case
            # word and a comma. Mid-sentence that is a verb or a noun ("Sudah saya foto,",
            # "Bapak saya petani,": both were false alarms without this condition).
            w = _WORD.match(subject, j)
            before = subject[: m.start()].rstrip(" \t")
            if (
                w
                and not w.group(1)
                and subject.startswith(",", w.end())
                and (not before or before[-1] in ".!?,;:\n")
                and m.group().lower().rstrip() in _SELF_WORDS
                and w.group().lower() not in NOT_NAMES
            ):
                spans.append(Span(j, w.end(), "name"))
            continue
        # Only after "nama saya" or in an all lower-case text may a name start in lower case.
        if cue != "intro" and not lower_text and subject[j].islower():
            continue
        office = "office" in m.re.groupindex and m.group("office")
        found = _name_after(subject, j, cue, lower_text, upper_text, 2 if office else 1)
        if found:
            spans.append(Span(found[0], found[1], "name"))
    return spans


def find(text: str) -> list[Span]:
    """The personal data in `text`, as non-overlapping spans in text order."""
    return _find(text, gated=True)


def _find(text: str, gated: bool) -> list[Span]:
    """`gated=False` runs every rule over the whole text: the reference the gates must equal
    (tests/test_privacy.py checks that on generated texts)."""
    if not text:
        return []
    subject = text
    if not text.isascii() and _NEEDS_FOLD.search(text):
        subject = text.translate(_fold_table())
    lowered = subject.lower()
    fast = gated and (
        subject.isascii() or (len(lowered) == len(subject) and not any(c in subject for c in _FOLDS_TO_ASCII))
    )
    raw = lowered.encode("ascii", "replace")
    words = set(raw.translate(_NON_WORD).split())
    found: list[Span] = []
    spoken = b"at" in words or b"et" in words  # "budi[at]gmail.com", "budi at gmail dot com"
    at = raw.find(b"@")
    if at >= 0 or spoken or not fast:
        # From the word before the first "@": EMAIL tries every word start (7 µs a text).
        begin = 0 if spoken or not fast else raw.rfind(b" ", 0, max(0, at - 1)) + 1
        found += [Span(m.start(), m.end(), "email") for m in EMAIL.finditer(subject, begin)]
        if spoken or not fast:
            found += [Span(m.start(), m.end(), "email") for m in EMAIL_SPOKEN.finditer(subject)]
    digits = len(raw) - len(raw.translate(None, b"0123456789"))
    if digits >= 16:
        found += [Span(m.start(), m.end(), "nik") for m in NIK.finditer(subject)]
    if digits >= 7:
        found += [Span(m.start(), m.end(), "phone") for m in PHONE.finditer(subject)]
        if not fast:
            found += [Span(m.start(1), m.end(1), "phone") for m in PHONE_AFTER_CUE.finditer(subject)]
        elif digits >= 9 and not words.isdisjoint(_PHONE_CUE_WORDS):
            for i, _ in _starts(lowered, _PHONE_CUE_WORDS.intersection(words)):
                m = PHONE_AFTER_CUE.match(subject, i)
                if m:
                    found.append(Span(m.start(1), m.end(1), "phone"))
    if not fast:
        found += [Span(m.start(1), m.end(1), "address") for m in HOME.finditer(subject)]
    elif not words.isdisjoint(_HOME_WORDS):
        # Only where a home word stands; not also gated on a street word, which can hide
        # inside a glued token ("rumah saya diJl. Melati": no "jl" word).
        for i, _ in _starts(lowered, _HOME_WORDS.intersection(words)):
            m = HOME.match(subject, i)
            if m:
                found.append(Span(m.start(1), m.end(1), "address"))
    # Not also gated on "no"/"nomor" as a word: it can be glued to the number ("no3520").
    if digits and (not fast or not words.isdisjoint(_HOUSE_WORDS)):
        found += [Span(m.start(1), m.end(1), "address") for m in HOUSE_NUMBER.finditer(subject)]
    if not fast:
        found += _names(subject, None)
    else:
        cues = (_COLON_CUE_WORDS if b":" in raw else _NAME_CUE_WORDS).intersection(words)
        if b"a" in cues and b"a.n" not in raw and b"a. n" not in raw and b"a/n" not in raw:
            cues -= _A  # the English article, not "a.n."
        if cues:
            found += _names(subject, _starts(lowered, cues))
    if len(found) < 2:
        return found
    # Settle overlaps: kinds in KINDS order, then the longer span; the rest are dropped.
    # Kept spans stay sorted and disjoint, so one bisection finds the neighbours (a text of
    # 1,500 "Pak Budi" took 79 ms comparing every pair).
    found.sort(key=lambda s: (_RANK[s.kind], s.start - s.end))
    kept: list[Span] = []
    for s in found:
        i = bisect.bisect_left(kept, s)
        if (i == 0 or kept[i - 1].end <= s.start) and (i == len(kept) or s.end <= kept[i].start):
            kept.insert(i, s)
    return kept


_RANK = {k: i for i, k in enumerate(KINDS)}


def redact(text: str, lang: str = "id") -> str:
    """Mask personal data in `text` with the masks of `lang` ("id" or "en"; others get "id").

    Everything else is left as written: "Pak Budi, 0812-3456-7890" -> "Pak [nama], [telepon]".
    """
    if not text:
        return text
    spans = find(text)
    if not spans:
        return text
    masks = MASKS.get(lang[:2].lower() if lang else "id") or MASKS["id"]
    parts = []
    last = 0
    for s in spans:
        parts.append(text[last : s.start])
        parts.append(masks[s.kind])
        last = s.end
    parts.append(text[last:])
    return "".join(parts)


def _rules_version() -> str:
    """A fingerprint of every pattern and word list above: text masked and stored under one
    version is reused (exports of a million rows then skip ~7 µs a row), and masked again
    once a rule changes."""
    import hashlib

    parts = []
    for name, value in sorted(globals().items()):
        if isinstance(value, re.Pattern):
            parts.append(f"{name}={value.pattern}/{value.flags}")
        elif isinstance(value, frozenset):
            parts.append(f"{name}={sorted(map(str, value))}")
        elif isinstance(value, dict) and name == "MASKS":
            parts.append(f"{name}={sorted(value.items())}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


RULES_VERSION = _rules_version()
