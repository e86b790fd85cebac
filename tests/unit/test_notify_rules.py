"""Notify's rules, templates and webhook signatures, without Kafka or PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from contracts.assessment import CheckInRecorded, ReminderIssued, Severity
from contracts.envelope import Actor, Envelope, Role, uuid7
from contracts.event import Event
from contracts.notify import Channel
from contracts.procedure import NoticePublished, ObjectionConcluded, ObjectionRaised, ProcedureStopped, Step
from contracts.registry import CadreNominated, CadreRetired, Language, RetirementReason
from contracts.training import TrainingEnrolled, TrainingProgramCancelled
from runtime import clock
from runtime.projection import Recorded
from services.notify import channels, rules, templates
from tests import support

pytestmark = pytest.mark.dates
UTC_POLICY = rules.Policy(timezone=ZoneInfo("UTC"))
CADRE = uuid.uuid4()


@pytest.fixture
def now() -> datetime:
    """The platform's clock (the tests run at awkward instants too)."""
    return clock.now()


@pytest.fixture
def today() -> date:
    """The organization's date on the platform's clock."""
    return clock.today()


def midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def recorded(event: Event, org_path: str = "cn.qs.bh.bh_ly", at: datetime | None = None) -> Recorded:
    at = at or clock.now()
    envelope = Envelope(
        event_id=uuid7(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        source="test",
        deployment="local",
        stream_id="s-1",
        stream_version=1,
        position=1,
        cadre_id=CADRE,
        org_path=org_path,
        occurred_at=at,
        recorded_at=at,
        actor=Actor(user="u", org_path="cn", role=Role.ORGANIZER),
        correlation_id=uuid7(),
        causation_id=None,
        payload=event.model_dump(mode="json"),
        prev_hash="",
        hash="",
    )
    return Recorded(envelope=envelope, event=event)


def nominated() -> CadreNominated:
    return support.nominated(CADRE, org_code="bh_ly", reason="Led the road programme")


def test_a_nomination_tells_the_units_responsible_leader_now(now: datetime) -> None:
    plan = rules.plan(recorded(nominated()), rules.Facts(unit_name="Liuyang County"), UTC_POLICY, now)
    assert [(i.rule, i.recipient, i.due_at) for i in plan.intents] == [
        ("nomination", rules.Recipient(rules.RecipientKind.LEADER, "bh_ly"), None)
    ]
    assert plan.intents[0].context["cadre_name"] == "Li Wei"


def test_an_enrolment_is_announced_now_and_reminded_before_the_start(now: datetime, today: date) -> None:
    program = uuid.uuid4()
    starts = today + timedelta(days=14)
    facts = rules.Facts(program_title="Spring class", program_starts_on=starts)
    plan = rules.plan(recorded(TrainingEnrolled(program_id=program, cadre_id=CADRE)), facts, UTC_POLICY, now)
    at_once, later = plan.intents
    assert (at_once.rule, at_once.due_at) == ("enrolment", None)
    assert later.rule == "enrolment_reminder"
    assert later.due_at == midnight_utc(starts - timedelta(days=3))  # three days before the day begins
    assert later.subject_ref == f"enrolment:{program}:{CADRE}"


def test_reminders_follow_the_organizations_time_zone(now: datetime, today: date) -> None:
    starts = today + timedelta(days=14)
    facts = rules.Facts(program_starts_on=starts)
    shanghai = rules.Policy(timezone=ZoneInfo("Asia/Shanghai"))
    plan = rules.plan(recorded(TrainingEnrolled(program_id=uuid.uuid4(), cadre_id=CADRE)), facts, shanghai, now)
    due = plan.intents[1].due_at
    assert due is not None
    # 00:00 in UTC+8 three days before the start is 16:00 UTC on the day before that.
    assert (due.astimezone(UTC).date(), due.astimezone(UTC).hour) == (starts - timedelta(days=4), 16)


def test_a_reminder_already_due_goes_out_now_and_history_is_not_replayed(now: datetime, today: date) -> None:
    soon = rules.Facts(program_starts_on=today + timedelta(days=1))  # within the three days' lead
    plan = rules.plan(recorded(TrainingEnrolled(program_id=uuid.uuid4(), cadre_id=CADRE)), soon, UTC_POLICY, now)
    assert plan.intents[1].due_at == now
    long_ago = now - timedelta(days=700)
    check_in = CheckInRecorded(check_in_id=uuid.uuid4(), cadre_id=CADRE, held_on=long_ago.date(), held_by="m")
    replayed = rules.plan(recorded(check_in, at=long_ago), rules.Facts(), UTC_POLICY, now)
    assert replayed.intents == []  # recorded long ago, its reminder due long ago: history, not news
    assert replayed.cancels == [rules.Cancel(prefix=f"checkin:{CADRE}")]
    late_entry = rules.plan(recorded(check_in), rules.Facts(), UTC_POLICY, now)
    assert {i.due_at for i in late_entry.intents} == {now}  # entered today, long overdue: remind now


def test_a_check_in_reschedules_the_overdue_reminder_for_mentor_and_leader(now: datetime, today: date) -> None:
    held_on = today - timedelta(days=7)
    check_in = CheckInRecorded(check_in_id=uuid.uuid4(), cadre_id=CADRE, held_on=held_on, held_by="m")
    plan = rules.plan(recorded(check_in), rules.Facts(), UTC_POLICY, now)
    assert plan.cancels == [rules.Cancel(prefix=f"checkin:{CADRE}")]
    assert {i.recipient.kind for i in plan.intents} == {rules.RecipientKind.MENTOR, rules.RecipientKind.LEADER}
    assert {i.due_at for i in plan.intents} == {midnight_utc(held_on + timedelta(days=90))}


def test_retirement_cancels_the_cadres_reminders_and_tells_cadre_and_mentor(now: datetime, today: date) -> None:
    retired = CadreRetired(cadre_id=CADRE, reason=RetirementReason.APPOINTED, effective_on=today)
    plan = rules.plan(recorded(retired), rules.Facts(), UTC_POLICY, now)
    assert plan.cancels == [rules.Cancel(cadre_id=CADRE)]
    assert [i.recipient.kind for i in plan.intents] == [rules.RecipientKind.CADRE, rules.RecipientKind.MENTOR]
    cancelled = TrainingProgramCancelled(program_id=CADRE, reason="no teacher")
    assert rules.plan(recorded(cancelled), rules.Facts(), UTC_POLICY, now).cancels == [
        rules.Cancel(prefix=f"enrolment:{CADRE}:")
    ]


def test_a_reminder_goes_to_cadre_mentor_and_leader_unless_the_rule_is_off(now: datetime, today: date) -> None:
    issued = ReminderIssued(
        reminder_id=uuid.uuid4(), cadre_id=CADRE, concern="Late reports", severity=Severity.HIGH,
        follow_up_on=today + timedelta(days=30),
    )  # fmt: skip
    plan = rules.plan(recorded(issued, org_path="cn.qs.bh"), rules.Facts(), UTC_POLICY, now)
    assert [i.recipient.key for i in plan.intents] == [str(CADRE), str(CADRE), "bh"]
    off = rules.Policy(timezone=ZoneInfo("UTC"), disabled=frozenset({"reminder"}))
    assert rules.plan(recorded(issued), rules.Facts(), off, now).intents == []


PROCEDURE = uuid.uuid4()
ORGANIZED = rules.Facts(
    unit_name="Liuyang County",
    procedure=rules.ProcedureFacts("entry", "Sun Li", objection_due_days=10, organizers=("wang.fang", "li.hua")),
)


def test_the_organizers_hear_when_a_procedures_notice_ends(now: datetime, today: date) -> None:
    notice = NoticePublished(procedure_id=PROCEDURE, starts_on=today, working_days=5, ends_on=today + timedelta(days=6))
    plan = rules.plan(recorded(notice), ORGANIZED, UTC_POLICY, now)
    assert [(i.rule, i.recipient) for i in plan.intents] == [
        ("procedure_notice_ended", rules.Recipient(rules.RecipientKind.ORGANIZER, "wang.fang")),
        ("procedure_notice_ended", rules.Recipient(rules.RecipientKind.ORGANIZER, "li.hua")),
    ]
    assert {i.due_at for i in plan.intents} == {midnight_utc(today + timedelta(days=7))}  # when its last day ends
    assert {i.subject_ref for i in plan.intents} == {f"procedure:{PROCEDURE}:notice"}
    assert plan.intents[0].context["cadre_name"] == "Sun Li"
    # Entered late, its notice long over: the organizers hear now. Nobody organizes it: nobody hears.
    ended = notice.model_copy(update={"ends_on": today - timedelta(days=3)})
    assert {i.due_at for i in rules.plan(recorded(ended), ORGANIZED, UTC_POLICY, now).intents} == {now}
    unorganized = rules.Facts(procedure=rules.ProcedureFacts("entry", "Sun Li", 10, ()))
    assert rules.plan(recorded(notice), unorganized, UTC_POLICY, now).intents == []


def test_an_objection_is_told_at_once_and_again_when_overdue_unless_concluded(now: datetime, today: date) -> None:
    objection = uuid.uuid4()
    raised = ObjectionRaised(procedure_id=PROCEDURE, objection_id=objection, received_on=today, summary="A letter")
    plan = rules.plan(recorded(raised), ORGANIZED, UTC_POLICY, now)
    at_once = [i for i in plan.intents if i.rule == "procedure_objection"]
    overdue = [i for i in plan.intents if i.rule == "procedure_objection_overdue"]
    assert len(at_once) == len(overdue) == 2
    assert {i.due_at for i in at_once} == {None}
    assert {i.due_at for i in overdue} == {midnight_utc(today + timedelta(days=11))}  # unanswered more than 10 days
    assert {i.subject_ref for i in overdue} == {f"procedure:{PROCEDURE}:objection:{objection}"}
    concluded = ObjectionConcluded(procedure_id=PROCEDURE, objection_id=objection, substantiated=False, finding="no")
    assert rules.plan(recorded(concluded), rules.Facts(), UTC_POLICY, now).cancels == [
        rules.Cancel(prefix=f"procedure:{PROCEDURE}:objection:{objection}")
    ]
    stopped = ProcedureStopped(procedure_id=PROCEDURE, at_step=Step.NOTICE, reason="withdrawn")
    assert rules.plan(recorded(stopped), rules.Facts(), UTC_POLICY, now).cancels == [
        rules.Cancel(prefix=f"procedure:{PROCEDURE}:")
    ]


def test_procedure_messages_name_the_procedures_kind_in_each_language() -> None:
    context = {"recipient_name": "王芳", "cadre_name": "Sun Li", "procedure_kind": "entry", "ends_on": "2030-05-06"}
    assert "进入后备干部库" in templates.render("procedure_notice_ended", Language.ZH, context)[1]
    assert "entry into the reserve pool" in templates.render("procedure_notice_ended", Language.EN, context)[1]


def test_notification_ids_are_deterministic_and_distinct_per_channel() -> None:
    source, leader = uuid.uuid4(), rules.Recipient(rules.RecipientKind.LEADER, "bh_ly")
    ids = {rules.notification_id(source, "nomination", leader, channel) for channel in Channel}
    assert len(ids) == len(Channel)
    assert rules.notification_id(source, "nomination", leader, Channel.EMAIL) in ids


@pytest.mark.parametrize("language", list(Language))
def test_every_template_renders_in_every_language(language: Language) -> None:
    assert set(templates.TEMPLATES[language]) == set(templates.TEMPLATES[Language.ZH])
    for name in templates.TEMPLATES[language]:
        subject, body = templates.render(name, language, {"recipient_name": "Wang", "cadre_name": "Li"})
        assert subject
        assert "{" not in subject + body
        assert "Wang" in body


def test_terms_are_translated() -> None:
    context = {"recipient_name": "王芳", "grade": "basically_competent", "evaluator_name": "Zhang"}
    assert "基本称职" in templates.render("evaluation_recorded", Language.ZH, context)[0]
    assert "basically competent" in templates.render("evaluation_recorded", Language.EN, context)[0]


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [rules.backoff(n, 30, 100).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
    assert rules.backoff(1, 0.2, 1) == timedelta(seconds=0.2)


def test_webhook_signatures_detect_tampering_and_staleness() -> None:
    now = str(int(clock.now().timestamp()))
    body = b'{"subject": "hello"}'
    signature = channels.sign("secret", now, body)
    assert channels.verify("secret", now, body, signature)
    assert not channels.verify("secret", now, body + b" ", signature)
    assert not channels.verify("other", now, body, signature)
    old = str(int(clock.now().timestamp()) - 3600)
    assert not channels.verify("secret", old, body, channels.sign("secret", old, body))
