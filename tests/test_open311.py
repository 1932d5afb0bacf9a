"""Open311 GeoReport v2 over real HTTP: the spec's example requests, its error format and
codes, api_key checks, and a POSTed report that becomes a submission in the desk."""

from __future__ import annotations

import httpx
import pytest

from tests import dbtools
from tests.test_officials import add_resident, add_submission, scalar
from tests.test_webdesk import OPEN311_KEY, desk_stack

BASE = "/open311/v2"
PHONE_AND_NIK = (
    "Jalan desa berlubang di depan rumah saya, hubungi 0812-3456-7890, NIK 3520123456789012, mohon segera ditambal"
)


def assert_error(response: httpx.Response, status: int) -> str:
    """The spec's error body: a list of {code, description}, with the HTTP status."""
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error["code"] == status and error["description"]
    return error["description"]


async def test_discovery_and_services(make_settings):
    """Discovery names the spec and JSON; services are the pillars and their sub-topics."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as api:
        discovery = (await api.get(f"{BASE}/discovery.json")).json()
        [endpoint] = discovery["endpoints"]
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert endpoint["url"] == f"{desk.url}/open311/v2" and endpoint["formats"] == ["application/json"]
        services = (await api.get(f"{BASE}/services.json")).json()
        codes = {s["service_code"] for s in services}
        assert {"governance", "living", "environment", "living.transport", "environment.flooding"} <= codes
        road = next(s for s in services if s["service_code"] == "living")
        assert road["service_name"] == "Kelayakan Hidup" and road["metadata"] is False and road["type"] == "realtime"
        definition = await api.get(f"{BASE}/services/living.transport.json")
        assert definition.json() == {"service_code": "living.transport", "attributes": []}
        assert_error(await api.get(f"{BASE}/services/parking-tickets.json"), 404)


async def test_requests_list_is_public_masked_and_filtered_as_the_spec_says(make_settings):
    """GET requests.json: public fields only (text masked, coordinates rounded, no name or
    photo), neither hidden nor rejected ones; filters by id, service, date and status."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as api:
        sari = await add_resident(desk.db, "1001", name="Sari Wulandari")
        road = await add_submission(
            desk.db,
            sari,
            PHONE_AND_NIK,
            latitude=-7.6512345,
            longitude=111.3298765,
            photo="AgACAgQAAxk-photo",
            subtopic="transport",
        )
        flood = await add_submission(
            desk.db,
            sari,
            "Banjir setiap hujan di Desa Sukomoro, selokan tersumbat",
            pillar="environment",
            area="Sukomoro",
        )
        spam = await add_submission(desk.db, sari, "Spam spam spam spam spam spam spam")
        with dbtools.connect(desk.db_path) as conn:
            conn.execute("UPDATE submissions SET hidden = 1 WHERE code = ?", (spam.value,))
            conn.execute("UPDATE submissions SET status = 'resolved' WHERE code = ?", (flood.value,))

        everything = (await api.get(f"{BASE}/requests.json")).json()
        assert {r["service_request_id"] for r in everything} == {str(road), str(flood)}
        first = next(r for r in everything if r["service_request_id"] == str(road))
        assert first["status"] == "open" and first["service_code"] == "living.transport"
        assert first["lat"] == -7.651 and first["long"] == 111.33 and first["media_url"] is None
        assert first["address"] == "Kecamatan Maospati"
        body = str(everything)
        for secret in ("0812", "3520123456789012", "Sari", "Wulandari", "AgACAgQ", "1001"):
            assert secret not in body, secret
        assert "Jalan desa berlubang" in first["description"]

        # The spec's example: a date range and a status.
        closed = (
            await api.get(
                f"{BASE}/requests.json",
                params={
                    "start_date": "2020-01-01T00:00:00Z",
                    "end_date": "2099-12-31T23:59:59+07:00",
                    "status": "closed",
                },
            )
        ).json()
        assert [r["service_request_id"] for r in closed] == [str(flood)]
        by_service = (await api.get(f"{BASE}/requests.json", params={"service_code": "environment"})).json()
        assert [r["service_request_id"] for r in by_service] == [str(flood)]
        by_ids = (
            await api.get(f"{BASE}/requests.json", params={"service_request_id": f"{road},{flood.value},{spam}"})
        ).json()
        assert {r["service_request_id"] for r in by_ids} == {str(road), str(flood)}
        future = (await api.get(f"{BASE}/requests.json", params={"start_date": "2099-01-01T00:00:00Z"})).json()
        assert future == []

        one = await api.get(f"{BASE}/requests/{road}.json")
        assert one.status_code == 200 and one.json()[0]["service_request_id"] == str(road)
        assert_error(await api.get(f"{BASE}/requests/{spam}.json"), 404)
        assert_error(await api.get(f"{BASE}/requests/ZZZ-ZZZ.json"), 404)
        assert_error(await api.get(f"{BASE}/requests.json", params={"start_date": "last tuesday"}), 400)
        assert_error(await api.get(f"{BASE}/requests.json", params={"status": "pending"}), 400)
        assert_error(await api.get(f"{BASE}/requests.json", params={"service_code": "001"}), 400)


@pytest.mark.parametrize("api_key", [None, "", "not-a-key-of-ours-0123456789"])
async def test_post_without_a_known_api_key_is_refused(make_settings, api_key):
    """403 in the spec's format; nothing is stored."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as api:
        form = {
            "service_code": "living",
            "lat": "-7.65",
            "long": "111.33",
            "description": "Jalan berlubang besar di depan pasar Maospati",
        }
        if api_key is not None:
            form["api_key"] = api_key
        assert_error(await api.post(f"{BASE}/requests.json", data=form), 403)
        assert scalar(desk.db_path, "SELECT count(*) FROM submissions") == 0


async def test_post_checks_service_description_and_location(make_settings):
    """400 for a missing service, a missing description or a request with no location."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as api:
        good = {
            "api_key": OPEN311_KEY,
            "service_code": "living",
            "lat": "-7.65",
            "long": "111.33",
            "description": "Jalan berlubang besar di depan pasar Maospati",
        }
        for change in (
            {"service_code": "001"},
            {"service_code": ""},
            {"description": "rusak"},
            {"lat": "", "long": ""},
            {"lat": "north"},
            {"lat": "95"},
        ):
            assert_error(await api.post(f"{BASE}/requests.json", data={**good, **change}), 400)
        assert scalar(desk.db_path, "SELECT count(*) FROM submissions") == 0


async def test_a_posted_report_becomes_a_submission_in_the_desk(make_settings):
    """The spec's example POST (form-encoded, with contact fields): a tracking code back; the
    report is tagged, new, channel open311, in the desk's list; the contact fields are not kept."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as api:
        response = await api.post(
            f"{BASE}/requests.json",
            data={
                "api_key": OPEN311_KEY,
                "service_code": "living.transport",
                "lat": "-7.6498765",
                "long": "111.3401234",
                "address_string": "Jl. Raya Maospati 12, Maospati, Magetan",
                "email": "budi@example.org",
                "device_id": "tt222111",
                "account_id": "123456",
                "first_name": "Budi",
                "last_name": "Santoso",
                "phone": "081299998888",
                "description": "Jalan berlubang besar di depan pasar, motor sering jatuh",
                "media_url": "http://www.example.org/media/photo.jpg",
            },
        )
        assert response.status_code == 200, response.text
        [created] = response.json()
        code = created["service_request_id"]
        row = (
            dbtools.connect(desk.db_path)
            .execute("SELECT status, channel, pillar, subtopic, auto_pillar, area, user_id, anonymous FROM submissions")
            .fetchone()
        )
        assert row == ("new", "open311", "living", "transport", "living", "Maospati", None, 1)
        dump = dbtools.dump(desk.db_path)
        for secret in ("budi@example.org", "Santoso", "081299998888", OPEN311_KEY):
            assert secret not in dump, secret
        assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'open311_request'") == 1

        fetched = (await api.get(f"{BASE}/requests/{code}.json")).json()[0]
        assert fetched["status"] == "open" and fetched["lat"] == -7.65

        async with desk.session() as client:
            listing = (await client.get("/desk", params={"status": "new"})).text
            assert code in listing
            page = (await client.get(f"/desk/s/{code.replace('-', '')}")).text
            assert "Open311" in page and "motor sering jatuh" in page
