"""The resident conversation, end to end through the core on a real SQLite file."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.app import open_services
from handlers.messages import InputKind
from storage.database import location, utcnow
from tests import dbtools
from tests.harness import Resident, code_in, texts

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"


def rows(settings, sql: str, params: tuple = ()) -> list[tuple]:
    with dbtools.connect(location(settings)) as conn:
        return conn.execute(sql, params).fetchall()


class TestConsent:
    async def test_nothing_is_stored_before_consent(self, services, settings):
        """Before "Setuju", a resident's words are answered with the notice and not kept."""
        sari = Resident(services.core)
        replies = await sari.say("Lampu jalan di desa kami mati semua sejak seminggu yang lalu")
        assert "privasi" in replies[0].text and "UU No. 27" in replies[0].text
        assert any("Setuju" in b.label for b in replies[0].buttons)
        assert rows(settings, "SELECT count(*) FROM users") == [(0,)]
        assert rows(settings, "SELECT count(*) FROM submissions") == [(0,)]
        # The deduplication keys hold no personal data.
        assert all(r[0] is None for r in rows(settings, "SELECT payload FROM inbound"))

    async def test_consent_is_recorded_with_time_and_notice_version(self, services, settings):
        """Pressing Setuju creates the consent record and shows the menu."""
        sari = Resident(services.core)
        replies = await sari.agree()
        assert "persetujuan Anda sudah kami catat" in replies[0].text
        assert [b.label for b in replies[1].buttons][:2] == ["Laporkan masalah", "Sampaikan ide"]
        ((version, at),) = rows(settings, "SELECT consent_version, consent_at FROM users")
        assert version == settings.privacy_notice_version and at.startswith("20")

    async def test_notice_can_be_read_in_english_first(self, services):
        """The notice offers the other language; agreeing then keeps English."""
        budi = Resident(services.core, hint="id")
        await budi.command("start")
        replies = await budi.press("English")
        assert "privacy notice" in replies[0].text
        replies = await budi.press("I agree")
        assert "consent has been recorded" in replies[0].text


class TestSubmission:
    async def test_full_report_gets_a_tracking_code_and_is_stored(self, services, settings):
        """The guided flow ends with a XXX-XXX code and a complete row in the database."""
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        replies = await sari.say(ROAD)
        proposal = replies[0]
        assert "Kelayakan Hidup" in proposal.text and "jalan" in proposal.text.lower()
        assert [b.label for b in proposal.buttons] == ["Ya, benar", "Pilih pilar lain"]
        await sari.press("Ya, benar")
        await sari.press("Lainnya")
        await sari.press("Ngariboyo")
        await sari.photo("AgACAgIAAxk-photo")
        summary = (await sari.press("nama saya"))[0]
        assert "Ngariboyo" in summary.text and "Foto: ada" in summary.text
        assert any(b.label == "Ya, kirim" for b in summary.buttons)
        replies = await sari.press("Ya, kirim")
        assert replies[0].text.startswith("Terima kasih, laporan Anda sudah kami terima")
        code = code_in(replies[0].text)
        assert re.fullmatch(r"[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3}", code)
        ((kind, pillar, area, photo, name, anonymous, status, text),) = rows(
            settings,
            "SELECT kind, pillar, area, photo_ref, submitter_name, anonymous, status, text "
            "FROM submissions WHERE code = ?",
            (code.replace("-", ""),),
        )
        assert (kind, pillar, area, photo, anonymous, status) == (
            "report",
            "living",
            "Ngariboyo",
            "AgACAgIAAxk-photo",
            0,
            "new",
        )
        assert name == "Sari Wulandari" and text == ROAD

    async def test_idea_choosing_another_pillar_records_the_correction(self, services, settings):
        """A resident who overrides the tagger is recorded as a correction for the rules."""
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("ide")
        await sari.say("Usul dibuat festival kuliner tahunan di alun-alun Magetan untuk wisatawan")
        await sari.press("Pilih pilar lain")
        await sari.press("Ekonomi")
        await sari.press("Lewati")  # area
        await sari.press("Lewati")  # photo
        await sari.press("Anonim")
        code = code_in((await sari.press("kirim"))[0].text)
        ((pillar, anonymous, name, kind),) = rows(
            settings, "SELECT pillar, anonymous, submitter_name, kind FROM submissions"
        )
        assert (pillar, anonymous, name, kind) == ("economy", 1, None, "idea")
        assert rows(settings, "SELECT to_pillar, actor_role FROM pillar_corrections") == [("economy", "resident")]
        assert code

    async def test_gps_location_instead_of_area(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        await sari.press("Ya")
        replies = await sari.location(-7.6497, 111.3305)
        assert "foto" in replies[0].text.lower()
        await sari.press("Lewati")
        await sari.press("Anonim")
        await sari.press("kirim")
        assert rows(settings, "SELECT area, latitude, longitude FROM submissions") == [(None, -7.6497, 111.3305)]

    async def test_short_long_and_emoji_descriptions_are_asked_again(self, services):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        assert "terlalu pendek" in texts(await sari.say("rusak"))
        assert "terlalu pendek" in texts(await sari.say("😡😡😡😡😡😡😡😡😡😡😡"))
        assert "terlalu panjang" in texts(await sari.say("jalan rusak " * 400))
        assert "Kelayakan Hidup" in texts(await sari.say(ROAD))

    async def test_cancel_saves_nothing(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        replies = await sari.command("batal")
        assert "Dibatalkan" in replies[0].text
        assert rows(settings, "SELECT count(*) FROM submissions") == [(0,)]


class TestStatus:
    async def test_owner_sees_details_case_insensitively_and_others_see_nothing(self, services):
        sari = Resident(services.core, user_id="1")
        await sari.agree()
        code = await sari.submit_report(ROAD)
        detail = texts(await sari.command("status", code.lower().replace("-", "")))
        assert code in detail and "Kelayakan Hidup" in detail and "baru" in detail and "Bendo" in detail
        budi = Resident(services.core, user_id="2", name="Budi")
        await budi.agree()
        other = texts(await budi.command("status", code))
        assert "tidak ditemukan" in other and "Bendo" not in other

    async def test_bad_code_gets_a_clear_answer(self, services):
        sari = Resident(services.core)
        await sari.agree()
        assert "6 huruf" in texts(await sari.command("status", "12"))

    async def test_typed_status_word_works_like_the_command(self, services):
        """WhatsApp has no slash commands: "status K7Q-4MX" typed as text works too."""
        sari = Resident(services.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        assert "Kelayakan Hidup" in texts(await sari.say(f"status {code}"))


class TestRobustness:
    async def test_restart_mid_conversation_continues_where_the_resident_was(self, settings):
        """State lives in SQLite: a new process picks the conversation up at the same step."""
        async with open_services(settings) as svc:
            sari = Resident(svc.core)
            await sari.agree()
            await sari.command("lapor")
            await sari.say(ROAD)
            await sari.press("Ya")
            buttons = sari.last_buttons
        async with open_services(settings) as svc:
            sari = Resident(svc.core, last_buttons=buttons)
            await sari.press("Bendo")
            await sari.press("Lewati")
            await sari.press("Anonim")
            code = code_in((await sari.press("kirim"))[0].text)
        assert code

    async def test_same_platform_message_twice_has_one_effect(self, services, settings):
        """A redelivered update (same message id) is not handled again."""
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        await sari.press("Ya")
        await sari.press("Bendo")
        await sari.press("Lewati")
        await sari.press("Anonim")
        button = next(b for b in sari.last_buttons.buttons if "kirim" in b.label)
        incoming = sari._incoming(InputKind.BUTTON, payload=button.payload, message_id="dup-1")
        one = await sari.deliver(incoming)
        two = await services.core.handle(incoming)
        assert code_in(one[0].text) and two.duplicate and two.replies == []
        assert rows(settings, "SELECT count(*) FROM submissions") == [(1,)]

    async def test_old_buttons_are_recognised_as_stale(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        old = sari.last_buttons
        await sari.command("batal")
        sari.last_buttons = old
        replies = await sari.press("Ya")
        assert "sudah tidak berlaku" in replies[0].text

    async def test_unsupported_input_and_unknown_commands_keep_the_step(self, services):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        replies = await sari.sticker()
        assert "stiker" in replies[0].text and "Ceritakan masalahnya" in replies[1].text
        replies = await sari.command("apaini")
        assert "tidak dikenal" in replies[0].text and "Ceritakan" in replies[1].text
        replies = await sari.command("bantuan")
        assert "/lapor" in replies[0].text and "Ceritakan" in replies[1].text
        assert "Kelayakan Hidup" in texts(await sari.say(ROAD))

    async def test_daily_limit(self, make_settings):
        settings = make_settings(max_submissions_per_day=1)
        async with open_services(settings) as svc:
            sari = Resident(svc.core)
            await sari.agree()
            await sari.submit_report(ROAD)
            replies = await sari.command("lapor")
            assert "1 laporan/ide dalam 24 jam" in replies[0].text

    async def test_flood_guard_warns_once_then_recovers(self, make_settings):
        """Counted by the platform's message time: over the limit the resident is warned
        once, then answers pause until the window has passed."""
        settings = make_settings(flood_max_messages=3, flood_window_seconds=60)
        async with open_services(settings) as svc:
            start = utcnow()
            sent = [start]
            sari = Resident(svc.core, clock=lambda: sent[0])
            for _ in range(3):
                await sari.command("start")
            warned = await sari.command("start")
            assert "sangat cepat" in warned[0].text
            assert await sari.command("start") == []
            sent[0] = start + timedelta(seconds=120)
            assert "privasi" in texts(await sari.command("start"))

    async def test_a_backlog_handled_back_to_back_is_not_a_flood(self, make_settings):
        """After a restart the queued messages of a calm conversation (one every 10 s when
        written) are handled within milliseconds: every one is answered."""
        settings = make_settings(flood_max_messages=3, flood_window_seconds=15)
        async with open_services(settings) as svc:
            start = utcnow() - timedelta(minutes=5)
            step = [0]
            sari = Resident(svc.core, clock=lambda: start + timedelta(seconds=10 * step[0]))
            await sari.agree()
            step[0] += 1
            await sari.command("lapor")
            step[0] += 1
            answered = await sari.say(ROAD)
            assert "Kelayakan Hidup" in answered[0].text
            step[0] += 1
            assert "kecamatan" in texts(await sari.press("Ya"))

    async def test_a_flooded_message_still_takes_effect(self, make_settings):
        """An accepted message is never dropped: over the limit only the answers pause."""
        settings = make_settings(flood_max_messages=3, flood_window_seconds=60)
        async with open_services(settings) as svc:
            sari = Resident(svc.core, clock=lambda: utcnow().replace(microsecond=0))
            await sari.agree()  # /start + Setuju: two messages
            await sari.command("lapor")  # the third
            warned = await sari.say(ROAD)  # over the limit: warned, but kept as the description
            assert "sangat cepat" in texts(warned)
            assert rows(settings, "SELECT step FROM conversations") == [("pillar",)]


class TestLanguage:
    async def test_english_writer_is_answered_in_english(self, services, settings):
        """The first substantive message settles the language when the resident never chose."""
        john = Resident(services.core, hint=None, name="John")
        await john.agree()
        await john.command("report")
        replies = await john.say("The street lights on our road have been broken for two weeks now")
        assert "Smart Living" in replies[0].text and "Is that right?" in replies[0].text
        assert rows(settings, "SELECT language, language_source FROM users") == [("en", "detected")]

    async def test_chosen_language_sticks(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("bahasa")
        replies = await sari.press("English")
        assert "continue in English" in replies[0].text
        await sari.command("lapor")
        replies = await sari.say("Jalan di depan rumah saya rusak parah dan berlubang besar sekali")
        assert "Is that right?" in replies[0].text
        assert rows(settings, "SELECT language, language_source FROM users") == [("en", "chosen")]


class TestSupportAndErasure:
    async def test_similar_submission_can_be_supported_instead(self, services, settings):
        sari = Resident(services.core, user_id="1")
        await sari.agree()
        code = await sari.submit_report(ROAD, area="Bendo")
        budi = Resident(services.core, user_id="2", name="Budi")
        await budi.agree()
        await budi.command("lapor")
        await budi.say("Jalan rusak berlubang di Bendo, sudah parah, tolong diperbaiki")
        await budi.press("Ya")
        replies = await budi.press("Bendo")
        assert code in replies[0].text
        replies = await budi.press(f"Dukung {code}")
        assert "dukungan Anda" in replies[0].text
        assert rows(settings, "SELECT count(*), sum(supports) FROM submissions") == [(1, 1)]
        again = texts(await budi.command("dukung", code))
        assert "sudah mendukung" in again
        assert "kiriman Anda sendiri" in texts(await sari.command("dukung", code))

    async def test_erasure_deleting_submissions(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.submit_report(ROAD)
        await sari.command("hapus")
        replies = await sari.press("Hapus semua")
        assert "sudah dihapus" in replies[0].text
        assert rows(settings, "SELECT count(*) FROM users") == [(0,)]
        assert rows(settings, "SELECT count(*) FROM submissions") == [(0,)]
        assert rows(settings, "SELECT count(*) FROM conversations") == [(0,)]
        ((action, after),) = rows(settings, "SELECT action, after FROM audit_log")
        assert action == "erase" and "Sari" not in after

    async def test_erasure_keeping_submissions_anonymised(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        await sari.submit_report(ROAD)
        await sari.command("hapus")
        await sari.press("Simpan tanpa nama")
        assert rows(settings, "SELECT count(*) FROM users") == [(0,)]
        assert rows(settings, "SELECT user_id, anonymous, submitter_name FROM submissions") == [(None, 1, None)]
        # Writing again starts from the privacy notice: nothing remembered them.
        assert "privasi" in texts(await sari.say("halo"))


@pytest.mark.parametrize("raw,expected", [("k7q-4mx", "K7Q-4MX"), ("K7Q4MX", "K7Q-4MX"), ("#k7q 4mx", "K7Q-4MX")])
def test_tracking_codes_are_read_case_insensitively(raw, expected):
    from handlers.domain import TrackingCode

    assert str(TrackingCode.parse(raw)) == expected


def test_tracking_codes_use_the_unambiguous_alphabet():
    import random

    from handlers.domain import CODE_ALPHABET, TrackingCode

    codes = {TrackingCode.generate(random.Random(seed)).value for seed in range(200)}
    assert len(codes) == 200
    assert all(set(c) <= set(CODE_ALPHABET) for c in codes)
    assert TrackingCode.parse("O0I-1LX") is None


async def test_housekeeping_forgets_old_message_ids_only(services, settings):
    """Handled ids older than 8 days go; recent and pending ones stay."""
    from bot.app import Housekeeping

    with dbtools.connect(location(settings)) as conn:
        conn.executemany(
            "INSERT INTO inbound (channel, message_id, payload, received_at, handled_at) VALUES (?, ?, ?, ?, ?)",
            [
                ("telegram", "old", None, "2020-01-01T00:00:00.000000+00:00", "2020-01-01T00:00:00.000000+00:00"),
                ("whatsapp", "pending", "{}", "2020-01-01T00:00:00.000000+00:00", None),
                ("telegram", "new", None, "2999-01-01T00:00:00.000000+00:00", "2999-01-01T00:00:00.000000+00:00"),
            ],
        )
    assert await Housekeeping(services.db).run_once() == 1
    assert sorted(r[0] for r in rows(settings, "SELECT message_id FROM inbound")) == ["new", "pending"]


@pytest.mark.parametrize(
    "text",
    [
        "Baru kemarin jalan diperbaiki, sekarang sudah rusak lagi berlubang",
        "Lihat saja jalan di depan SD Bendo, rusak parah dan berlubang",
        "Status jalan desa kami tidak jelas, sudah rusak parah berlubang",
        "Balas dong pak, jalan rusak berlubang di depan pasar belum diperbaiki",
    ],
)
async def test_descriptions_starting_with_a_command_word_are_descriptions(services, text):
    """Only a bare command word (or "status KODE") is a command; a sentence is the resident's."""
    sari = Resident(services.core)
    await sari.agree()
    await sari.command("lapor")
    replies = await sari.say(text)
    assert "Kelayakan Hidup" in texts(replies) and "petugas" not in texts(replies)


async def test_bare_command_words_work_without_a_slash(services):
    sari = Resident(services.core, channel="whatsapp")
    await sari.agree()
    assert "Ceritakan masalahnya" in texts(await sari.say("lapor"))
    assert "/lapor" in texts(await sari.say("Bantuan"))
    assert "tidak ditemukan" in texts(await sari.say("status K7Q-4MX"))
    assert "hanya untuk petugas" in texts(await sari.say("/status K7Q-4MX selesai"))


class TestFirstHour:
    """What a resident trips over in their first messages (issue 14, items 9-13)."""

    async def test_a_short_complaint_at_the_menu_starts_a_report_and_asks_for_detail(self, services, settings):
        sari = Resident(services.core)
        await sari.agree()
        asked = await sari.say("dalane rusak parah")
        assert "lebih lengkap" in texts(asked)
        proposal = await sari.say("di depan balai desa, lubangnya besar sejak bulan lalu")
        assert "Kelayakan Hidup" in proposal[0].text
        draft = rows(settings, "SELECT draft FROM conversations")[0][0]
        assert "dalane rusak parah. di depan balai desa" in draft

    async def test_a_question_is_answered_with_the_residents_submissions(self, services):
        sari = Resident(services.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        answer = texts(await sari.say("kapan jalan saya diperbaiki?"))
        assert code in answer and "Ceritakan masalahnya" not in answer

    async def test_a_greeting_is_greeted_back(self, services):
        sari = Resident(services.core)
        await sari.agree()
        answer = await sari.say("selamat pagi")
        assert answer[0].text.startswith("Halo") and answer[1].buttons

    async def test_nothing_typed_at_the_menu_is_silently_ignored(self, services):
        sari = Resident(services.core)
        await sari.agree()
        answer = await sari.say("ok")
        assert "belum menangkap" in answer[0].text

    @pytest.mark.parametrize("typed", ["kec maospati", "Kec. Maospati", "KECAMATAN MAOSPATI"])
    async def test_kecamatan_prefixes_are_understood(self, services, settings, typed):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        await sari.press("Ya")
        assert "foto" in texts(await sari.say(typed)).lower()
        assert rows(settings, "SELECT draft FROM conversations")[0][0].count('"area": "Maospati"') == 1

    async def test_a_mistyped_kecamatan_is_offered(self, services):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        await sari.press("Ya")
        offer = await sari.say("maospti")
        assert "Maksud Anda Kecamatan Maospati?" in offer[0].text
        assert "foto" in texts(await sari.press("Ya, Maospati")).lower()

    async def test_the_kecamatan_named_in_the_description_is_offered_first(self, services):
        sari = Resident(services.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say("Jalan di Maospati dekat pasar rusak parah dan berlubang besar")
        offer = await sari.press("Ya")
        assert "Anda menyebut Kecamatan Maospati" in offer[0].text
        listed = await sari.press("Kecamatan lain")
        assert len(listed[0].buttons) == 10  # back to the full list

    async def test_the_same_problem_retagged_to_another_pillar_is_still_offered(self, services):
        first = Resident(services.core, user_id="3001")
        await first.agree()
        code = await first.submit_report("Lampu jalan di depan SDN 1 Bendo mati sudah seminggu", area="Bendo")
        async with services.db.transaction() as conn:  # an official re-tagged it
            await conn.execute("UPDATE submissions SET pillar = 'society'")
        second = Resident(services.core, user_id="3002")
        await second.agree()
        await second.command("lapor")
        await second.say("Lampu jalan depan SDN 1 Bendo mati, gelap sekali kalau malam")
        await second.press("Ya")
        offer = await second.press("Bendo")
        assert "serupa" in offer[0].text and code in offer[0].text

    async def test_status_says_how_many_more_and_shows_what_one_supports(self, make_settings):
        settings = make_settings(max_submissions_per_day=20, flood_max_messages=500)
        async with open_services(settings) as svc:
            owner = Resident(svc.core, user_id="4001")
            await owner.agree()
            codes = [await owner.submit_report(f"{ROAD} nomor {i}", area="Bendo") for i in range(7)]
            backer = Resident(svc.core, user_id="4002")
            await backer.agree()
            await backer.command("dukung", codes[0])
            listed = texts(await owner.command("status"))
            theirs = texts(await backer.command("status"))
            one = texts(await backer.command("status", codes[0]))
        assert "dan 2 lainnya" in listed
        assert "Yang Anda dukung" in theirs and codes[0] in theirs
        assert "Bendo" in one and "tidak ditemukan" not in one

    async def test_english_support_counts_read_naturally(self, services):
        first = Resident(services.core, user_id="5001")
        await first.agree()
        await first.submit_report("Lampu jalan di depan SDN 1 Bendo mati sudah seminggu", area="Bendo")
        john = Resident(services.core, user_id="5002", hint="en", name="John")
        await john.agree()
        await john.command("report")
        await john.say("The street light in front of SDN 1 Bendo has been broken for a week")
        await john.press("Yes")
        offer = await john.press("Bendo")
        assert "(0 supporters)" in offer[0].text or "(1 supporter)" in offer[0].text
        assert "supporters)" not in offer[0].text.replace("(0 supporters)", "")

    async def test_before_consent_the_full_notice_comes_once_then_a_short_reminder(self, services):
        sari = Resident(services.core)
        first = await sari.say("halo")
        again = await sari.say("saya mau lapor jalan rusak")
        assert "pemberitahuan privasi" in first[0].text
        assert len(again[0].text) < 160 and "Setuju" in again[0].text
        assert [b.label for b in again[0].buttons] == [b.label for b in first[0].buttons]
        assert "pemberitahuan privasi ini" in (await sari.command("start"))[0].text
