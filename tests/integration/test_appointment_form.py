"""The appointment and removal approval form (.lrmx): filled from the records, imported through a command, erased.

Against the real Kafka and PostgreSQL: the registry fills the form from its profile, the sealed
personal file, assessment's annual grades and training's postings (both read from their topics);
a form imported into a fresh cadre exports again byte for byte.
"""

from __future__ import annotations

import base64
from typing import Any

from lxml import etree

from contracts.envelope import Role
from runtime import clock
from tests.integration.test_assessment import SCORES, open_cycles
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, event_count, nominate, nomination
from tests.integration.test_training import posting
from tests.support import Running, auth, eventually

AUDITOR = auth("auditor.zhou", "cn.qs.bh", Role.AUDITOR)
VIEWER = auth("viewer.qian", "cn.qs.bh", Role.VIEWER)
XML = {"Content-Type": "application/xml"}
CITY_XML = dict(CITY) | XML
PHOTO = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()


def personal_file(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id_number": "11010519900307123X",
        "ethnicity": "汉族",
        "native_place": "河北保定",
        "birthplace": "北京",
        "party_joined": "201207",
        "work_started": "201407",
        "health": "健康",
        "address": "北京市朝阳区建国路8号",
        "phone": "13800000000",
        "professional_title": "经济师",
        "expertise": "农村经济",
        "full_time": {"level": "大学本科", "degree": "管理学学士", "level_school": "中国农业大学经济管理学院"},
        "in_service": {"level": "硕士研究生", "degree": "公共管理硕士", "degree_school": "北京大学政府管理学院"},
        "resume": "2010.09--2014.07  中国农业大学经济管理学院农林经济管理专业学习\n2014.07--  柳阳县扶贫办科员、副主任",
        "rewards_and_penalties": "2021年获全县脱贫攻坚先进个人",
        "proposed_post": "柳阳县乡村振兴局局长",
        "reason_for_appointment": "工作需要",
        "reporting_unit": "中共白河市委组织部",
        "form_filled_by": "王芳",
        "family": [
            {"relation": "父亲", "name": "李大明", "birth": "196003", "political_status": "中共党员", "work": "退休"},
            {
                "relation": "丈夫",
                "name": "赵强",
                "birth": "198911",
                "political_status": "群众",
                "work": "白河一中教师",
            },
        ],
        "photo": PHOTO,
    }
    body.update(overrides)
    return body


async def form_of(registry: Running, cadre_id: str, headers: Any = CITY) -> bytes:
    response = await registry.client.get(f"/cadres/{cadre_id}/appointment-form", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    assert 'filename="appointment-form-' in response.headers["content-disposition"]
    return response.content


def boxes(form: bytes) -> dict[str, str]:
    person = etree.fromstring(form)
    assert person.tag == "Person"
    return {child.tag: child.text or "" for child in person if child.tag != "JiaTingChengYuan"}


async def test_a_form_is_filled_from_every_record_and_comes_back_equal_through_a_fresh_cadre(
    registry: Running, training: Running, assessment: Running
) -> None:
    await build_tree(registry.client)
    born = nomination()["birth_date"]
    cadre_id = await nominate(
        registry, full_name="李伟", current_position="柳阳县扶贫办副主任", seen_by=[training, assessment]
    )
    first, second = await open_cycles(assessment)
    for cycle, grade in ((first, "excellent"), (second, "competent")):
        body = {"cycle_id": cycle, "grade": grade, "scores": SCORES, "evaluator_name": "王强"}
        evaluated = await assessment.client.post(f"/cadres/{cadre_id}/evaluations", json=body, headers=CITY)
        assert evaluated.status_code == 201, evaluated.text
    posted = await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(start=1), headers=CITY)
    assert posted.status_code == 201, posted.text
    recorded = await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    assert recorded.status_code == 200, recorded.text
    await eventually(
        lambda: registry.service.pool.fetchval(
            "SELECT (SELECT count(*) FROM form_grades) + (SELECT count(*) FROM form_postings)"
        ),
        until=lambda n: n == 3,
    )

    exported = await form_of(registry, cadre_id)
    shown = boxes(exported)
    assert shown["XingMing"] == "李伟"
    assert shown["XingBie"] == "女"
    assert shown["ChuShengNianYue"] == born[:4] + born[5:7]
    assert shown["MinZu"] == "汉族"
    assert shown["QuanRiZhiJiaoYu_XueWei"] == "管理学学士"
    assert shown["XianRenZhiWu"] == "柳阳县扶贫办副主任"
    years = sorted(clock.today().year - n for n in (2, 1))
    # The cycles' ends_on decide the year: two annual cycles, a year apart.
    assert shown["NianDuKaoHeJieGuo"].count("年度") == 2
    assert "优秀" in shown["NianDuKaoHeJieGuo"]
    assert shown["NianDuKaoHeJieGuo"].endswith("称职")
    assert str(years[0]) in shown["NianDuKaoHeJieGuo"] or str(years[0] + 1) in shown["NianDuKaoHeJieGuo"]
    assert shown["JianLi"].startswith("2010.09--2014.07  中国农业大学")
    assert "Deputy township head（下派挂职锻炼）" in shown["JianLi"]
    assert shown["ShenFenZheng"] == "11010519900307123X"
    assert shown["ZhaoPian"] == PHOTO
    family = etree.fromstring(exported).findall("JiaTingChengYuan/Item")
    assert [item.findtext("XingMing") for item in family] == ["李大明", "赵强"]
    assert "北京市朝阳区" not in exported.decode()  # the address is not a box of the form

    # Into a fresh cadre of the same gender and birth: its profile and personal file take the form.
    fresh = await nominate(registry, full_name="张三", current_position="待定", education="bachelor")
    await registry.client.put(
        f"/cadres/{fresh}/personal-data", json={"address": "白河市解放路1号", "phone": "13900000000"}, headers=CITY
    )
    imported = await registry.client.put(f"/cadres/{fresh}/appointment-form", content=exported, headers=CITY_XML)
    assert imported.status_code == 200, imported.text
    assert await form_of(registry, fresh) == exported
    profile = (await registry.client.get(f"/cadres/{fresh}", headers=CITY)).json()
    assert (profile["full_name"], profile["current_position"], profile["education"]) == (
        "李伟",
        "柳阳县扶贫办副主任",
        "master",  # the highest education the form names (in service: 硕士研究生)
    )
    kept = (await registry.client.get(f"/cadres/{fresh}/personal-data", headers=CITY)).json()
    assert (kept["address"], kept["phone"]) == ("白河市解放路1号", "13900000000")  # what the form does not carry
    assert kept["family"][1]["work"] == "白河一中教师"

    # The same form into the cadre it came from changes nothing in its boxes.
    again = await registry.client.put(f"/cadres/{cadre_id}/appointment-form", content=exported, headers=CITY_XML)
    assert again.status_code == 200, again.text
    assert await form_of(registry, cadre_id) == exported


async def test_forms_are_for_organizers_and_auditors_refuse_what_is_wrong_and_lose_personal_boxes_on_erasure(
    registry: Running,
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, full_name="李伟")
    assert (
        await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    ).status_code == 200
    url = f"/cadres/{cadre_id}/appointment-form"
    assert (await registry.client.get(url, headers=VIEWER)).status_code == 403
    assert (await registry.client.get(url, headers=OTHER_CITY)).status_code == 404
    exported = await form_of(registry, cadre_id, AUDITOR)
    assert (await registry.client.put(url, content=exported, headers=dict(AUDITOR) | XML)).status_code == 403
    page = await registry.client.get(url, params={"format": "html"}, headers=CITY)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "干部任免审批表" in page.text
    assert f"data:image/png;base64,{PHOTO}" in page.text

    before = await event_count(registry)
    text = exported.decode()
    for bad, problem in (
        (b"not xml at all", "not an .lrmx form"),
        (b"<Cadre><XingMing>x</XingMing></Cadre>", "the root is <Cadre>"),
        (text.replace("<XingBie>女</XingBie>", "<XingBie>男</XingBie>").encode(), "XingBie"),
        (text.replace("11010519900307123X", "12345").encode(), "ShenFenZheng"),
        (text.replace("196003", "1960年13月").encode(), "JiaTingChengYuan/Item[1]/ChuShengRiQi"),
        (text.replace(PHOTO, "not base64!").encode(), "ZhaoPian"),
        (
            (
                b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Person><XingMing>&x;'
                b"</XingMing></Person>"
            ),
            "XingMing",
        ),
    ):
        refused = await registry.client.put(url, content=bad, headers=CITY_XML)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert problem in refused.text, refused.text
    assert await event_count(registry) == before

    erased = await registry.client.post(f"/cadres/{cadre_id}/erasure", json={"reason": "request"}, headers=CITY)
    assert erased.status_code == 200, erased.text
    left = boxes(await form_of(registry, cadre_id))
    assert left["XingMing"] == "李伟"
    assert left["XianRenZhiWu"] == nomination()["current_position"]
    assert left["QuanRiZhiJiaoYu_XueLi"] == "硕士研究生"  # the profile's education, not personal data
    for box in ("ShenFenZheng", "ZhaoPian", "MinZu", "JianLi", "JiangChengQingKuang"):
        assert left[box] == "", box
    assert "李大明" not in (await registry.client.get(url, params={"format": "html"}, headers=CITY)).text
    assert (await registry.client.put(url, content=exported, headers=CITY_XML)).status_code == 410
