"""Where a directive goes: every kind has its command, and an outcome goes to the deepest owner below."""

from __future__ import annotations

import uuid
from unittest import mock

from contracts.procedure import ProcedureConcluded, ProcedureKind
from contracts.sync import DirectiveKind
from runtime import clock
from runtime.store import EventStore
from runtime.topology import Child, Topology
from services.selection.commands import AppointCadre
from services.selection.procedure_commands import ProcedureCommands
from services.sync.directives import ROUTES, outcome_directive, owner_below

KEY = "A" * 43 + "="
BELOW = {"bh": "qs.bh", "bh_c1": "qs.bh.bh_c1", "bh_c2": "qs.bh.bh_c2", "hx": "qs.hx"}


def test_every_kind_of_directive_becomes_a_command() -> None:
    assert set(ROUTES) == set(DirectiveKind)
    assert ROUTES[DirectiveKind.ADMIT].path == "/cadres/{cadre_id}/admission"


def test_the_deepest_deployment_below_owns_a_unit() -> None:
    assert owner_below(BELOW, "qs.bh.bh_c1.bh_c1_t1") == "bh_c1"
    assert owner_below(BELOW, "qs.bh.bh_c1") == "bh_c1"
    assert owner_below(BELOW, "qs.bh.bh_c3") == "bh"  # a county without its own deployment: the city's
    assert owner_below(BELOW, "qs.bh_c1") is None  # a name that begins alike is another unit
    assert owner_below(BELOW, "qs.zj") is None  # the province's own unit


def commands(topology: Topology) -> ProcedureCommands:
    store = mock.Mock(spec=EventStore)
    store.topology = topology
    return ProcedureCommands(store, mock.Mock())


def test_a_procedure_at_a_unit_owned_below_is_recorded_at_the_deciding_root() -> None:
    province = Topology(deployment="qs", root="qs", children={"bh": Child(root="qs.bh", public_key=KEY)})
    assert commands(province).recorded_at("qs.bh.bh_c1.bh_c1_t1") == "qs"
    assert commands(province).recorded_at("qs.zj") == "qs.zj"
    single = Topology(deployment="main")
    assert commands(single).recorded_at("cn.qs.bh") == "cn.qs.bh"
    county = Topology(deployment="bh_c1", root="qs.bh.bh_c1", parent="bh")
    assert commands(county).recorded_at("qs.bh") == "qs.bh"  # above it: the store refuses it, naming the owner


def test_an_appointment_decided_above_goes_to_the_selection_of_the_owner() -> None:
    route = ROUTES[DirectiveKind.APPOINT]
    assert (route.service, route.path) == ("selection", "/cadres/{cadre_id}/appointment")


def test_an_appointment_procedure_concluded_above_becomes_the_appointment_the_owner_takes() -> None:
    procedure_id, cadre_id, post_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    concluded = ProcedureConcluded(
        procedure_id=procedure_id,
        kind=ProcedureKind.APPOINTMENT,
        candidate_id=cadre_id,
        document_number="QS Org appointment 7",
        document_date=clock.today(),
        post_id=post_id,
        org_code="bh_c1_t1",
        unit_path="qs.bh.bh_c1.bh_c1_t1",
    )
    directive = outcome_directive(concluded, "bh_c1")
    assert directive is not None
    assert (directive.kind, directive.target_deployment, directive.cadre_id) == (
        DirectiveKind.APPOINT,
        "bh_c1",
        cadre_id,
    )
    assert directive.directive_id == uuid.uuid5(procedure_id, "appoint")  # the same for every delivery of the outcome
    # The body is the county's command as its selection takes it, naming the procedure.
    appointment = AppointCadre.model_validate(directive.body)
    assert (appointment.org_code, appointment.post_id) == ("bh_c1_t1", post_id)
    assert (appointment.appointed_on, appointment.document_number) == (clock.today(), "QS Org appointment 7")
    assert appointment.procedure_id == procedure_id
    # An outcome without its post (recorded before outcomes named it) carries nothing.
    assert outcome_directive(concluded.model_copy(update={"post_id": None}), "bh_c1") is None


def test_an_entry_outcome_without_its_candidate_carries_nothing() -> None:
    concluded = ProcedureConcluded(
        procedure_id=uuid.uuid4(),
        kind=ProcedureKind.ENTRY,
        candidate_id=uuid.uuid4(),
        document_number="QS Org [2026] 4",
        document_date=clock.today(),
        org_code="bh_c1_t1",
        unit_path="qs.bh.bh_c1.bh_c1_t1",
    )
    assert outcome_directive(concluded, "bh_c1") is None
