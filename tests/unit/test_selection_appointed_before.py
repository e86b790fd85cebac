"""A repeated appointment is recognised from the team's events (a directive applied again records nothing)."""

from __future__ import annotations

import uuid
from datetime import date

from contracts.selection import CadreAppointed, PostCreated, PostKind
from services.selection.rules import appointed_before

POST, CADRE, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
CREATED = PostCreated(post_id=POST, org_code="bh_c1_t1", kind=PostKind.DEPUTY, title="Deputy head", rank="deputy")


def appointed(cadre_id: uuid.UUID, document_number: str) -> CadreAppointed:
    return CadreAppointed(
        post_id=POST,
        cadre_id=cadre_id,
        full_name="Li Wei",
        org_code="bh_c1_t1",
        kind=PostKind.DEPUTY,
        post_title="Deputy head",
        appointed_on=date(2020, 3, 2),  # a date in the past, whatever the day the test runs
        document_number=document_number,
    )


def test_the_same_appointment_is_found_in_the_team() -> None:
    events = [CREATED, appointed(CADRE, "QS Org 9")]
    assert appointed_before(events, POST, CADRE, "QS Org 9")


def test_another_appointment_is_not_a_repeat() -> None:
    assert not appointed_before([CREATED], POST, CADRE, "QS Org 9")  # not appointed yet
    assert not appointed_before([CREATED, appointed(CADRE, "QS Org 9")], POST, CADRE, "QS Org 10")  # another document
    assert not appointed_before([CREATED, appointed(CADRE, "QS Org 9")], POST, OTHER, "QS Org 9")  # another cadre
    assert not appointed_before([CREATED, appointed(CADRE, "QS Org 9")], uuid.uuid4(), CADRE, "QS Org 9")  # post
    succeeded = [CREATED, appointed(CADRE, "QS Org 9"), appointed(OTHER, "QS Org 11")]
    assert not appointed_before(succeeded, POST, CADRE, "QS Org 9")  # no longer the holder
