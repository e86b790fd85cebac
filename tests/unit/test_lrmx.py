"""The .lrmx form without a server: written and read back, months as forms write them, bad boxes named."""

from __future__ import annotations

import base64
from datetime import date

import pytest
from lxml import etree

from contracts.personal import Education, FamilyMember, PersonalFile
from contracts.registry import Education as Level
from contracts.registry import Gender
from exchange import lrmx


def form(**personal: object) -> lrmx.Form:
    file = PersonalFile(
        ethnicity="回族",
        resume="2010.09--2014.07  大学学习\n2014.07--  县政府科员",
        family=[FamilyMember(relation="母亲", name="王秀英", birth="196505")],
        full_time=Education(level="大学本科", degree="法学学士"),
        photo=base64.b64encode(b"\xff\xd8\xff photo").decode(),
        **personal,
    )
    return lrmx.Form(full_name="李伟", gender=Gender.FEMALE, birth="199003", current_position="副县长", personal=file)


def test_a_written_form_reads_back_the_same() -> None:
    original = form(annual_assessments="2024年度优秀；2025年度称职")
    data = lrmx.write(original)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(data)
    assert [child.tag for child in root][:4] == ["XingMing", "XingBie", "ChuShengNianYue", "MinZu"]
    assert root.findtext("Version") == lrmx.FORM_VERSION
    assert lrmx.read(data) == original


def test_months_as_forms_write_them_and_padded_family_rows() -> None:
    data = lrmx.write(form()).decode()
    data = data.replace("<ChuShengRiQi>196505</ChuShengRiQi>", "<ChuShengRiQi>1965.5</ChuShengRiQi>")
    data = data.replace("<ChuShengNianYue>199003</ChuShengNianYue>", "<ChuShengNianYue>1990年3月</ChuShengNianYue>")
    empty_row = "<Item>" + "".join(f"<{e}/>" for e, _ in lrmx._FAMILY) + "</Item>"
    data = data.replace("</JiaTingChengYuan>", empty_row * 3 + "</JiaTingChengYuan>")
    read = lrmx.read(data.replace("\n", "\r\n").encode())
    assert read.birth == "199003"
    assert [(m.name, m.birth) for m in read.personal.family] == [("王秀英", "196505")]
    assert read.personal.resume == "2010.09--2014.07  大学学习\n2014.07--  县政府科员"


def test_every_bad_box_is_named() -> None:
    data = lrmx.write(form()).decode()
    data = data.replace("<XingBie>女</XingBie>", "<XingBie>F</XingBie>").replace(
        "<XingMing>李伟</XingMing>", "<XingMing/>"
    )
    data = data.replace("<ShenFenZheng></ShenFenZheng>", "<ShenFenZheng>123</ShenFenZheng>")
    data = data.replace("<ShenFenZheng/>", "<ShenFenZheng>123</ShenFenZheng>")
    with pytest.raises(lrmx.FormError) as refused:
        lrmx.read(data.encode())
    named = " | ".join(refused.value.problems)
    assert "XingBie" in named
    assert "XingMing" in named
    assert "ShenFenZheng" in named


def test_filled_from_records_grades_postings_and_the_profiles_education() -> None:
    filled = lrmx.fill(
        full_name="李伟",
        gender=Gender.FEMALE,
        birth_date=date(1990, 3, 7),
        current_position="副县长",
        education=Level.MASTER,
        personal=None,
        grades=[
            lrmx.AnnualGrade(y, g)
            for y, g in ((2021, "competent"), (2022, "excellent"), (2023, "excellent"), (2024, "basically_competent"))
        ],
        postings=[lrmx.PostingLine(date(2023, 3, 1), date(2024, 2, 28), "downward", "柳阳县", "乡党委副书记")],
    )
    assert filled.birth == "199003"
    assert filled.personal.annual_assessments == "2022年度优秀；2023年度优秀；2024年度基本称职"
    assert filled.personal.resume == "2023.03--2024.02  柳阳县乡党委副书记（下派挂职锻炼）"
    assert filled.personal.full_time.level == "硕士研究生"
    assert lrmx.level_of(filled.personal) is Level.MASTER
    # A résumé that already names the posting gets no second line.
    again = lrmx.fill(
        full_name="李伟", gender=Gender.FEMALE, birth_date=date(1990, 3, 7), current_position="副县长",
        education=Level.MASTER, personal=filled.personal, grades=[],
        postings=[lrmx.PostingLine(date(2023, 3, 1), date(2024, 2, 28), "downward", "柳阳县", "乡党委副书记")],
    )  # fmt: skip
    assert again.personal.resume == filled.personal.resume


def test_entities_are_not_resolved() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b"<Person><XingMing>&x;</XingMing></Person>"
    )
    with pytest.raises(lrmx.FormError) as refused:
        lrmx.read(data)
    assert "XingMing: the name is empty" in refused.value.problems
