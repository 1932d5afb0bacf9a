"""Personal data inside free text (UU PDP): found and masked before text leaves the bot.

Exports, digests and quotes show what residents said, never how to reach or identify
them: phone numbers, 16-digit NIK, e-mail addresses, and names introduced the way
Indonesians introduce them ("nama saya Sari", "Pak Budi", "Bu Ani").
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# NIK: exactly 16 digits, possibly grouped with spaces or dots.
NIK = re.compile(r"(?<!\d)(?:\d[ .]?){15}\d(?!\d)")
# Indonesian mobile and landline numbers: +62 / 62 / 0, then 8-13 digits, with
# optional spaces, dots or dashes between groups.
PHONE = re.compile(r"(?<![\w+])(?:\+62|62|0)[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\d)")
# A capitalised word (or two) after a form of address or a self-introduction.
NAME = re.compile(
    # The introduction in any case ("Nama saya", "NAMA SAYA"); the name itself capitalised.
    r"\b((?i:nama\s+(?:saya|aku|kula)|saya\s+bernama|my\s+name\s+is|i\s+am|"
    r"pak|bapak|bu|ibu|mas|mbak|sdr\.?|sdri\.?|mr\.?|mrs\.?|ms\.?)\s+)"
    r"([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"
)

MASKS = {"email": "[email]", "nik": "[NIK]", "phone": "[telepon]", "name": "[nama]"}


def redact(text: str) -> str:
    """Mask personal data in `text`; everything else is left as written."""
    if not text:
        return text
    text = EMAIL.sub(MASKS["email"], text)
    text = NIK.sub(MASKS["nik"], text)
    text = PHONE.sub(MASKS["phone"], text)
    return NAME.sub(lambda m: m.group(1) + MASKS["name"], text)
