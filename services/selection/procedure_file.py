"""A procedure's file for the auditor: every step, every tally, every document's hash, and its check.

`check` proves the file from the record: each event's hash covers its contents, the
stream's versions run 1, 2, 3 without a gap, and each event is a link of the service's
chain (the row after it names its hash, or it is the chain's head). `printable` lays the
file out as an HTML page for the browser to print, with the outcome of the check on it.
Both are pure: the service reads the envelopes and the links, and hands them over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lxml import html
from lxml.html import builder as h

from contracts.catalog import decode
from contracts.envelope import Envelope
from contracts.event import Event
from contracts.procedure import (
    DecisionRecorded,
    Document,
    InspectionRecorded,
    NoticeClosed,
    NoticePublished,
    ObjectionConcluded,
    ObjectionRaised,
    ProcedureConcluded,
    ProcedureOpened,
    ProcedureStopped,
    RecommendationRecorded,
    Threshold,
)
from runtime.clock import Clock


@dataclass(frozen=True)
class Check:
    """What `check` found: the events it proved, and every problem (none: the file stands)."""

    events: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Nothing found."""
        return not self.problems


def check(envelopes: Sequence[Envelope], successors: Mapping[int, str], head: tuple[int, str]) -> Check:
    """Prove a procedure's events against their hashes and the service's chain.

    `successors` maps the position after each event's to that row's `prev_hash` (absent
    past the end of the table); `head` is the chain head's position and hash.
    """
    problems: list[str] = []
    expected = 1
    for envelope in envelopes:
        at = f"event {envelope.stream_version} ({envelope.event_type}, position {envelope.position})"
        if envelope.stream_version != expected:
            problems.append(f"{at}: version {envelope.stream_version} where {expected} was due")
        expected = envelope.stream_version + 1
        if envelope.computed_hash() != envelope.hash:
            problems.append(f"{at}: its hash does not cover its contents")
        following = successors.get(envelope.position + 1)
        if following is None:
            if (envelope.position, envelope.hash) != head:
                problems.append(f"{at}: no row follows it and the chain's head is not it")
        elif following != envelope.hash:
            problems.append(f"{at}: the next row of the chain names another hash")
    return Check(len(envelopes), tuple(problems))


_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "title": "选任程序档案",
        "procedure": "程序编号",
        "kind": "类别",
        "entry": "进入后备干部库",
        "appointment": "任职",
        "candidate": "人选",
        "unit": "单位",
        "reserve_kind": "后备类别",
        "post": "职位",
        "rules": "规则",
        "step": "环节",
        "recorded": "记录时间",
        "actor": "记录人",
        "record": "记录内容",
        "documents": "文件及其 SHA-256",
        "hash": "事件哈希",
        "check": "核验",
        "ok": "全部事件的哈希与链条核验无误",
        "broken": "核验发现问题",
        "events": "事件数",
    },
    "en": {
        "title": "Procedure file",
        "procedure": "Procedure",
        "kind": "Kind",
        "entry": "into the reserve pool",
        "appointment": "onto a post",
        "candidate": "Candidate",
        "unit": "Unit",
        "reserve_kind": "Reserve kind",
        "post": "Post",
        "rules": "Rules",
        "step": "Step",
        "recorded": "Recorded",
        "actor": "By",
        "record": "Record",
        "documents": "Documents (SHA-256)",
        "hash": "Event hash",
        "check": "Check",
        "ok": "every event's hash and link of the chain checked: none altered",
        "broken": "the check found problems",
        "events": "events",
    },
}

_STEP_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "ProcedureOpened": "动议与启动",
        "RecommendationRecorded": "民主推荐",
        "InspectionRecorded": "组织考察",
        "DecisionRecorded": "集体讨论决定",
        "NoticePublished": "任前公示",
        "ObjectionRaised": "收到异议",
        "ObjectionConcluded": "异议核查",
        "NoticeClosed": "公示期满",
        "ProcedureConcluded": "结果",
        "ProcedureStopped": "程序终止",
    },
    "en": {
        "ProcedureOpened": "opened (motion)",
        "RecommendationRecorded": "democratic recommendation",
        "InspectionRecorded": "organizational inspection",
        "DecisionRecorded": "collective decision",
        "NoticePublished": "public notice",
        "ObjectionRaised": "objection raised",
        "ObjectionConcluded": "objection concluded",
        "NoticeClosed": "notice closed",
        "ProcedureConcluded": "outcome",
        "ProcedureStopped": "stopped",
    },
}


def _share(threshold: Threshold) -> str:
    return f"{'≥' if threshold.inclusive else '>'} {threshold.numerator}/{threshold.denominator}"


_PHRASES: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "opened": "{said}recommendation {rec} of the ballots cast; quorum {quorum} of the members;"
        " in favour {majority} of all members; notice at least {days} working days",
        "recommendation": "{held_on}: eligible {eligible}, present {present}, cast {cast} (valid {valid},"
        " invalid {invalid}, {seats} per ballot); tally: {tally}; talks: {in_favour} of {interviewed} in favour;"
        " {verdict}",
        "inspection": "team: {team}; {interviewed} interviewed; conclusion: {conclusion}{summary}",
        "decision": "{held_on}: {present} of {members} members present; for {yes}, against {no},"
        " abstaining {abstaining}; {verdict}",
        "notice": "{starts} to {ends} ({days} working days){where}",
        "objection": "{received}: {summary}",
        "concluded": "{verdict}: {finding}",
        "closed": "closed on {closed}",
        "outcome": "{kind}: document {number} of {date}",
        "stopped": "at {step}: {reason}",
        "passed": "passed",
        "not_passed": "not passed",
        "substantiated": "substantiated",
        "not_substantiated": "not substantiated",
        "fit": "fit",
        "unfit": "unfit",
    },
    "zh": {
        "opened": "{said}推荐得票 {rec} (以投票数计); 到会 {quorum} (以应到成员计); 赞成 {majority} (以全体成员计);"
        " 公示不少于 {days} 个工作日",
        "recommendation": "{held_on}: 应到 {eligible}, 实到 {present}, 投票 {cast} (有效 {valid}, 无效 {invalid},"
        " 每票可选 {seats} 人); 得票: {tally}; 个别谈话: {interviewed} 人中 {in_favour} 人推荐; {verdict}",
        "inspection": "考察组: {team}; 谈话 {interviewed} 人; 结论: {conclusion}{summary}",
        "decision": "{held_on}: 应到 {members}, 实到 {present}; 同意 {yes}, 不同意 {no}, 弃权 {abstaining}; {verdict}",
        "notice": "{starts} 至 {ends} ({days} 个工作日){where}",
        "objection": "{received}: {summary}",
        "concluded": "{verdict}: {finding}",
        "closed": "{closed} 公示期满",
        "outcome": "{kind}: 文号 {number}, {date}",
        "stopped": "终止于{step}: {reason}",
        "passed": "通过",
        "not_passed": "未通过",
        "substantiated": "反映问题属实",
        "not_substantiated": "反映问题不属实",
        "fit": "合格",
        "unfit": "不合格",
        "entry": "进入后备干部库",
        "appointment": "任职",
        "step_opened": "动议与启动",
        "step_recommendation": "民主推荐",
        "step_inspection": "组织考察",
        "step_decision": "集体讨论决定",
        "step_notice": "任前公示",
        "step_notice_closed": "公示期满",
    },
}


def details(event: Event, language: str = "en") -> tuple[str, tuple[Document, ...]]:  # noqa: C901, PLR0911 - a case per event
    """What one event records, in a line (figures and words as recorded), and its documents."""
    w = _PHRASES["zh" if language == "zh" else "en"]

    def verdict(passed: bool) -> str:
        return w["passed"] if passed else w["not_passed"]

    def docs(*found: Document | None) -> tuple[Document, ...]:
        return tuple(d for d in found if d is not None)

    match event:
        case ProcedureOpened():
            r, motion = event.rules, event.motion
            said = (
                f"{motion.post_title}: {motion.reason}; " if motion else (f"{event.reason}; " if event.reason else "")
            )
            line = w["opened"].format(
                said=said,
                rec=_share(r.recommendation),
                quorum=_share(r.quorum),
                majority=_share(r.majority),
                days=r.notice_working_days,
            )
            return line, docs(motion.document if motion else None)
        case RecommendationRecorded():
            m, t = event.meeting, event.talks
            line = w["recommendation"].format(
                held_on=m.held_on,
                eligible=m.eligible,
                present=m.present,
                cast=m.ballots_cast,
                valid=m.valid_ballots,
                invalid=m.invalid_ballots,
                seats=m.seats,
                tally=", ".join(f"{line.candidate_name} {line.votes}" for line in m.tally),
                in_favour=t.in_favour,
                interviewed=t.interviewed,
                verdict=verdict(event.passed),
            )
            return line, event.documents
        case InspectionRecorded():
            line = w["inspection"].format(
                team=", ".join(event.team),
                interviewed=event.interviewed,
                conclusion=w[event.conclusion.value],
                summary=f" ({event.summary})" if event.summary else "",
            )
            return line, (event.report, event.clean_record)
        case DecisionRecorded():
            line = w["decision"].format(
                held_on=event.held_on,
                members=event.members,
                present=event.present,
                yes=event.votes_for,
                no=event.votes_against,
                abstaining=event.abstentions,
                verdict=verdict(event.passed),
            )
            return line, (event.minutes,)
        case NoticePublished():
            where = f"; {event.where}" if event.where else ""
            line = w["notice"].format(starts=event.starts_on, ends=event.ends_on, days=event.working_days, where=where)
            return line, docs(event.document)
        case ObjectionRaised():
            return w["objection"].format(received=event.received_on, summary=event.summary), docs(event.document)
        case ObjectionConcluded():
            found = w["substantiated"] if event.substantiated else w["not_substantiated"]
            return w["concluded"].format(verdict=found, finding=event.finding), docs(event.document)
        case NoticeClosed():
            return w["closed"].format(closed=event.closed_on), ()
        case ProcedureConcluded():
            kind = w.get(event.kind.value, event.kind.value)
            return w["outcome"].format(kind=kind, number=event.document_number, date=event.document_date), ()
        case ProcedureStopped():
            step = w.get(f"step_{event.at_step.value}", event.at_step.value)
            return w["stopped"].format(step=step, reason=event.reason), ()
    return "", ()


_PRINT_STYLE: Final = """
@page { size: A4; margin: 15mm; }
body { font-family: "SimSun", "Songti SC", serif; font-size: 10.5pt; }
h1 { text-align: center; font-size: 18pt; letter-spacing: 0.2em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 6mm; }
th, td { border: 1px solid #000; padding: 3px 5px; vertical-align: top; }
th { font-weight: normal; text-align: left; white-space: nowrap; }
code { font-family: monospace; font-size: 8pt; word-break: break-all; }
.ok { font-weight: bold; }
.broken { font-weight: bold; color: #a00; }
"""


def printable(envelopes: Sequence[Envelope], result: Check, clock: Clock, language: str = "zh") -> bytes:
    """The file as an HTML page laid out for print: the procedure, each step as recorded, and the check."""
    words = _LABELS["en" if language == "en" else "zh"]
    steps = _STEP_NAMES["en" if language == "en" else "zh"]
    events = [decode(e.event_type, e.schema_version, e.payload) for e in envelopes]
    opened = next((e for e in events if isinstance(e, ProcedureOpened)), None)
    head: list[Any] = []
    if opened is not None:
        rows = [
            (words["procedure"], str(opened.procedure_id)),
            (words["kind"], words[opened.kind.value]),
            (words["candidate"], opened.candidate_name),
            (words["unit"], envelopes[0].org_path),
        ]
        if opened.reserve_kind:
            rows.append((words["reserve_kind"], opened.reserve_kind))
        if opened.motion is not None:
            rows.append((words["post"], opened.motion.post_title))
        head = [h.TABLE(*(h.TR(h.TH(label), h.TD(value)) for label, value in rows))]
    lines = []
    for envelope, event in zip(envelopes, events, strict=True):
        said, documents = details(event, language)
        lines.append(
            h.TR(
                h.TD(str(envelope.stream_version)),
                h.TD(steps.get(envelope.event_type, envelope.event_type)),
                h.TD(clock.local(envelope.recorded_at).strftime("%Y-%m-%d %H:%M")),
                h.TD(envelope.actor.user),
                h.TD(said),
                h.TD(*(h.DIV(d.title, h.BR(), h.CODE(d.sha256)) for d in documents)),
                h.TD(h.CODE(envelope.hash)),
            )
        )
    table = h.TABLE(
        h.TR(*(h.TH(t) for t in ("#", words["step"], words["recorded"], words["actor"], words["record"]))),
        *lines,
    )
    table[0].extend([h.TH(words["documents"]), h.TH(words["hash"])])
    verdict = (
        h.P(h.CLASS("ok"), f"{words['check']}: {words['ok']} ({result.events} {words['events']})")
        if result.ok
        else h.DIV(
            h.P(h.CLASS("broken"), f"{words['check']}: {words['broken']}"),
            h.UL(*(h.LI(p) for p in result.problems)),
        )
    )
    page = h.HTML(
        h.HEAD(h.META(charset="utf-8"), h.TITLE(words["title"]), h.STYLE(_PRINT_STYLE)),
        h.BODY(h.H1(words["title"]), *head, table, verdict),
    )
    return bytes(html.tostring(page, doctype="<!DOCTYPE html>", encoding="utf-8"))
