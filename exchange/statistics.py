"""The structure statistics as a workbook laid out like the usual table (情况统计表), one sheet per level.

Each sheet: the title and the date, two header rows (a group over its categories), a line per
unit of the level, and the level's total (合计). The figures are the API's (`Statistics`), written
as numbers; the headers are in Chinese, as the table is filed.
"""

from __future__ import annotations

import io
from typing import Final

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from services.registry.statistics import NOT_RECORDED, Row, Statistics

GROUPS_ZH: Final = {
    "gender": "性别",
    "age": "年龄",
    "women_by_age": "其中女性年龄",
    "ethnicity": "民族",
    "party": "政治面貌",
    "party_years": "中共党员党龄",
    "full_time_education": "全日制教育",
    "in_service_education": "在职教育",
    "rank": "职级",
    "reserve_kind": "后备类别",
}

CATEGORIES_ZH: Final = {
    "female": "女",
    "male": "男",
    "under 30": "30岁以下",
    "30-34": "30-34岁",
    "35-39": "35-39岁",
    "40-44": "40-44岁",
    "45 and over": "45岁及以上",
    "han": "汉族",
    "minority": "少数民族",
    "member": "中共党员",
    "non_party": "非中共党员",
    "under 5 years": "不满5年",
    "5-9 years": "5-9年",
    "10-19 years": "10-19年",
    "20 years and over": "20年及以上",
    "secondary": "中专及以下",
    "college": "大专",
    "bachelor": "大学本科",
    "master": "硕士研究生",
    "doctorate": "博士研究生",
    NOT_RECORDED: "未记录",
}

LEVELS_ZH: Final = {
    "central": "中央",
    "provincial": "省级",
    "municipal": "市级",
    "county": "县级",
    "township": "乡镇级",
    "department": "部门",
}

FIXED: Final = ("单位", "总数", "平均年龄")
"""The columns before the groups."""


def columns(stats: Statistics) -> list[tuple[str, str]]:
    """(group, category) of each counted column, in order."""
    return [(group, category) for group, categories in stats.groups.items() for category in categories]


def workbook(stats: Statistics) -> bytes:
    """The statistics as an XLSX: one sheet per level (a sheet saying so when the subtree has no unit)."""
    book = Workbook()
    first = book.active
    if isinstance(first, Worksheet):  # a new workbook's own sheet: each level gets its own instead
        book.remove(first)
    counted = columns(stats)
    for sheet in stats.levels:
        level = LEVELS_ZH.get(sheet.level, sheet.level)
        title = f"{stats.total.name}后备干部情况统计表 {level}"
        _write(book.create_sheet(level), stats, title, counted, [*sheet.units, sheet.total])
    if not stats.levels:
        _write(book.create_sheet("合计"), stats, f"{stats.total.name}后备干部情况统计表", counted, [stats.total])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _write(ws: Worksheet, stats: Statistics, title: str, counted: list[tuple[str, str]], rows: list[Row]) -> None:
    width = len(FIXED) + len(counted)
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws.cell(1, 1).font = Font(bold=True, size=14)
    ws.cell(1, 1).alignment = Alignment(horizontal="center")
    ws.append([f"截至{stats.on.year}年{stats.on.month}月{stats.on.day}日"])
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    ws.append([*FIXED, *(GROUPS_ZH.get(group, group) for group, _ in counted)])
    ws.append(["", "", "", *(CATEGORIES_ZH.get(category, category) for _, category in counted)])
    for index in range(1, len(FIXED) + 1):
        ws.merge_cells(start_row=3, start_column=index, end_row=4, end_column=index)
    column = len(FIXED) + 1
    for categories in stats.groups.values():
        if len(categories) > 1:
            ws.merge_cells(start_row=3, start_column=column, end_row=3, end_column=column + len(categories) - 1)
        column += len(categories)
    for cells in ws.iter_rows(min_row=3, max_row=4):
        for cell in cells:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for row in rows:
        name = "合计" if row.code is None else row.name
        ws.append([name, row.total, row.average_age, *(row.counts[group][category] for group, category in counted)])
    ws.column_dimensions["A"].width = 24
    for index in range(2, width + 1):
        ws.column_dimensions[get_column_letter(index)].width = 9
    ws.freeze_panes = "B5"
