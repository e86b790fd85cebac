"""Where a directive goes: every kind has its command, and an outcome goes to the deepest owner below."""

from __future__ import annotations

from unittest import mock

from contracts.sync import DirectiveKind
from runtime.store import EventStore
from runtime.topology import Child, Topology
from services.selection.procedure_commands import ProcedureCommands
from services.sync.directives import ROUTES, owner_below

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
