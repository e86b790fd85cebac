"""The appointment and removal approval form (干部任免审批表) as `.lrmx`: read and written with lxml.

An `.lrmx` file (the form editor's format, 3.x) is UTF-8 XML with the root `Person` and one
element per box of the form: XingMing, XingBie, ChuShengNianYue (yyyymm), ..., JianLi (the résumé,
a line per period), NianDuKaoHeJieGuo (the annual assessments), JiaTingChengYuan/Item (family
members), ShenFenZheng (ID number), ZhaoPian (the photo, base64), Version.

`Form` is what a form says in the platform's terms: the identity and post the registry's profile
holds, and the rest as the cadre's sealed `PersonalFile` (ADR 0013). `fill` composes a cadre's form
from the platform's records; `write` and `read` turn a form into bytes and back. Nothing here does
I/O: the registry serves and accepts forms (`/cadres/{id}/appointment-form`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from lxml import etree, html
from lxml.html import builder as h
from pydantic import ValidationError

from contracts.personal import Education, PersonalFile
from contracts.registry import Education as Level
from contracts.registry import Gender

FORM_VERSION: Final = "3.2.1.16"
"""The form editor's version our files name (the 3.x layout)."""
MAX_BYTES: Final = 4_000_000
"""A form with a photo of about 2 MiB fits."""

_GENDERS: Final = {Gender.MALE: "男", Gender.FEMALE: "女"}
LEVEL_NAMES: Final = {
    Level.SECONDARY: "中专",
    Level.COLLEGE: "大专",
    Level.BACHELOR: "大学本科",
    Level.MASTER: "硕士研究生",
    Level.DOCTORATE: "博士研究生",
}
GRADE_NAMES: Final = {
    "excellent": "优秀",
    "competent": "称职",
    "basically_competent": "基本称职",
    "incompetent": "不称职",
}
POSTING_NAMES: Final = {
    "upward": "上挂",
    "downward": "下派",
    "cold_hot_exchange": "冷热岗交流",
    "urgent_task": "急难险重任务",
}

# Element ↔ field of `PersonalFile` (in the order the form lists them; identity fields are the profile's).
_PERSONAL: Final = (
    ("MinZu", "ethnicity"),
    ("JiGuan", "native_place"),
    ("ChuShengDi", "birthplace"),
    ("RuDangShiJian", "party_joined"),
    ("CanJiaGongZuoShiJian", "work_started"),
    ("JianKangZhuangKuang", "health"),
    ("ZhuanYeJiShuZhiWu", "professional_title"),
    ("ShuXiZhuanYeYouHeZhuanChang", "expertise"),
)
_EDUCATION: Final = (
    ("QuanRiZhiJiaoYu", "full_time"),
    ("ZaiZhiJiaoYu", "in_service"),
)
_EDUCATION_PARTS: Final = (
    ("XueLi", "level"),
    ("XueWei", "degree"),
    ("XueLi_BiYeYuanXiaoXi", "level_school"),
    ("XueWei_BiYeYuanXiaoXi", "degree_school"),
)
_AFTER_POSTS: Final = (
    ("NiRenZhiWu", "proposed_post"),
    ("NiMianZhiWu", "proposed_removal"),
    ("JianLi", "resume"),
    ("JiangChengQingKuang", "rewards_and_penalties"),
    ("NianDuKaoHeJieGuo", "annual_assessments"),
    ("RenMianLiYou", "reason_for_appointment"),
)
_CLOSING: Final = (
    ("ChengBaoDanWei", "reporting_unit"),
    ("TianBiaoRen", "form_filled_by"),
    ("ShenFenZheng", "id_number"),
    ("ZhaoPian", "photo"),
)
_FAMILY: Final = (
    ("ChengWei", "relation"),
    ("XingMing", "name"),
    ("ChuShengRiQi", "birth"),
    ("ZhengZhiMianMao", "political_status"),
    ("GongZuoDanWeiJiZhiWu", "work"),
)
_MONTHS: Final = {"RuDangShiJian", "CanJiaGongZuoShiJian", "ChuShengNianYue", "ChuShengRiQi"}
_CARRIED: Final = frozenset(field for pairs in (_PERSONAL, _AFTER_POSTS, _CLOSING) for _, field in pairs) | {
    "full_time",
    "in_service",
    "family",
}
"""The personal file's fields the form carries (the others, address and phone, it does not)."""


@dataclass(frozen=True)
class Form:
    """What an appointment form says, in the platform's terms."""

    full_name: str
    gender: Gender | None
    birth: str
    """yyyymm ('' when the form leaves it empty)."""
    current_position: str
    personal: PersonalFile


@dataclass(frozen=True)
class AnnualGrade:
    """A cadre's grade in an annual assessment cycle."""

    year: int
    grade: str


@dataclass(frozen=True)
class PostingLine:
    """A posting for the résumé."""

    starts_on: date
    ended_on: date | None
    kind: str
    host_unit: str
    position: str

    def line(self) -> str:
        """The résumé line: `2023.03--2024.02  <host unit><position>（<kind>挂职锻炼）` (open: no end)."""
        end = f"{self.ended_on:%Y.%m}" if self.ended_on else ""
        kind = POSTING_NAMES.get(self.kind, self.kind)
        return f"{self.starts_on:%Y.%m}--{end}  {self.host_unit}{self.position}（{kind}挂职锻炼）"


class FormError(ValueError):
    """A form that cannot be read, with each problem named by its element."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def fill(
    *,
    full_name: str,
    gender: Gender,
    birth_date: date,
    current_position: str,
    education: Level,
    personal: PersonalFile | None,
    grades: Sequence[AnnualGrade],
    postings: Sequence[PostingLine],
) -> Form:
    """A cadre's form from the platform's records.

    The personal file (None once erased: those boxes stay empty) fills most boxes; the annual
    assessments are the grades of the last three annual cycles when assessment has any (else what
    the personal file says); the résumé gets a line for each posting it does not name yet; an
    empty education box shows the profile's education.
    """
    file = personal or PersonalFile()
    updates: dict[str, object] = {}
    if grades:
        recent = sorted(grades, key=lambda g: g.year)[-3:]
        updates["annual_assessments"] = "；".join(f"{g.year}年度{GRADE_NAMES.get(g.grade, g.grade)}" for g in recent)
    missing = [p.line() for p in sorted(postings, key=lambda p: p.starts_on) if p.line() not in file.resume]
    if missing:
        updates["resume"] = "\n".join(filter(None, [file.resume.rstrip("\n"), *missing]))
    if not file.full_time.level and not file.in_service.level:
        updates["full_time"] = file.full_time.model_copy(update={"level": LEVEL_NAMES[education]})
    return Form(
        full_name=full_name,
        gender=gender,
        birth=f"{birth_date:%Y%m}",
        current_position=current_position,
        personal=file.model_copy(update=updates),
    )


def write(form: Form) -> bytes:
    """The form as an `.lrmx` file (UTF-8 XML, root `Person`)."""
    person = etree.Element("Person")

    def put(name: str, value: str, parent: etree._Element = person) -> None:
        etree.SubElement(parent, name).text = value

    file = form.personal
    put("XingMing", form.full_name)
    put("XingBie", _GENDERS.get(form.gender, "") if form.gender else "")
    put("ChuShengNianYue", form.birth)
    for element, field in _PERSONAL:
        put(element, getattr(file, field))
    for prefix, kind in _EDUCATION:
        education: Education = getattr(file, kind)
        for suffix, part in _EDUCATION_PARTS:
            put(f"{prefix}_{suffix}", getattr(education, part))
    put("XianRenZhiWu", form.current_position)
    for element, field in _AFTER_POSTS:
        put(element, getattr(file, field))
    family = etree.SubElement(person, "JiaTingChengYuan")
    for member in file.family:
        item = etree.SubElement(family, "Item")
        for element, field in _FAMILY:
            put(element, getattr(member, field), item)
    for element, field in _CLOSING:
        put(element, getattr(file, field))
    put("Version", FORM_VERSION)
    return bytes(etree.tostring(person, xml_declaration=True, encoding="UTF-8", pretty_print=True))


_PARSER: Final = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)
_MONTH: Final = re.compile(r"(\d{4})\s*[.\-/年]?\s*(\d{1,2})\s*月?(?:\s*[.\-/]?\s*\d{1,2}\s*日?)?")


def _month(text: str) -> str:
    """Yyyymm from the ways forms write a month (199003, 1990.03, 1990-3, 1990年3月); else as written."""
    found = _MONTH.fullmatch(text)
    if found is None or not 1 <= int(found.group(2)) <= 12:  # noqa: PLR2004
        return text
    return f"{found.group(1)}{int(found.group(2)):02d}"


def _text(parent: etree._Element, name: str) -> str:
    found = parent.find(name)
    if found is None or found.text is None:
        return ""
    text = found.text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return _month(text) if name in _MONTHS else text


def _photo(text: str) -> str:
    compact = re.sub(r"\s+", "", text)
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        msg = "ZhaoPian: the photo is not base64"
        raise FormError(msg, [msg]) from None
    return compact


def _identity(person: etree._Element) -> tuple[str, Gender | None, str, list[str]]:
    """Name, gender and month of birth, and what is wrong with them."""
    gender_text = _text(person, "XingBie")
    gender = next((g for g, name in _GENDERS.items() if name == gender_text), None)
    problems = []
    if gender_text and gender is None:
        problems.append(f"XingBie: {gender_text!r} is neither 男 nor 女")
    full_name = _text(person, "XingMing")
    if not full_name:
        problems.append("XingMing: the name is empty")
    birth = _text(person, "ChuShengNianYue")
    if birth and not re.fullmatch(r"\d{6}", birth):
        problems.append(f"ChuShengNianYue: {birth!r} is not a month (yyyymm)")
    return full_name, gender, birth, problems


def read(data: bytes) -> Form:
    """The form an `.lrmx` file holds; `FormError` naming each element that cannot be taken."""
    if len(data) > MAX_BYTES:
        msg = f"the form is larger than {MAX_BYTES:,} bytes"
        raise FormError(msg)
    try:
        person = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as error:
        msg = f"not an .lrmx form: {error}"
        raise FormError(msg) from None
    if person.tag != "Person":
        msg = f"not an .lrmx form: the root is <{person.tag}>, not <Person>"
        raise FormError(msg)
    full_name, gender, birth, problems = _identity(person)
    fields: dict[str, object] = {field: _text(person, element) for element, field in (*_PERSONAL, *_AFTER_POSTS)}
    fields |= {field: _text(person, element) for element, field in _CLOSING if field != "photo"}
    for prefix, kind in _EDUCATION:
        fields[kind] = {part: _text(person, f"{prefix}_{suffix}") for suffix, part in _EDUCATION_PARTS}
    fields["family"] = [
        {field: _text(item, element) for element, field in _FAMILY}
        for item in person.iterfind("JiaTingChengYuan/Item")
        if any(_text(item, element) for element, _ in _FAMILY)  # editors pad the table with empty rows
    ]
    try:
        fields["photo"] = _photo(_text(person, "ZhaoPian"))
    except FormError as error:
        problems += error.problems
    try:
        personal = PersonalFile.model_validate(fields)
    except ValidationError as error:
        problems += [f"{_element_of(e['loc'])}: {e['msg']}" for e in error.errors()]
        personal = None
    if problems or personal is None:
        msg = "the form has boxes the platform cannot take"
        raise FormError(msg, problems)
    return Form(
        full_name=full_name,
        gender=gender,
        birth=birth,
        current_position=_text(person, "XianRenZhiWu"),
        personal=personal,
    )


def merged(form: PersonalFile, before: PersonalFile | None) -> PersonalFile:
    """The form's personal file, keeping what the form does not carry (address, phone) from `before`."""
    if before is None:
        return form
    kept = {field: getattr(before, field) for field in PersonalFile.model_fields if field not in _CARRIED}
    return form.model_copy(update=kept)


def level_of(file: PersonalFile) -> Level | None:
    """The highest education the form's education boxes name, when they name one the platform knows."""
    found: list[Level] = []
    for education in (file.full_time, file.in_service):
        text = f"{education.level}{education.degree}"
        for words, level in (
            (("博士",), Level.DOCTORATE),
            (("硕士", "研究生"), Level.MASTER),
            (("大学", "本科", "学士"), Level.BACHELOR),
            (("大专", "专科"), Level.COLLEGE),
            (("中专", "高中", "中学"), Level.SECONDARY),
        ):
            if any(word in text for word in words):
                found.append(level)
                break
    order = list(Level)
    return max(found, key=order.index) if found else None


def _element_of(loc: Sequence[int | str]) -> str:
    """The element a `PersonalFile` validation error is about."""
    names = {field: element for element, field in (*_PERSONAL, *_AFTER_POSTS, *_CLOSING)}
    if loc and loc[0] == "family" and len(loc) >= 3:  # noqa: PLR2004
        element = {field: element for element, field in _FAMILY}.get(str(loc[2]), str(loc[2]))
        return f"JiaTingChengYuan/Item[{int(loc[1]) + 1}]/{element}"
    if loc and loc[0] in ("full_time", "in_service") and len(loc) >= 2:  # noqa: PLR2004
        prefix = {kind: prefix for prefix, kind in _EDUCATION}[str(loc[0])]
        suffix = {part: suffix for suffix, part in _EDUCATION_PARTS}.get(str(loc[1]), str(loc[1]))
        return f"{prefix}_{suffix}"
    return names.get(str(loc[0]), str(loc[0])) if loc else "Person"


_PRINT_STYLE: Final = """
@page { size: A4; margin: 15mm; }
body { font-family: "SimSun", "Songti SC", serif; font-size: 11pt; }
h1 { text-align: center; font-size: 20pt; letter-spacing: 0.3em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #000; padding: 4px 6px; vertical-align: middle; }
th { font-weight: normal; text-align: center; width: 7em; }
td.long { white-space: pre-wrap; height: 6em; vertical-align: top; }
img { max-width: 32mm; max-height: 42mm; }
"""

PRINTABLE_CSP: Final = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_PRINT_STYLE.encode()).digest()).decode()}'; "
    "img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""The printable form's own policy: its one style sheet and its photo, nothing else (no script at all)."""


def printable(form: Form) -> bytes:
    """The form as an HTML page laid out like the printed form (the browser prints it)."""
    file = form.personal
    birth = f"{form.birth[:4]}.{form.birth[4:]}" if form.birth else ""
    kind = "image/png" if file.photo.startswith("iVBOR") else "image/jpeg"
    photo = h.IMG(src=f"data:{kind};base64,{file.photo}", alt="照片") if file.photo else "照片"

    def row(*cells: tuple[str, str, int]) -> Any:
        parts = []
        for label, value, span in cells:
            parts += [h.TH(label), h.TD(value, colspan=str(span))]
        return h.TR(*parts)

    def long(label: str, value: str) -> Any:
        return h.TR(h.TH(label), h.TD(value, h.CLASS("long"), colspan="6"))

    def education(label: str, value: Education) -> Any:
        return h.TR(
            h.TH(label),
            h.TD(" ".join(filter(None, [value.level, value.degree])), colspan="2"),
            h.TH("毕业院校系及专业"),
            h.TD(" ".join(filter(None, [value.level_school, value.degree_school])), colspan="3"),
        )

    gender = _GENDERS.get(form.gender, "") if form.gender else ""
    family = h.TABLE(
        h.TR(*(h.TH(label) for label in ("称谓", "姓名", "出生年月", "政治面貌", "工作单位及职务"))),
        *(
            h.TR(h.TD(m.relation), h.TD(m.name), h.TD(m.birth), h.TD(m.political_status), h.TD(m.work))
            for m in file.family
        ),
    )
    page = h.HTML(
        h.HEAD(h.META(charset="utf-8"), h.TITLE(f"干部任免审批表 {form.full_name}"), h.STYLE(_PRINT_STYLE)),
        h.BODY(
            h.H1("干部任免审批表"),
            h.TABLE(
                h.TR(
                    h.TH("姓名"), h.TD(form.full_name), h.TH("性别"), h.TD(gender), h.TH("出生年月"), h.TD(birth),
                    h.TD(photo, rowspan="4"),
                ),
                h.TR(h.TH("民族"), h.TD(file.ethnicity), h.TH("籍贯"), h.TD(file.native_place), h.TH("出生地"),
                     h.TD(file.birthplace)),
                h.TR(h.TH("入党时间"), h.TD(file.party_joined), h.TH("参加工作时间"), h.TD(file.work_started),
                     h.TH("健康状况"), h.TD(file.health)),
                h.TR(h.TH("专业技术职务"), h.TD(file.professional_title, colspan="2"), h.TH("熟悉专业有何专长"),
                     h.TD(file.expertise, colspan="2")),
                education("全日制教育", file.full_time),
                education("在职教育", file.in_service),
                row(("现任职务", form.current_position, 6)),
                row(("拟任职务", file.proposed_post, 6)),
                row(("拟免职务", file.proposed_removal, 6)),
                long("简历", file.resume),
                long("奖惩情况", file.rewards_and_penalties),
                long("年度考核结果", file.annual_assessments),
                long("任免理由", file.reason_for_appointment),
                h.TR(h.TH("家庭主要成员及重要社会关系"), h.TD(family, colspan="6")),
                row(("呈报单位", file.reporting_unit, 3), ("填表人", file.form_filled_by, 1)),
                row(("身份证号", file.id_number, 6)),
            ),
        ),
    )  # fmt: skip
    return bytes(html.tostring(page, doctype="<!DOCTYPE html>", encoding="utf-8"))
