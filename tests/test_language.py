"""Which language a resident writes in."""

import json
from pathlib import Path

from handlers.i18n import Catalog
from handlers.language import LanguageDetector, language_hint

CATALOG = Catalog.load()
DETECTOR = LanguageDetector.for_catalog(CATALOG)


def test_plain_indonesian_and_english_are_settled_by_function_words():
    assert DETECTOR.clear_case("Jalan di depan rumah saya sudah rusak sejak bulan lalu") == "id"
    assert DETECTOR.clear_case("The drain near our house has been blocked for a week") == "en"
    assert DETECTOR.clear_case("Lampu PJU mati total, gelap gulita") is None  # left to langdetect


def test_function_word_shortcut_never_contradicts_langdetect_on_the_eval_set():
    """The shortcut only decides clear cases: where it decides, langdetect agrees."""
    reference = LanguageDetector(CATALOG.languages, CATALOG.default)
    lines = (Path(__file__).parent / "data" / "eval_messages.jsonl").read_text().splitlines()
    decided = 0
    for line in lines:
        text = json.loads(line)["text"]
        clear = DETECTOR.clear_case(text)
        if clear is not None and DETECTOR.is_substantive(text):
            decided += 1
            assert clear == reference.detect(text, "id"), text
    assert decided > len(lines) // 2


def test_short_text_falls_back_to_the_hint_or_default():
    assert DETECTOR.detect("jalan rusak", "en") == "en"
    assert DETECTOR.detect("jalan rusak", "fr") == "id"
    assert DETECTOR.detect("😡😡😡 😡😡", None) == "id"


def test_detection_is_repeatable():
    text = "Saluran air di kampung kami mampet kalau hujan deras turun"
    assert len({LanguageDetector(CATALOG.languages, "id").detect(text) for _ in range(5)}) == 1


def test_platform_language_codes_are_normalised():
    assert language_hint("en-US") == "en" and language_hint("id") == "id" and language_hint(None) is None


def test_shouting_in_capitals_is_still_indonesian():
    """langdetect alone, on the text as typed, took this for English."""
    reference = LanguageDetector(CATALOG.languages, CATALOG.default)
    text = "BALAP LIAR TIAP MALAM MINGGU DI JL RAYA MAOSPATI, BERISIK & BAHAYA, POLISI KEMANA??"
    assert reference.detect(text, "en") == "id"
    assert DETECTOR.detect("JALAN DESA RUSAK PARAH, LUBANG BESAR BAHAYA", "en") == "id"


def test_tracking_codes_and_numbers_are_not_words_of_a_language():
    """ "status K7Q-4MX selesai" is two Indonesian words: too few to tell, so the hint stays;
    the code's letters once made langdetect answer English now and then."""
    for code in ("K7Q-4MX", "XWZ-9QK", "ABC-DEF", "2X9-WYZ"):
        assert DETECTOR.detect(f"status {code} selesai", "id") == "id"
        assert DETECTOR.detect(f"pilar {code} economy", "id") == "id"
    assert DETECTOR.detect("status K7Q-4MX please tell me what happened", "id") == "en"
