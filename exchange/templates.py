"""Import templates: columns in both languages, allowed values, an example row, the commands a row becomes.

Each template belongs to the service whose commands its rows become. A row's records get ids
derived from the template's `ref` column (the record's number in the source records) and the
source (by default the importing actor's org unit): `uuid5(source/kind/ref)`. Importing the same
rows again therefore names the same records, and the services answer 409: nothing is added twice.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from runtime.errors import NotFoundError
from runtime.export import cell_text

IMPORT_NAMESPACE: Final = uuid.UUID("6f1c2a8e-3d4b-5c6d-8e9f-0a1b2c3d4e5f")

Language = Literal["zh", "en"]
Kind = Literal["text", "date", "int", "choice"]


@dataclass(frozen=True)
class Choice:
    """An allowed value: as the API names it, and as each language shows it."""

    value: str
    zh: str
    en: str


@dataclass(frozen=True)
class Column:
    """One column of a template."""

    key: str
    zh: str
    en: str
    kind: Kind = "text"
    required: bool = True
    choices: tuple[Choice, ...] = ()
    example: str = ""

    def label(self, lang: Language) -> str:
        """The header in `lang`."""
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True)
class Ids:
    """Deterministic ids of one import's records."""

    source: str

    def of(self, kind: str, ref: str) -> uuid.UUID:
        """The id of record `ref` of `kind` from this source."""
        return uuid.uuid5(IMPORT_NAMESPACE, f"{self.source}/{kind}/{ref}")

    def cadre(self, value: str) -> uuid.UUID:
        """A cadre named by its id, or by its `ref` in a cadre import from the same source."""
        return self.named("cadres", value)

    def named(self, kind: str, value: str) -> uuid.UUID:
        """A record of `kind` named by its id, or by its `ref` in an import of that kind from the same source."""
        try:
            return uuid.UUID(value)
        except ValueError:
            return self.of(kind, value)


Request = dict[str, Any]
"""One command: method, path, body (a `runtime.batch.Command`)."""


@dataclass(frozen=True)
class Template:
    """A spreadsheet layout and what each of its rows asks the service to do."""

    kind: str
    service: str
    zh: str
    en: str
    columns: tuple[Column, ...]
    commands: Callable[[dict[str, Any], Ids], list[Request]]
    chain: Callable[[dict[str, Any], Ids], str | None] = field(default=lambda _row, _ids: None)
    """Rows with the same chain key run in file order, one command after the other (a cadre's postings)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Body field → column, where they differ (to point a server's complaint at its cell)."""

    def title(self, lang: Language) -> str:
        """The template's name in `lang`."""
        return self.zh if lang == "zh" else self.en

    def column_of(self, body_field: str) -> str | None:
        """The column a command's body field came from."""
        key = self.fields.get(body_field, body_field.rsplit(".", 1)[-1])
        return key if any(c.key == key for c in self.columns) else None


def _choices(*items: tuple[str, str, str]) -> tuple[Choice, ...]:
    return tuple(Choice(*item) for item in items)


GENDERS = _choices(("female", "女", "female"), ("male", "男", "male"))
EDUCATIONS = _choices(
    ("secondary", "中专及以下", "secondary"),
    ("college", "大专", "college"),
    ("bachelor", "大学本科", "bachelor"),
    ("master", "硕士研究生", "master"),
    ("doctorate", "博士研究生", "doctorate"),
)
SELF_STUDY = _choices(
    ("reading", "读书", "reading"),
    ("online_course", "网络课程", "online course"),
    ("lecture", "讲座", "lecture"),
    ("research", "调研", "research"),
)
POSTING_KINDS = _choices(
    ("upward", "上挂", "upward"),
    ("downward", "下派", "downward"),
    ("cold_hot_exchange", "冷热岗交流", "cold-hot exchange"),
    ("urgent_task", "急难险重任务", "urgent task"),
)
OUTCOMES = _choices(("completed", "期满", "completed"), ("cut_short", "提前结束", "cut short"))
GRADES = _choices(
    ("excellent", "优秀", "excellent"),
    ("competent", "称职", "competent"),
    ("basically_competent", "基本称职", "basically competent"),
    ("incompetent", "不称职", "incompetent"),
)

REF = Column("ref", "编号", "reference", example="A-0001")
CADRE = Column("cadre", "干部编号", "cadre", example="A-0001")


def _present(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: row[key] for key in keys if row.get(key) not in (None, "")}


def _nomination(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = _present(
        row,
        "org_code",
        "full_name",
        "gender",
        "birth_date",
        "education",
        "current_position",
        "years_of_service",
        "grassroots_months",
        "reason",
        "user_id",
        "email",
    )
    body = {"cadre_id": str(ids.of("cadres", row["ref"])), **body, "imported": True}
    return [{"method": "POST", "path": "/cadres", "body": body}]


def _self_study(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = {"entry_id": str(ids.of("self-study", row["ref"])), **_present(row, "kind", "topic", "studied_on")}
    body |= _present(row, "hours", "evidence")
    return [{"method": "POST", "path": f"/cadres/{ids.cadre(row['cadre'])}/self-study", "body": body}]


def _posting(row: dict[str, Any], ids: Ids) -> list[Request]:
    cadre, posting = ids.cadre(row["cadre"]), ids.of("postings", row["ref"])
    body = {"posting_id": str(posting)} | _present(
        row, "kind", "host_org_code", "position", "starts_on", "planned_end_on", "purpose"
    )
    requests = [{"method": "POST", "path": f"/cadres/{cadre}/postings", "body": body}]
    if row.get("ended_on"):
        end = _present(row, "ended_on", "outcome", "summary")
        end.setdefault("outcome", "completed")
        requests.append({"method": "POST", "path": f"/cadres/{cadre}/postings/{posting}/end", "body": end})
    return requests


PASSED = _choices(("true", "合格", "passed"), ("false", "不合格", "not passed"))


def _attendance(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = {"cadre_id": str(ids.cadre(row["cadre"]))} | _present(
        row, "completed_on", "hours", "score", "passed", "evidence"
    )
    if "passed" in body:
        body["passed"] = body["passed"] == "true"
    return [{"method": "POST", "path": f"/programs/{row['program_id']}/attendance", "body": body}]


SCORES = ("political_integrity", "ability", "diligence", "performance", "probity")


def _evaluation(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = {
        "evaluation_id": str(ids.of("evaluations", row["ref"])),
        **_present(row, "cycle_id", "grade", "evaluator_name", "comments"),
        "scores": _present(row, *SCORES),
    }
    return [{"method": "POST", "path": f"/cadres/{ids.cadre(row['cadre'])}/evaluations", "body": body}]


POST_KINDS = _choices(("principal", "正职", "principal"), ("deputy", "副职", "deputy"))


def _post(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = {"post_id": str(ids.of("posts", row["ref"]))} | _present(row, "kind", "title", "rank")
    return [{"method": "POST", "path": f"/teams/{row['org_code']}/posts", "body": body}]


def _incumbent(row: dict[str, Any], ids: Ids) -> list[Request]:
    body = _present(row, "holder_name", "starts_on", "ends_by", "birth_date")
    if row.get("cadre"):
        body["cadre_id"] = str(ids.cadre(row["cadre"]))
    post = ids.named("posts", row["post"])
    return [{"method": "POST", "path": f"/teams/{row['org_code']}/posts/{post}/incumbent", "body": body}]


TEMPLATES: Final[dict[str, Template]] = {
    t.kind: t
    for t in (
        Template(
            "cadres",
            "registry",
            "后备干部名册",
            "Reserve cadres",
            (
                REF,
                Column("org_code", "单位代码", "org unit code", example="bh_ly"),
                Column("full_name", "姓名", "full name", example="李伟"),
                Column("gender", "性别", "gender", "choice", choices=GENDERS, example="女"),
                Column("birth_date", "出生日期", "birth date", "date", example="1990-03-07"),
                Column("education", "学历", "education", "choice", choices=EDUCATIONS, example="硕士研究生"),
                Column("current_position", "现任职务", "current position", example="县扶贫办副主任"),
                Column("years_of_service", "工作年限", "years of service", "int", example="8"),
                Column("grassroots_months", "基层工作月数", "grass-roots months", "int", example="30"),
                Column("reason", "推荐理由", "reason", example="主持全县农村公路建设"),
                Column("user_id", "用户名", "user id", required=False, example="li.wei"),
                Column("email", "电子邮箱", "email", required=False, example="li.wei@example.org"),
            ),
            _nomination,
        ),
        Template(
            "self-study",
            "training",
            "自主学习学时",
            "Self-study hours",
            (
                REF,
                CADRE,
                Column("kind", "学习形式", "kind", "choice", choices=SELF_STUDY, example="读书"),
                Column("topic", "学习内容", "topic", example="乡村振兴战略"),
                Column("studied_on", "学习日期", "studied on", "date", example="2024-05-10"),
                Column("hours", "学时", "hours", "int", example="4"),
                Column("evidence", "证明材料", "evidence", example="读书笔记 12 页"),
            ),
            _self_study,
        ),
        Template(
            "training",
            "training",
            "组织培训（补录）",
            "Organized training attended",
            (
                REF,
                CADRE,
                Column("program_id", "培训班编号", "programme id", example="(UUID of a programme that has started)"),
                Column("completed_on", "结业日期", "completed on", "date", example="2024-06-28"),
                Column("hours", "学时", "hours", "int", example="40"),
                Column("score", "成绩", "score", "int", required=False, example="88"),
                Column("passed", "是否合格", "passed", "choice", required=False, choices=PASSED, example="合格"),
                Column("evidence", "证明材料", "evidence", example="结业证书 2024-017"),
            ),
            _attendance,
        ),
        Template(
            "postings",
            "training",
            "实践锻炼（挂职）",
            "Postings",
            (
                REF,
                CADRE,
                Column("kind", "锻炼类型", "kind", "choice", choices=POSTING_KINDS, example="下派"),
                Column("host_org_code", "接收单位代码", "host unit code", example="bh_ly"),
                Column("position", "挂任职务", "position", example="乡党委副书记"),
                Column("starts_on", "开始日期", "starts on", "date", example="2023-03-01"),
                Column("planned_end_on", "计划结束日期", "planned end", "date", example="2024-02-28"),
                Column("purpose", "锻炼目的", "purpose", required=False, example="补基层经历"),
                Column("ended_on", "实际结束日期", "ended on", "date", required=False, example="2024-02-28"),
                Column("outcome", "结束方式", "outcome", "choice", required=False, choices=OUTCOMES, example="期满"),
                Column("summary", "鉴定意见", "summary", required=False, example="表现突出"),
            ),
            _posting,
            chain=lambda row, ids: str(ids.cadre(row["cadre"])),
        ),
        Template(
            "evaluations",
            "assessment",
            "考核评价",
            "Evaluations",
            (
                REF,
                CADRE,
                Column("cycle_id", "考核周期编号", "cycle id", example="(UUID of an open cycle)"),
                Column("grade", "考核等次", "grade", "choice", choices=GRADES, example="优秀"),
                Column("political_integrity", "政治素质", "political integrity", "int", example="92"),
                Column("ability", "工作能力", "ability", "int", example="88"),
                Column("diligence", "勤勉敬业", "diligence", "int", example="90"),
                Column("performance", "工作实绩", "performance", "int", example="91"),
                Column("probity", "廉洁自律", "probity", "int", example="95"),
                Column("evaluator_name", "考核人", "evaluator", example="王强"),
                Column("comments", "评语", "comments", required=False, example="担当有为"),
            ),
            _evaluation,
        ),
        Template(
            "posts",
            "selection",
            "领导班子职位",
            "Leadership posts",
            (
                REF,
                Column("org_code", "单位代码", "org unit code", example="bh_ly"),
                Column("kind", "职位类别", "kind", "choice", choices=POST_KINDS, example="正职"),
                Column("title", "职务名称", "title", example="县委书记"),
                Column("rank", "职级", "rank", example="正处级"),
            ),
            _post,
            chain=lambda row, _ids: str(row["org_code"]),  # a unit's posts are one stream: in file order
        ),
        Template(
            "incumbents",
            "selection",
            "现任职人员",
            "Incumbents",
            (
                Column("post", "职位编号", "post", example="P-0001"),
                Column("org_code", "单位代码", "org unit code", example="bh_ly"),
                Column("holder_name", "姓名", "holder", example="张明"),
                Column("starts_on", "任职日期", "in post since", "date", example="2022-01-15"),
                Column("ends_by", "任期或年龄届满日期", "ends by", "date", required=False, example="2027-01-14"),
                Column("birth_date", "出生日期", "birth date", "date", required=False, example="1975-09-02"),
                Column("cadre", "干部编号", "cadre", required=False, example="A-0001"),
            ),
            _incumbent,
            chain=lambda row, _ids: str(row["org_code"]),
            fields={"cadre_id": "cadre"},
        ),
    )
}


def workbook(template: Template, lang: Language) -> bytes:
    """The template as XLSX: headers, a filled example row, drop-downs of the allowed values, a sheet of rules."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = template.title(lang)[:31]
    sheet.append([cell_text(column.label(lang)) for column in template.columns])
    sheet.append([cell_text(column.example) for column in template.columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for index, column in enumerate(template.columns, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(12, len(column.label(lang)) * 2)
        if column.choices:
            labels = ",".join(getattr(choice, lang) for choice in column.choices)
            rule = DataValidation(type="list", formula1=f'"{labels}"', allow_blank=not column.required)
            rule.add(f"{letter}2:{letter}100000")
            sheet.add_data_validation(rule)
    rules = book.create_sheet("说明" if lang == "zh" else "Rules")
    zh = lang == "zh"
    rules.append(["列", "必填", "类型", "允许的值"] if zh else ["column", "required", "type", "allowed values"])
    for column in template.columns:
        allowed = " / ".join(getattr(choice, lang) for choice in column.choices)
        required = ("是" if column.required else "否") if zh else ("yes" if column.required else "no")
        kind = KIND_NAMES[column.kind] if zh else column.kind
        rules.append([cell_text(text) for text in (column.label(lang), required, kind, allowed)])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


KIND_NAMES: Final = {"text": "文本", "date": "日期", "int": "整数", "choice": "选项"}


def csv_text(template: Template, lang: Language) -> bytes:
    """The template as CSV: the header and the example row."""
    import csv  # noqa: PLC0415 - only here

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([cell_text(column.label(lang)) for column in template.columns])
    writer.writerow([cell_text(column.example) for column in template.columns])
    return ("\ufeff" + buffer.getvalue()).encode()


def download_router(service: str) -> APIRouter:
    """`GET /import-templates/{kind}`: the templates whose rows become this service's commands."""
    mine = sorted(kind for kind, template in TEMPLATES.items() if template.service == service)
    routes = APIRouter()

    @routes.get("/import-templates/{kind}", tags=["import"], response_class=Response)
    async def import_template(
        kind: Annotated[str, Path(description=f"The template: {', '.join(TEMPLATES)}")],
        lang: Language = "zh",
        format: Annotated[Literal["xlsx", "csv"], Query()] = "xlsx",  # noqa: A002 - the parameter's public name
    ) -> Response:
        """An import template with an example row and the allowed values (both languages)."""
        template = TEMPLATES.get(kind)
        if template is None or template.service != service:
            msg = f"no import template {kind} here (this service has: {', '.join(mine)})"
            raise NotFoundError(msg)
        data = workbook(template, lang) if format == "xlsx" else csv_text(template, lang)
        media = (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            if format == "xlsx"
            else "text/csv; charset=utf-8"
        )
        headers = {"Content-Disposition": f'attachment; filename="{kind}-{lang}.{format}"'}
        return Response(data, media_type=media, headers=headers)

    return routes
