"""Personal data in free text is masked; ordinary numbers and words are left alone."""

import pytest

from handlers.privacy import redact


@pytest.mark.parametrize("text,gone,kept", [
    ("Hubungi 0812-3456-7890 ya", "0812-3456-7890", "Hubungi"),
    ("wa +62 812 3456 7890", "812 3456 7890", "wa"),
    ("NIK saya 3520011234567890", "3520011234567890", "NIK saya"),
    ("email: sari.w@gmail.com", "sari.w@gmail.com", "email"),
    ("Nama saya Sari Wulandari dari Bendo", "Sari", "dari Bendo"),
    ("Pak Budi RT 03 tidak pernah datang", "Budi", "RT 03"),
])
def test_personal_data_is_masked(text, gone, kept):
    out = redact(text)
    assert gone not in out and kept in out


def test_ordinary_numbers_and_capitalised_places_stay():
    text = "Jalan rusak 200 meter sejak 2024 di Ibu kota kecamatan, Jl. Raya Maospati km 12"
    assert redact(text) == text
