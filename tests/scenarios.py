"""Resident scenarios, written once and run over every channel (tests/test_scenarios.py).

A step is (verb, argument, expected text in the bot's answers or None). `{code}` in an
argument is the tracking code from the last confirmation.
"""

from __future__ import annotations

import re

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
IDEA_EN = "Please build a covered bicycle parking area next to the Maospati bus terminal for commuters"

Step = tuple[str, object, str | None]

REPORT_IN_INDONESIAN: list[Step] = [
    ("text", "halo", "pemberitahuan privasi"),
    ("press", "Setuju", "persetujuan Anda sudah kami catat"),
    ("text", "/lapor", "Ceritakan masalahnya"),
    ("text", ROAD, "Kelayakan Hidup"),
    ("press", "Ya, benar", "kecamatan"),
    ("press", "Bendo", "foto"),
    ("photo", None, "atas nama"),
    ("press", "Anonim", "Mohon periksa"),
    ("press", "Ya, kirim", "laporan Anda sudah kami terima"),
    ("text", "/status {code}", "Bendo"),
    ("text", "/hapus", "Hapus data Anda?"),
    ("press", "Simpan tanpa nama", "Identitas Anda sudah dihapus"),
]

IDEA_IN_ENGLISH: list[Step] = [
    ("text", "/start", "privasi"),
    ("press", "English", "privacy notice"),
    ("press", "I agree", "consent has been recorded"),
    ("text", "/idea", "Describe your idea"),
    ("text", IDEA_EN, "Is that right?"),
    ("press", "Choose another", "Choose the pillar"),
    ("press", "Smart Economy", "district"),
    ("location", (-7.6, 111.36), "photo"),
    ("press", "Skip", "your name"),
    ("press", "Use my name", "Please check"),
    ("press", "Yes, send", "your idea has been received"),
    ("text", "/status", "{code}"),
]

SCENARIOS = {"report-id": REPORT_IN_INDONESIAN, "idea-en": IDEA_IN_ENGLISH}
_CODE = re.compile(r"\b[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3}\b")


async def play(driver, steps: list[Step]) -> str | None:
    """Run the steps; every expectation must appear in that step's answers."""
    code: str | None = None
    for verb, arg, expected in steps:
        if verb == "text":
            await driver.send_text(str(arg).replace("{code}", code or ""))
        elif verb == "press":
            await driver.press(str(arg))
        elif verb == "photo":
            await driver.send_photo()
        elif verb == "location":
            lat, lon = arg  # type: ignore[misc]
            await driver.send_location(lat, lon)
        answers = "\n".join(await driver.replies())
        found = _CODE.search(answers)
        if found and code is None:
            code = found.group(0)
        if expected is not None:
            wanted = expected.replace("{code}", code or "<no code yet>")
            assert wanted.lower() in answers.lower(), (
                f"[{driver.name}] after {verb} {arg!r} expected {wanted!r}, got:\n{answers}"
            )
    return code
