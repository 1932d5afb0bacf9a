"""Hostile input: property-based tests of every parser of outside data.

Whatever arrives (Telegram updates, WhatsApp webhook bodies, typed commands, button data,
tracking codes, rules files, configuration), the parser answers with a value or its own
documented error type, never another exception; a web request gets 200 or a 4xx, and a
rejected request stores nothing. Examples are bounded so the file runs in seconds.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telegram import Bot, Update

from bot.channels.telegram import to_incoming as telegram_incoming
from bot.channels.whatsapp import WebhookBatch, WebhookInvalid, parse_webhook
from bot.channels.whatsapp import to_incoming as whatsapp_incoming
from bot.config import ConfigError, Settings, load_settings
from handlers.domain import CODE_ALPHABET, PILLARS, TrackingCode
from handlers.messages import Incoming, InputKind
from handlers.tagging import RulesError, Tagger, check_rules
from storage.database import utcnow
from tests import dbtools
from tests.drivers_web import APP_SECRET, TELEGRAM_SECRET, TelegramWebhookDriver, WhatsAppDriver
from tests.fakes import PHONE_ID, sign
from tests.fakes.telegram_api import DEFAULT_TOKEN

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# Whole-conversation properties cost a transaction (and language detection) per example.
SLOWER = settings(FAST, max_examples=15)

# Anything JSON can carry, nested a little.
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def maybe(shape: st.SearchStrategy) -> st.SearchStrategy:
    """The right shape most of the time, anything JSON sometimes."""
    return st.one_of(shape, shape, shape, json_value)


def count(db_path, sql: str) -> int:
    with dbtools.connect(db_path) as conn:
        return conn.execute(sql).fetchone()[0]


# --------------------------------------------------------------------------------------------
# Tracking codes
# --------------------------------------------------------------------------------------------


@FAST
@given(raw=st.one_of(st.text(max_size=20), st.from_regex(r"\A\s*#?[0-9A-Za-z]{3}[\s\-_]?[0-9A-Za-z]{3}\s*\Z")))
def test_tracking_code_parse_accepts_only_real_codes(raw):
    """Any string: None, or a code of six characters from the alphabet that reads back."""
    code = TrackingCode.parse(raw)
    if code is not None:
        assert len(code.value) == 6 and set(code.value) <= set(CODE_ALPHABET)
        assert TrackingCode.parse(str(code)) == code
        assert TrackingCode.parse(str(code).lower()) == code


@FAST
@given(seed=st.integers())
def test_generated_codes_always_parse_back(seed):
    import random

    code = TrackingCode.generate(random.Random(seed))
    assert TrackingCode.parse(str(code)) == code
    assert TrackingCode.parse(code.value) == code


# --------------------------------------------------------------------------------------------
# Rules files
# --------------------------------------------------------------------------------------------

_RULE_LINES = st.sampled_from(
    [
        "[living.roads]",
        "[environment.flood]",
        "[mars.base]",
        "[living]",
        "[normalize]",
        "[stopwords]",
        "[meta]",
        'label_id = "Jalan"',
        'label_en = "Roads"',
        'keywords = ["jalan", "lubang"]',
        'keywords = "jalan"',
        "keywords = [1, 2]",
        'keywords = ["", "  "]',
        'phrases = ["lampu jalan"]',
        "phrases = [[]]",
        'exclude = ["dua kali"]',
        "weights = { jalan = 2 }",
        'weights = { jalan = "x" }',
        "weights = { jalan = -1, lubang = 0 }",
        "weights = 3",
        'jln = "jalan"',
        'jln = "dua kata"',
        "jln = 5",
        'words = ["yang", "di"]',
        "words = 7",
        "living = 3",
        "normalize = []",
        'x = """',
        "[[living.roads]]",
        "",
        "# komentar",
        "weights = { nan = nan }",
        "weights = { inf = inf }",
    ]
)


@FAST
@example(text="[stopwords]\nwords = 7")
@given(text=st.one_of(st.lists(_RULE_LINES, max_size=14).map("\n".join), st.text(max_size=200)))
def test_rules_text_is_loaded_or_refused_with_rules_error(text, tmp_path_factory):
    """A rules file an official edited by hand: a Tagger, or RulesError with line numbers;
    `rules check` lists problems and never crashes."""
    try:
        tagger = Tagger.from_text(text)
    except RulesError as exc:
        assert exc.problems and all(p.line >= 0 for p in exc.problems)
    else:
        tagger.classify("jalan berlubang dan lampu jalan mati, banjir di dua kali")
    path = tmp_path_factory.mktemp("rules") / "rules.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    problems = check_rules(path)
    assert all(isinstance(p.line, int) for p in problems)


def test_rules_file_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(b'[living.roads]\nkeywords = ["jalan\xff\xfe"]\n')
    problems = check_rules(path)
    assert problems and "cannot read" in str(problems[0])


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

_ENV_KEYS = [
    "REGENCY_NAME",
    "AREAS",
    "DEFAULT_LANGUAGE",
    "TIMEZONE",
    "DATABASE_PATH",
    "RULES_PATH",
    "LOG_LEVEL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_MODE",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_WEBHOOK_SECRET",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
    "HTTP_PORT",
    "OFFICIALS",
    "MAX_SUBMISSIONS_PER_DAY",
    "FLOOD_MAX_MESSAGES",
    "FLOOD_WINDOW_SECONDS",
    "DIGEST_SCHEDULE",
    "DIGEST_TELEGRAM_CHAT_IDS",
    "DIGEST_EMAILS",
    "DIGEST_WHATSAPP_NUMBERS",
    "SMTP_PORT",
    "SMTP_STARTTLS",
]
_ENV_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            ",",
            ",,,",
            "0",
            "-1",
            "99999999999999999999",
            "nan",
            "inf",
            "1e309",
            "true",
            "yes",
            "[]",
            "{}",
            '{"a": 1}',
            "null",
            "America",
            "Asia/../Asia/Jakarta",
            "/etc/passwd",
            "*/0 * * * *",
            "0 7 * * mon",
            "61 25 * * *",
            "telegram:1,telegram:1",
            "telegram:",
            "whatsapp:62 81",
            "a@b.c,bad",
            "polling",
            "webhook",
            "DEBUG",
            "debug",
        ]
    ),
)


@contextmanager
def environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@FAST
@given(env=st.dictionaries(st.sampled_from(_ENV_KEYS), _ENV_VALUES, max_size=5))
@example(env={"TIMEZONE": "America"})  # a folder of zones: ZoneInfo raised IsADirectoryError
def test_any_environment_gives_settings_or_config_error(env):
    """Whatever an operator writes in .env, the bot starts or prints ConfigError lines,
    never a traceback, and never echoes a token value."""
    with environment(env):
        try:
            result = load_settings(_env_file=None)
        except ConfigError as exc:
            assert exc.problems
            token = env.get("TELEGRAM_BOT_TOKEN")
            others = [v for k, v in env.items() if k != "TELEGRAM_BOT_TOKEN"]
            if token and len(token) >= 8 and not any(token in v for v in others):
                assert token not in str(exc)
        else:
            assert isinstance(result, Settings)


# --------------------------------------------------------------------------------------------
# Telegram updates (adapter + core)
# --------------------------------------------------------------------------------------------

_ids = st.integers(min_value=1, max_value=2**52)
_user = st.fixed_dictionaries(
    {"id": _ids, "is_bot": st.booleans(), "first_name": st.text(max_size=20)},
    optional={
        "last_name": st.text(max_size=20),
        "username": st.text(max_size=20),
        "language_code": st.one_of(st.sampled_from(["id", "en", "jv", "ms", "", "EN", "id-ID"]), st.text(max_size=8)),
    },
)
_chat = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=-(2**52), max_value=2**52),
        "type": st.sampled_from(["private", "group", "supergroup", "channel"]),
    }
)
_location = st.fixed_dictionaries({"latitude": st.floats(), "longitude": st.floats()})
_photo = st.lists(
    st.fixed_dictionaries(
        {
            "file_id": st.text(min_size=1, max_size=20),
            "file_unique_id": st.text(min_size=1, max_size=5),
            "width": st.integers(0, 5000),
            "height": st.integers(0, 5000),
        }
    ),
    max_size=3,
)
_text = st.one_of(
    st.text(max_size=60),
    st.text(min_size=3990, max_size=4200),
    st.sampled_from(
        [
            "/start",
            "/lapor",
            "/status",
            "/status ABC-DEF",
            "/status '; DROP TABLE users;--",
            "/baru",
            "/lihat 1",
            "/balas ABC-DEF halo",
            "/pilar ABC-DEF living",
            "/ekspor ../../etc/passwd",
            "/start@suarawarga_test_bot",
            "/",
            "/ ",
            "//",
            "status K7Q-4MX selesai",
            "lapor",
            "batal",
        ]
    ),
)
_message = st.fixed_dictionaries(
    {"message_id": st.integers(1, 2**31), "date": st.integers(0, 2**31), "chat": _chat},
    optional={
        "from": _user,
        "text": _text,
        "location": _location,
        "photo": _photo,
        "caption": st.text(max_size=50),
        "edit_date": st.integers(0, 2**31),
        "sticker": st.fixed_dictionaries(
            {
                "file_id": st.just("s"),
                "file_unique_id": st.just("u"),
                "type": st.just("regular"),
                "width": st.just(1),
                "height": st.just(1),
                "is_animated": st.just(False),
                "is_video": st.just(False),
            }
        ),
    },
)
_callback = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20), "from": _user, "chat_instance": st.text(max_size=10)},
    optional={
        "data": st.one_of(
            st.text(max_size=64),
            st.sampled_from(
                [
                    "consent:yes",
                    "consent:yes:xx",
                    "consent:",
                    "consent:lang:zz",
                    "menu:report",
                    "menu:",
                    "lang:xx",
                    "area.1:page",
                    "area.1:pagex",
                    "area.1:²",
                    "area.1:999999999999",
                    "pick.1:mars",
                    "confirm.1:send",
                    "erase.0:delete",
                    "similar.1:AAAAAA",
                    ":",
                    "..",
                    "pillar.-1:ok",
                ]
            ),
        ),
        "message": _message,
    },
)
_update = st.one_of(
    st.fixed_dictionaries({"update_id": _ids, "message": _message}),
    st.fixed_dictionaries({"update_id": _ids, "edited_message": _message}),
    st.fixed_dictionaries({"update_id": _ids, "callback_query": _callback}),
)


@pytest_asyncio.fixture
async def consented(make_settings):
    """Services with a consented resident (1001); the flood guard is off, since one test
    sends a resident's whole week of messages in a second."""
    from bot.app import open_services
    from tests.harness import Resident

    async with open_services(make_settings(flood_max_messages=10**9)) as services:
        resident = Resident(services.core, user_id="1001")
        await resident.say("halo")
        await resident.press("Setuju")
        yield services


@SLOWER
@given(data=_update)
async def test_any_telegram_update_is_translated_and_answered_without_crashing(consented, data):
    """Update-shaped JSON with odd values (huge ids, NaN locations, forged callback data,
    5,000-character texts): the adapter returns an Incoming or None, and the core answers
    without raising."""
    bot = Bot(DEFAULT_TOKEN)
    update = Update.de_json(json.loads(json.dumps(data)), bot)
    incoming = telegram_incoming(update)
    if incoming is None:
        return
    assert incoming.channel == "telegram" and incoming.message_id
    outcome = await consented.core.handle(incoming)
    assert all(isinstance(r.text, str) and r.text for r in outcome.replies)


_STEPS = ("describe", "pillar", "pick", "area", "similar", "photo", "identity", "confirm", "erase", "idle")
_forged_value = st.one_of(
    st.sampled_from(
        [
            "ok",
            "other",
            "none",
            "skip",
            "page",
            "page1",
            "pagex",
            "page-1",
            "page99",
            "²",
            "٣",
            "0",
            "17",
            "18",
            "-1",
            "999999999999999999999",
            "mine",
            "AAAAAA",
            "K7Q4MX",
            "name",
            "anon",
            "send",
            "cancel",
            "delete",
            "anonymise",
            *PILLARS,
        ]
    ),
    st.text(max_size=20),
)


@SLOWER
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(_STEPS), _forged_value, st.sampled_from(["button", "text", "command"]), st.text(max_size=80)
        ),
        min_size=1,
        max_size=6,
    ),
)
async def test_forged_buttons_and_any_typed_text_never_crash_a_conversation(consented, steps):
    """A bad client can send any callback data: buttons forged for the resident's real step
    and serial, and any text or command at any step, always get a reply and never raise."""
    core = consented.core
    for _i, (step, value, kind, text) in enumerate(steps):
        rows = await consented.db.fetchall(
            "SELECT c.draft FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.platform_id = '1001'"
        )
        serial = json.loads(rows[0][0]).get("n", 0) if rows else 0
        fields: dict = {}
        if kind == "button":
            fields = dict(kind=InputKind.BUTTON, payload=f"{step}.{serial}:{value}")
        elif kind == "command":
            head = text.split(" ", 1)[0].lstrip("/") or "x"
            fields = dict(kind=InputKind.COMMAND, command=head.lower(), args=text.partition(" ")[2], text=f"/{text}")
        else:
            fields = dict(kind=InputKind.TEXT, text=text)
        incoming = Incoming(
            channel="telegram",
            user_id="1001",
            chat_id="1001",
            received_at=utcnow(),
            message_id=f"h{os.urandom(6).hex()}",
            language_hint="id",
            display_name="Sari",
            **fields,
        )
        name, _args = core.command_of(incoming)
        assert name is None or isinstance(name, str)
        outcome = await core.handle(incoming)
        assert outcome.replies, f"no answer to {incoming}"
        if not await consented.db.fetchall("SELECT 1 FROM users WHERE platform_id = '1001'"):
            # The resident erased themselves: consent again, so later steps reach the flow.
            await core.handle(
                Incoming(
                    channel="telegram",
                    user_id="1001",
                    chat_id="1001",
                    kind=InputKind.BUTTON,
                    received_at=utcnow(),
                    message_id=f"h{os.urandom(6).hex()}",
                    payload="consent:yes:id",
                )
            )


# --------------------------------------------------------------------------------------------
# WhatsApp webhook bodies
# --------------------------------------------------------------------------------------------

_wa_message = st.fixed_dictionaries(
    {
        "from": maybe(st.sampled_from(["6281234567890", "6281200000002"])),
        "id": maybe(st.text(min_size=1, max_size=12).map(lambda s: f"wamid.{s}")),
        "type": maybe(
            st.sampled_from(
                [
                    "text",
                    "interactive",
                    "button",
                    "location",
                    "image",
                    "reaction",
                    "system",
                    "request_welcome",
                    "audio",
                    "sticker",
                    "unsupported",
                ]
            )
        ),
    },
    optional={
        "timestamp": maybe(st.one_of(st.integers(-(2**70), 2**70).map(str), st.just("x"))),
        "text": maybe(st.fixed_dictionaries({"body": maybe(st.text(max_size=200))})),
        "interactive": maybe(
            st.fixed_dictionaries(
                {
                    "type": maybe(st.sampled_from(["button_reply", "list_reply", "nfm_reply"])),
                    "button_reply": maybe(
                        st.fixed_dictionaries({"id": maybe(st.text(max_size=30)), "title": maybe(st.text(max_size=20))})
                    ),
                    "list_reply": maybe(st.fixed_dictionaries({"id": maybe(st.text(max_size=30))})),
                }
            )
        ),
        "button": maybe(st.fixed_dictionaries({"text": maybe(st.text(max_size=20))})),
        "location": maybe(
            st.fixed_dictionaries(
                {
                    "latitude": maybe(st.one_of(st.floats(), st.integers(-(2**1100), 2**1100), st.text(max_size=5))),
                    "longitude": maybe(st.floats()),
                }
            )
        ),
        "image": maybe(
            st.fixed_dictionaries({"id": maybe(st.text(max_size=10)), "caption": maybe(st.text(max_size=20))})
        ),
        "reaction": maybe(st.fixed_dictionaries({"emoji": maybe(st.text(max_size=2))})),
    },
)
_wa_value = st.fixed_dictionaries(
    {
        "messaging_product": st.just("whatsapp"),
        "metadata": maybe(st.fixed_dictionaries({"phone_number_id": maybe(st.just(PHONE_ID))})),
    },
    optional={
        "contacts": maybe(
            st.lists(
                maybe(
                    st.fixed_dictionaries(
                        {
                            "wa_id": maybe(st.just("6281234567890")),
                            "profile": maybe(st.fixed_dictionaries({"name": maybe(st.text(max_size=20))})),
                        }
                    )
                ),
                max_size=2,
            )
        ),
        "messages": maybe(st.lists(maybe(_wa_message), max_size=3)),
        "statuses": maybe(
            st.lists(
                maybe(
                    st.fixed_dictionaries(
                        {
                            "id": maybe(st.text(max_size=8)),
                            "status": maybe(st.sampled_from(["sent", "delivered", "read", "failed", "deleted"])),
                            "timestamp": maybe(st.text(max_size=12)),
                            "recipient_id": st.just("6281234567890"),
                        }
                    )
                ),
                max_size=2,
            )
        ),
        "errors": maybe(
            st.lists(maybe(st.fixed_dictionaries({"code": json_scalar, "title": json_scalar})), max_size=2)
        ),
    },
)
_wa_body = maybe(
    st.fixed_dictionaries(
        {
            "object": maybe(st.just("whatsapp_business_account")),
            "entry": maybe(
                st.lists(
                    maybe(
                        st.fixed_dictionaries(
                            {
                                "id": st.just("1"),
                                "changes": maybe(
                                    st.lists(
                                        maybe(
                                            st.fixed_dictionaries(
                                                {"field": maybe(st.just("messages")), "value": maybe(_wa_value)}
                                            )
                                        ),
                                        max_size=2,
                                    )
                                ),
                            }
                        )
                    ),
                    max_size=2,
                )
            ),
        }
    )
)


def _envelope(value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_ID}, **value},
                    }
                ],
            }
        ],
    }


# Pinned cases the fuzzing found (see the xfail reasons); hypothesis runs them first.
_WA_METADATA_NOT_AN_OBJECT = {
    "object": "whatsapp_business_account",
    "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": True}}]}
    ],
}
_WA_MESSAGES_NOT_A_LIST = _envelope({"messages": 5})
_WA_HUGE_LATITUDE = _envelope(
    {
        "messages": [
            {"from": "62811", "id": "wamid.A", "type": "location", "location": {"latitude": 10**400, "longitude": 1}}
        ]
    }
)
_WA_REPLY_NOT_AN_OBJECT = _envelope(
    {
        "messages": [
            {
                "from": "62811",
                "id": "wamid.B",
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": [1]},
            }
        ]
    }
)


@FAST
@example(body=_WA_METADATA_NOT_AN_OBJECT)
@example(body=_WA_MESSAGES_NOT_A_LIST)
@example(body=_WA_HUGE_LATITUDE)
@example(body=_WA_REPLY_NOT_AN_OBJECT)
@given(body=_wa_body)
def test_any_webhook_json_is_parsed_or_refused_as_invalid(body):
    """parse_webhook returns a batch or raises WebhookInvalid (the route's 400); every
    message it keeps translates into an Incoming or None."""
    try:
        batch = parse_webhook(body, phone_number_id=PHONE_ID)
    except WebhookInvalid:
        return
    assert isinstance(batch, WebhookBatch)
    for message in batch.messages:
        incoming = whatsapp_incoming(json.loads(json.dumps(message.payload)), now=datetime.now(UTC))
        assert incoming is None or incoming.message_id == message.wamid


@pytest_asyncio.fixture
async def wa_bot(make_settings):
    async with WhatsAppDriver(make_settings) as driver:
        yield driver


@FAST
@example(body=_WA_METADATA_NOT_AN_OBJECT)
@given(body=_wa_body)
async def test_signed_webhook_bodies_get_200_or_400_and_rejected_ones_store_nothing(wa_bot, body):
    """Over real HTTP: any signed JSON body is 200 (stored) or 400 (nothing stored), never 500."""
    before = count(wa_bot.db_path, "SELECT count(*) FROM inbound")
    raw = json.dumps(body).encode()
    response = await wa_bot.post(raw)
    assert response.status_code in (200, 400), (response.status_code, response.text)
    if response.status_code == 400:
        assert count(wa_bot.db_path, "SELECT count(*) FROM inbound") == before
    await wa_bot.settled()


@pytest_asyncio.fixture
async def tg_bot(make_settings):
    async with TelegramWebhookDriver(make_settings) as driver:
        yield driver


@FAST
@example(body={"update_id": 0, "message": False})
@given(
    body=st.one_of(
        _update,
        json_value,
        st.fixed_dictionaries(
            {"update_id": st.integers()}, optional={"message": json_value, "callback_query": json_value}
        ),
    )
)
async def test_telegram_webhook_bodies_get_200_or_400_never_500(tg_bot, body):
    """With the right secret token, any JSON body is handled (200) or refused (400)."""
    response = await tg_bot.post(json.dumps(body).encode(), secret=TELEGRAM_SECRET)
    assert response.status_code in (200, 400), (response.status_code, response.text)


def test_signing_helper_matches_the_app_secret():
    # Guards the tests above: an unsigned body would be refused before parsing and prove nothing.
    assert sign(b"{}", APP_SECRET).startswith("sha256=")
