"""Personal data in free text is masked; ordinary numbers and words are left alone."""

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from handlers import privacy
from handlers.privacy import redact


@pytest.mark.parametrize(
    "text,gone,kept",
    [
        ("Hubungi 0812-3456-7890 ya", "0812-3456-7890", "Hubungi"),
        ("wa +62 812 3456 7890", "812 3456 7890", "wa"),
        ("NIK saya 3520011234567890", "3520011234567890", "NIK saya"),
        ("email: sari.w@gmail.com", "sari.w@gmail.com", "email"),
        ("Nama saya Sari Wulandari dari Bendo", "Sari", "dari Bendo"),
        ("Pak Budi RT 03 tidak pernah datang", "Budi", "RT 03"),
    ],
)
def test_personal_data_is_masked(text, gone, kept):
    out = redact(text)
    assert gone not in out and kept in out


def test_ordinary_numbers_and_capitalised_places_stay():
    text = "Jalan rusak 200 meter sejak 2024 di Ibu kota kecamatan, Jl. Raya Maospati km 12"
    assert redact(text) == text


# Issue 12, item 4: each example the attack found, as the resident wrote it. `gone` must
# not survive anywhere in the output, `kept` must survive as written.
@pytest.mark.parametrize(
    "text,gone,kept",
    [
        ("nama saya sari wulandari dari bendo", ["sari", "wulandari"], "nama saya [nama] dari bendo"),
        ("NAMA SAYA BUDI SANTOSO", ["BUDI", "SANTOSO"], "NAMA SAYA [nama]"),
        ("Nama saya Sri Rahayu Ningsih, warga RT 03", ["Ningsih", "Rahayu"], "Nama saya [nama], warga RT 03"),
        ("Mbah Karto sakit", ["Karto"], "Mbah [nama] sakit"),
        ("Cak Mamat bersihin got", ["Mamat"], "Cak [nama] bersihin got"),
        ("Dik Ayu butuh beasiswa", ["Ayu"], "Dik [nama] butuh beasiswa"),
        ("Ning Lia ngurus posyandu", ["Lia"], "Ning [nama] ngurus posyandu"),
        ("Pak RT Sugeng Riyadi belum datang", ["Sugeng", "Riyadi"], "Pak RT [nama] belum datang"),
        ("Saya Rina, mau lapor jalan berlubang", ["Rina"], "Saya [nama], mau lapor jalan berlubang"),
        ("I'm John Smith from Leeds", ["John", "Smith"], "I'm [nama] from Leeds"),
        ("WA saya 8123 4567 890", ["8123", "4567", "890"], "WA saya [telepon]"),
        ("kirim ke budi[at]gmail.com saja", ["budi", "gmail"], "kirim ke [email] saja"),
        (
            "Telp kantor desa (0351) 895123 tidak diangkat",
            ["0351", "895123", "("],
            "Telp kantor desa [telepon] tidak diangkat",
        ),
    ],
)
def test_issue_examples_are_masked(text, gone, kept):
    out = redact(text)
    assert out == kept
    for part in gone:
        assert part not in out


@pytest.mark.parametrize(
    "text",
    [
        "Pemindahan Ibu Kota ke Nusantara tidak berpengaruh ke desa kami.",
        "Pak Camat sudah meninjau lokasi banjir.",
        "Sudah lapor ke Pak Lurah tapi belum ada tindakan.",
        "Pak Camat Maospati sudah menerima laporan kami.",
        "Ibu-ibu PKK minta pelatihan membuat kue.",
        "Saya Warga Desa Bendo mau menyampaikan usulan.",
        "I am writing about the broken bridge.",
        "jalan diponegoro rusak, tolong diperbaiki",
        "Lampu PJU di Jl. Pahlawan mati sudah dua minggu.",
        "RT 03/RW 05 belum dapat air PDAM.",
        "Bantuan Rp 1.500.000 belum cair sejak 05-03-2026, jam 08.30-10.00.",
        "Token listrik 1234 5678 9012 3456 7890 tidak bisa dimasukkan.",
        "Nomor resi 123456789012345 belum sampai.",
        "Follow IG kami @karangtaruna.bendo untuk info kegiatan.",
    ],
)
def test_offices_places_streets_and_ordinary_numbers_stay(text):
    assert redact(text) == text


def test_home_address_is_masked_to_the_house_but_a_problem_keeps_its_street():
    assert redact("Alamat saya Jl. Melati No. 12 RT 03/RW 05") == "Alamat saya [alamat] RT 03/RW 05"
    assert redact("rumah saya di jl kenanga no 5 kebanjiran") == "rumah saya di [alamat] kebanjiran"
    # A complaint about a place: the street is where the problem is, only the house goes.
    assert redact("Got mampet di depan Jl. Kenanga No. 7") == "Got mampet di depan Jl. Kenanga [alamat]"


def test_english_text_gets_english_masks_and_indonesian_stays_the_default():
    text = "My name is Anna Williams, call +62 812 3030 4040, I live at 45 Orchard Road"
    assert redact(text, lang="en") == "My name is [name], call [phone], I live at [address]"
    assert redact(text) == "My name is [nama], call [telepon], I live at [alamat]"
    assert redact("Pak Budi", lang="jv") == "Pak [nama]"  # no table of its own: Indonesian


def test_digits_of_other_scripts_and_full_width_at_are_masked_too():
    assert redact("NIK ٣٥٢٠٠١١٢٣٤٥٦٧٨٩٠ ya") == "NIK [NIK] ya"
    assert redact("email budi＠gmail.com") == "email [email]"


# Precision and recall per kind on the labelled sentences (bench/bench_masking.py prints
# the same figures with every miss). Floors: issue 12 asks recall >= 0.95 for phone numbers,
# NIK and e-mail, >= 0.85 for names; what is masked should be personal data (>= 0.9).
FLOORS = {"phone": 0.95, "nik": 0.95, "email": 0.95, "name": 0.85, "address": 0.85}


def test_precision_and_recall_per_kind_on_the_labelled_set():
    from bench.bench_masking import load_cases, score

    cases = load_cases()
    assert len(cases) >= 300
    assert sum(not c["spans"] for c in cases) >= 100  # hard negatives, no personal data
    result = score(cases)
    low = {
        kind: (r["recall"], r["precision"])
        for kind, r in result.items()
        if r["recall"] < FLOORS[kind] or r["precision"] < 0.9
    }
    assert not low, f"below the floors (recall, precision): {low}"


def test_the_labelled_set_is_consistent():
    """Every span's offsets give its text, so a hand edit cannot shift a label silently."""
    from bench.bench_masking import load_cases

    for case in load_cases():
        for span in case["spans"]:
            assert case["text"][span["start"] : span["end"]] == span["text"], case["text"]
            assert span["kind"] in FLOORS


# The cheap gates in find (word sets, digit counts, anchored cues) only skip work: on any
# text the result equals every rule run over the whole text.
_PIECES = [
    "Pak",
    "pak",
    "PAK",
    "Bu",
    "ibu",
    "Ibu",
    "Mbah",
    "Cak",
    "Dik",
    "Ning",
    "RT",
    "rt",
    "03",
    "Camat",
    "nama saya",
    "NAMA SAYA",
    "Nama:",
    "saya",
    "Saya",
    "saya bernama",
    "I'm",
    "I am",
    "my name is",
    "a.n.",
    "Hormat saya,",
    "Data:",
    "dari",
    "Budi",
    "budi",
    "BUDI",
    "Sari Wulandari",
    "Santoso",
    "binti",
    "H.",
    "Kota",
    "Jl.",
    "jl",
    "Jalan",
    "Gg.",
    "No.",
    "no",
    "nomor",
    "12",
    "5A",
    "rumah saya di",
    "alamat:",
    "tinggal di",
    "I live at",
    "Street",
    "Melati",
    "WA",
    "hp",
    "0812-3456-7890",
    "8123 4567 890",
    "+62",
    "812",
    "(0351)",
    "895123",
    "3520011234567890",
    "3520",
    "0112",
    "budi@gmail.com",
    "@",
    "[at]",
    "at",
    "dot",
    "com",
    "gmail",
    ".",
    ",",
    "İ",
    "\u212a",
    "Élise",
    "٣٥٢٠",
    "🙏",
    "-",
    "(",
    ")",
    ":",
]
_SEPS = [" ", " ", " ", "  ", "\t", "\n", "\xa0", "", ", ", ". ", "-"]


# Derandomized: CI must give the same verdict on every run. The same property explored with
# 30,000 random examples (hypothesis' --hypothesis-seed, or a script) found the two gate
# mismatches fixed in privacy.py ("rumah saya diJl. Pak", "Jl. no3520").
@hsettings(max_examples=1500, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPS)).map("".join), max_size=12).map("".join))
def test_gated_find_equals_every_rule_over_the_whole_text(text):
    assert privacy.find(text) == privacy._find(text, gated=False)


@pytest.mark.parametrize(
    "text,masked",
    [
        # Found by the second blind batch of labelled sentences (bench/RESULTS.md).
        ("NIK 3520017006950022 an. Rahmawati", "NIK [NIK] an. [nama]"),
        ("Hub. 0856-1010-2020 a/n Tri Wahyuni", "Hub. [telepon] a/n [nama]"),
        ("Salam hormat, Ir. Bambang Hermawan", "Salam hormat, Ir. [nama]"),
        ("Bu Nyai Hasanah minta bantuan", "Bu Nyai [nama] minta bantuan"),
        ("saya ani, ibu rumah tangga", "saya [nama], ibu rumah tangga"),
        # ... and what must not be taken for a name or a house: a verb or a job after "saya",
        # a public building's number.
        ("Sudah saya foto, rumah nomor 12 retak.", "Sudah saya foto, rumah [alamat] retak."),
        ("Bapak saya petani, pupuknya langka.", "Bapak saya petani, pupuknya langka."),
        ("Jalan di depan Masjid Baiturrahman No. 1 tergenang.", "Jalan di depan Masjid Baiturrahman No. 1 tergenang."),
    ],
)
def test_blind_batch_findings(text, masked):
    assert redact(text) == masked
