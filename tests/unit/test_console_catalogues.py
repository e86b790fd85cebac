"""Every text the console shows has its Chinese translation; both catalogues compile."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

from contracts import catalog
from contracts.assessment import CyclePeriod, Grade, Severity
from contracts.envelope import Role
from contracts.registry import Education, Ethnicity, Gender, OrgLevel, PartyMembership, RetirementReason
from contracts.selection import PostKind, Potential, Readiness
from contracts.training import PostingKind, PostingOutcome
from services.console import i18n
from services.console.screens.statistics import GROUPS
from services.registry.statistics import AGE_BANDS, NOT_RECORDED, PARTY_YEARS
from services.selection.team_ages import TEAM_AGE_BANDS

TEMPLATES = Path(i18n.HERE) / "templates"


def _template_messages() -> set[str]:
    found = extract_from_dir(str(TEMPLATES), method_map=[("**.html", "jinja2")])
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def _shown_values() -> set[str]:
    enums = (
        Role,
        Education,
        Gender,
        Ethnicity,
        PartyMembership,
        OrgLevel,
        RetirementReason,
        Grade,
        CyclePeriod,
        Severity,
        PostingKind,
        PostingOutcome,
        PostKind,
        Readiness,
        Potential,
    )
    values = {member.value for enum in enums for member in enum}
    values |= {"in_pool", "retired", "any", "max_age", "min_age", "education", "years_of_service"}
    values |= {"unnamed"}  # the pool's use: appointments that name no post
    values |= {"political_integrity", "ability", "diligence", "performance", "probity"}
    values |= {label for _, _, label in AGE_BANDS}
    values |= {label for _, _, label in PARTY_YEARS} | {NOT_RECORDED}
    values |= {title for _, title in GROUPS}
    values |= {label for _, _, label in TEAM_AGE_BANDS}
    values |= {model.event_type for model in catalog.CURRENT}
    return values


def test_every_message_has_a_chinese_translation() -> None:
    chinese = i18n.translations("zh-CN")
    messages = _template_messages() | _shown_values()
    assert len(messages) > 150
    missing = sorted(m for m in messages if chinese.gettext(m) == m)
    assert missing == []


def test_english_reads_values_as_words() -> None:
    english = i18n.translations("en")
    assert english.gettext("in_pool") == "in the pool"
    assert english.gettext("Pool") == "Pool"


def test_the_language_of_a_request() -> None:
    assert i18n.chosen(None, None) == "zh-CN"
    assert i18n.chosen(None, "en-GB,en;q=0.9") == "en"
    assert i18n.chosen("en", "zh-CN") == "en"
    assert i18n.chosen("fr", "zh-TW") == "zh-CN"
