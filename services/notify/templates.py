"""Message templates in the organization's languages (Chinese and English), and their rendering.

A template is a subject and a body with `{placeholders}` filled from the context a rule
stored when it planned the notification, plus `recipient_name`. Enumerated values
(grades, reasons, severities, posting and procedure kinds) are translated through `TERMS`. A missing
value renders as an empty string rather than failing the delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from contracts.registry import Language


@dataclass(frozen=True, slots=True)
class Template:
    """One message in one language."""

    subject: str
    body: str


_ZH: Final = {
    "cadre_nominated": Template(
        "【后备干部】{unit_name}新推荐后备干部：{cadre_name}",
        "{recipient_name}同志：\n\n{unit_name}推荐{cadre_name}（现任{position}）进入后备干部库。"
        "推荐理由：{reason}\n\n请作为第一责任人关注其培养。",
    ),
    "mentor_assigned_mentor": Template(
        "【后备干部】请您担任{cadre_name}的导师",
        "{recipient_name}同志：\n\n组织为后备干部{cadre_name}确定您为一对一培养导师，请及时与其谈心谈话，帮助其成长。",
    ),
    "mentor_assigned_cadre": Template(
        "【后备干部】已为您确定导师：{mentor_name}",
        "{recipient_name}同志：\n\n组织已为您确定一对一培养导师{mentor_name}，请主动汇报思想、工作和生活情况。",
    ),
    "enrolled": Template(
        "【培训通知】{program_title}",
        "{recipient_name}同志：\n\n您已报名参加“{program_title}”，时间为{starts_on}至{ends_on}，地点：{location}。",
    ),
    "programme_starts_soon": Template(
        "【培训提醒】{program_title}将于{starts_on}开班",
        "{recipient_name}同志：\n\n您报名的“{program_title}”将于{starts_on}开班，地点：{location}。请妥善安排工作，按时报到。",
    ),
    "posting_assigned_cadre": Template(
        "【实践锻炼】您将到{host_unit_name}挂职",
        "{recipient_name}同志：\n\n组织安排您到{host_unit_name}任{position}（{kind}），"
        "时间为{starts_on}至{planned_end_on}。目的：{purpose}",
    ),
    "posting_assigned_host": Template(
        "【实践锻炼】{cadre_name}将到贵单位挂职",
        "{recipient_name}同志：\n\n后备干部{cadre_name}将到{host_unit_name}任{position}（{kind}），"
        "时间为{starts_on}至{planned_end_on}。请做好接收和日常管理。",
    ),
    "posting_ends_soon": Template(
        "【实践锻炼】{cadre_name}在{host_unit_name}的挂职将于{planned_end_on}期满",
        "{recipient_name}同志：\n\n{cadre_name}在{host_unit_name}任{position}的挂职锻炼将于{planned_end_on}期满，"
        "请准备鉴定和总结。",
    ),
    "evaluation_recorded": Template(
        "【考核结果】您的考核等次：{grade}",
        "{recipient_name}同志：\n\n您本次考核的等次为“{grade}”，考核人：{evaluator_name}。{comments}",
    ),
    "reminder_issued": Template(
        "【提醒】关于{cadre_name}的提醒（{severity}）",
        "{recipient_name}同志：\n\n关于后备干部{cadre_name}：{concern}\n\n请于{follow_up_on}前跟进。",
    ),
    "exit_recommended": Template(
        "【动态管理】建议{cadre_name}退出后备干部库",
        "{recipient_name}同志：\n\n根据考核结果（{exit_rule}），建议{cadre_name}退出后备干部库。{summary}\n\n请研究决定。",
    ),
    "cadre_retired": Template(
        "【后备干部】{cadre_name}已退出后备干部库",
        "{recipient_name}同志：\n\n{cadre_name}自{effective_on}起退出后备干部库，原因：{reason}。{note}",
    ),
    "check_in_overdue": Template(
        "【谈心谈话】{cadre_name}的谈心谈话已逾期",
        "{recipient_name}同志：\n\n后备干部{cadre_name}自{last_check_in}以来未进行谈心谈话，应于{due_on}前完成。",
    ),
    "procedure_notice_ended": Template(
        "【选拔程序】{cadre_name}的公示期已于{ends_on}结束",
        "{recipient_name}同志：\n\n{unit_name}关于{cadre_name}的{procedure_kind}程序，公示期已于{ends_on}结束。"
        "如无未办结的异议，请结束公示并办理后续事项。",
    ),
    "procedure_objection_raised": Template(
        "【选拔程序】{cadre_name}公示期间收到异议",
        "{recipient_name}同志：\n\n{unit_name}关于{cadre_name}的{procedure_kind}程序于{received_on}收到异议：{summary}"
        "\n\n请调查核实，于{due_on}前作出结论。",
    ),
    "procedure_objection_overdue": Template(
        "【选拔程序】关于{cadre_name}的异议已超期未办结",
        "{recipient_name}同志：\n\n{unit_name}关于{cadre_name}的{procedure_kind}程序于{received_on}收到的异议"
        "应于{due_on}前办结，至今未作结论：{summary}",
    ),
}

_EN: Final = {
    "cadre_nominated": Template(
        "[Reserve cadres] {unit_name} nominated {cadre_name}",
        "Dear {recipient_name},\n\n{unit_name} nominated {cadre_name} ({position}) into the reserve pool. "
        "Reason: {reason}\n\nAs the responsible leader, please see to their development.",
    ),
    "mentor_assigned_mentor": Template(
        "[Reserve cadres] You are now {cadre_name}'s mentor",
        "Dear {recipient_name},\n\nYou were assigned as one-on-one mentor of the reserve cadre {cadre_name}. "
        "Please arrange a first conversation soon.",
    ),
    "mentor_assigned_cadre": Template(
        "[Reserve cadres] Your mentor: {mentor_name}",
        "Dear {recipient_name},\n\n{mentor_name} is now your one-on-one mentor. "
        "Please keep them informed about your thinking, work and life.",
    ),
    "enrolled": Template(
        "[Training] {program_title}",
        'Dear {recipient_name},\n\nYou are enrolled in "{program_title}", from {starts_on} to {ends_on}, '
        "at {location}.",
    ),
    "programme_starts_soon": Template(
        "[Training] {program_title} starts on {starts_on}",
        'Dear {recipient_name},\n\n"{program_title}" starts on {starts_on} at {location}. '
        "Please arrange your work so you can attend.",
    ),
    "posting_assigned_cadre": Template(
        "[Posting] You are posted to {host_unit_name}",
        "Dear {recipient_name},\n\nYou are posted to {host_unit_name} as {position} ({kind}) "
        "from {starts_on} to {planned_end_on}. Purpose: {purpose}",
    ),
    "posting_assigned_host": Template(
        "[Posting] {cadre_name} is posted to your unit",
        "Dear {recipient_name},\n\nThe reserve cadre {cadre_name} is posted to {host_unit_name} as {position} "
        "({kind}) from {starts_on} to {planned_end_on}. Please prepare their arrival.",
    ),
    "posting_ends_soon": Template(
        "[Posting] {cadre_name}'s posting at {host_unit_name} ends on {planned_end_on}",
        "Dear {recipient_name},\n\nThe posting of {cadre_name} at {host_unit_name} as {position} ends on "
        "{planned_end_on}. Please prepare the appraisal and summary.",
    ),
    "evaluation_recorded": Template(
        "[Assessment] Your grade: {grade}",
        'Dear {recipient_name},\n\nYour assessment grade is "{grade}" (evaluator: {evaluator_name}). {comments}',
    ),
    "reminder_issued": Template(
        "[Reminder] About {cadre_name} ({severity})",
        "Dear {recipient_name},\n\nAbout the reserve cadre {cadre_name}: {concern}\n\n"
        "Please follow up by {follow_up_on}.",
    ),
    "exit_recommended": Template(
        "[Pool review] Exit recommended for {cadre_name}",
        "Dear {recipient_name},\n\nBased on the assessments ({exit_rule}), {cadre_name} is recommended to leave "
        "the reserve pool. {summary}\n\nPlease decide.",
    ),
    "cadre_retired": Template(
        "[Reserve cadres] {cadre_name} left the pool",
        "Dear {recipient_name},\n\n{cadre_name} left the reserve pool on {effective_on}. Reason: {reason}. {note}",
    ),
    "check_in_overdue": Template(
        "[Check-in] A check-in with {cadre_name} is overdue",
        "Dear {recipient_name},\n\nThere has been no check-in with the reserve cadre {cadre_name} since "
        "{last_check_in}; one is due by {due_on}.",
    ),
    "procedure_notice_ended": Template(
        "[Procedures] The public notice for {cadre_name} ended on {ends_on}",
        "Dear {recipient_name},\n\nThe public notice of {unit_name}'s {procedure_kind} procedure for {cadre_name} "
        "ended on {ends_on}. Unless an objection is still open, please close the notice and record the outcome.",
    ),
    "procedure_objection_raised": Template(
        "[Procedures] An objection about {cadre_name} during the public notice",
        "Dear {recipient_name},\n\n{unit_name}'s {procedure_kind} procedure for {cadre_name} received an objection "
        "on {received_on}: {summary}\n\nPlease look into it and conclude it by {due_on}.",
    ),
    "procedure_objection_overdue": Template(
        "[Procedures] The objection about {cadre_name} is overdue",
        "Dear {recipient_name},\n\nThe objection received on {received_on} in {unit_name}'s {procedure_kind} "
        "procedure for {cadre_name} was to be concluded by {due_on} and still is not: {summary}",
    ),
}

TEMPLATES: Final[Mapping[Language, Mapping[str, Template]]] = {Language.ZH: _ZH, Language.EN: _EN}

TERMS: Final[Mapping[Language, Mapping[str, str]]] = {
    Language.ZH: {
        "excellent": "优秀",
        "competent": "称职",
        "basically_competent": "基本称职",
        "incompetent": "不称职",
        "low": "一般",
        "medium": "较重要",
        "high": "紧急",
        "appointed": "提拔任用",
        "aged_out": "超过年龄",
        "eliminated_by_assessment": "考核淘汰",
        "withdrew": "本人退出",
        "disciplined": "受到处分",
        "import_reversed": "误导入撤销",
        "upward": "上挂",
        "downward": "下派",
        "cold_hot_exchange": "冷热岗位交流",
        "urgent_task": "急难险重任务",
        "incompetent_grade": "考核不称职",
        "two_basically_competent_in_a_row": "连续两次基本称职",
        "entry": "进入后备干部库",
        "appointment": "任职",
        "": "—",
    },
    Language.EN: {
        "basically_competent": "basically competent",
        "aged_out": "aged out",
        "eliminated_by_assessment": "eliminated by assessment",
        "import_reversed": "a mistaken import reversed",
        "upward": "upward posting",
        "downward": "downward posting",
        "cold_hot_exchange": "cold-hot exchange",
        "urgent_task": "urgent task",
        "incompetent_grade": "an incompetent grade",
        "two_basically_competent_in_a_row": "two 'basically competent' grades in a row",
        "entry": "entry into the reserve pool",
        "appointment": "appointment",
        "": "-",
    },
}

TRANSLATED: Final = frozenset({"grade", "severity", "reason", "kind", "exit_rule", "location", "procedure_kind"})
"""Context fields whose values are terms (translated when `TERMS` knows them)."""


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, language: Language, context: Mapping[str, Any]) -> tuple[str, str]:
    """The subject and body of `template` in `language` (unknown template: `KeyError`)."""
    chosen = TEMPLATES[language][template]
    terms = TERMS[language]
    values = _Blank()
    for key, value in context.items():
        text = "" if value is None else str(value)
        values[key] = terms.get(text, text) if key in TRANSLATED else text
    return chosen.subject.format_map(values), chosen.body.format_map(values)
