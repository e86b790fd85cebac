"""A demo organization, built from a seed and loaded through the registry's own HTTP API.

`plan(seed)` says what the organization looks like (pure, reproducible); `load`
sends the commands. Loading twice changes nothing: ids are derived from the
seed, and every follow-up command names the stream version it expects, so a
command that already happened answers 409 and is skipped.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Final

import httpx

from contracts.envelope import Actor, Role, in_subtree
from contracts.registry import OrgLevel
from runtime import clock
from runtime.auth import Permission, issue_token
from runtime.demo import DemoLoader

NAMESPACE = uuid.UUID("6f1c1f0e-5b7a-4c55-9d55-2f8f3c1a0d11")
ROOT_CODE = "qs"

SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Zhao",
    "Huang",
    "Zhou",
    "Wu",
    "Xu",
    "Sun",
    "Hu",
    "Zhu",
    "Gao",
    "Lin",
    "He",
    "Guo",
    "Ma",
    "Luo",
]
GIVEN = [
    "Wei",
    "Fang",
    "Min",
    "Jing",
    "Li",
    "Qiang",
    "Lei",
    "Jun",
    "Yang",
    "Yong",
    "Yan",
    "Jie",
    "Juan",
    "Tao",
    "Ming",
    "Chao",
    "Xiu",
    "Hua",
    "Ping",
    "Gang",
    "Hui",
    "Dan",
    "Bo",
    "Ning",
]
CITIES = [("bh", "Baihe"), ("hx", "Hexi"), ("sy", "Shiyan"), ("ql", "Qinglong")]
COUNTY_NAMES = ["Liuyang", "Dongpo", "Nanshan", "Xiaohe", "Fengtai", "Yunxi", "Longjing", "Taiping"]
TOWNSHIP_NAMES = ["Shuangqiao", "Hetang", "Baishi", "Xinzhuang", "Maping", "Zhuxi", "Gaoling", "Heping"]
POSITIONS = [
    "Deputy section chief, organization department",
    "Section chief, development and reform bureau",
    "Deputy director, agriculture and rural affairs bureau",
    "Deputy township head",
    "Secretary, village party branch",
    "Deputy director, emergency management bureau",
    "Section chief, finance bureau",
    "Deputy head, ecological environment office",
]


@dataclass(frozen=True)
class Unit:
    """One org unit of the demo organization."""

    code: str
    name: str
    level: OrgLevel
    parent: str | None
    path: str
    target_pool_size: int
    leader: str


@dataclass(frozen=True)
class DemoCadre:
    """One cadre and what happens to them in the registry."""

    cadre_id: uuid.UUID
    unit: Unit
    full_name: str
    user_id: str
    gender: str
    birth_date: date
    education: str
    position: str
    years_of_service: int
    grassroots_months: int
    nominated_on: date
    mentor: str | None
    promoted_to: str | None
    retirement: tuple[str, date, str | None] | None
    categories: dict[str, Any] = field(default_factory=dict)
    """What the structure statistics count beside gender, age and education (contracts.registry.Categories)."""


@dataclass
class DemoOrg:
    """The whole demo organization."""

    units: list[Unit] = field(default_factory=list)
    cadres: list[DemoCadre] = field(default_factory=list)
    whole: DemoOrg | None = None
    """Of a part, the organization it was cut from (who signs in is chosen there)."""

    @property
    def root(self) -> Unit:
        """The unit at the top (the province; of a part, the part's root)."""
        return self.units[0]

    def part(self, root: str, *, without: Sequence[str] = ()) -> DemoOrg:
        """The units under `root` (an org path), except those under `without`, and their cadres.

        A deployment of a level loads its part of the demo: its subtree, less its children's.
        """

        def mine(path: str) -> bool:
            return in_subtree(path, root) and not any(in_subtree(path, other) for other in without)

        units = [unit for unit in self.units if mine(unit.path)]
        cadres = [cadre for cadre in self.cadres if mine(cadre.unit.path)]
        return DemoOrg(units=units, cadres=cadres, whole=self.whole or self)


def _pinyin_user(name: str, rng: random.Random) -> str:
    return name.lower().replace(" ", ".") + str(rng.randint(10, 99))


def _units(rng: random.Random) -> list[Unit]:
    units = [Unit(ROOT_CODE, "Qingshan Province", OrgLevel.PROVINCIAL, None, ROOT_CODE, 40, "leader.qs")]
    units.append(
        Unit(
            "qs_org",
            "Provincial Organization Department",
            OrgLevel.DEPARTMENT,
            ROOT_CODE,
            "qs.qs_org",
            10,
            "leader.qs_org",
        )
    )
    for city_code, city_name in CITIES:
        city_path = f"{ROOT_CODE}.{city_code}"
        units.append(
            Unit(city_code, f"{city_name} City", OrgLevel.MUNICIPAL, ROOT_CODE, city_path, 25, f"leader.{city_code}")
        )
        for county_index in range(3):
            county_code = f"{city_code}_c{county_index + 1}"
            county_name = COUNTY_NAMES[(rng.randrange(len(COUNTY_NAMES)) + county_index) % len(COUNTY_NAMES)]
            county_path = f"{city_path}.{county_code}"
            units.append(
                Unit(
                    county_code,
                    f"{county_name} County",
                    OrgLevel.COUNTY,
                    city_code,
                    county_path,
                    12,
                    f"leader.{county_code}",
                )
            )
            for town_index in range(2):
                town_code = f"{county_code}_t{town_index + 1}"
                town_name = TOWNSHIP_NAMES[(county_index * 2 + town_index + rng.randrange(3)) % len(TOWNSHIP_NAMES)]
                units.append(
                    Unit(
                        town_code,
                        f"{town_name} Township",
                        OrgLevel.TOWNSHIP,
                        county_code,
                        f"{county_path}.{town_code}",
                        5,
                        f"leader.{town_code}",
                    )
                )
    return units


def plan(seed: int = 7, *, cadres: int = 300, today: date | None = None) -> DemoOrg:
    """The demo organization for `seed`: a province, 4 cities, 12 counties, 24 townships, `cadres` people."""
    rng = random.Random(seed)
    today = today or clock.today()
    org = DemoOrg(units=_units(rng))
    max_age = {OrgLevel.TOWNSHIP: 35, OrgLevel.COUNTY: 40, OrgLevel.MUNICIPAL: 45, OrgLevel.PROVINCIAL: 50}
    for index in range(cadres):
        unit = rng.choice(org.units[1:]) if index % 10 else org.units[index % 2]
        nominated_on = today - timedelta(days=rng.randint(60, 3 * 365))
        limit = max_age.get(unit.level, 45)
        age = rng.randint(26, limit)
        birth = date(nominated_on.year - age, rng.randint(1, 12), rng.randint(1, 28))
        name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
        years = rng.randint(3, max(3, age - 23))
        grassroots = 0 if rng.random() < 0.3 else rng.randint(6, min(years * 12, 240))
        retirement: tuple[str, date, str | None] | None = None
        roll = rng.random()
        if roll < 0.04:
            retirement = ("appointed", nominated_on + timedelta(days=rng.randint(30, 59)), "Deputy county head")
        elif roll < 0.06:
            retirement = ("withdrew", nominated_on + timedelta(days=rng.randint(30, 59)), None)
        elif roll < 0.07:
            retirement = ("aged_out", nominated_on + timedelta(days=rng.randint(30, 59)), None)
        org.cadres.append(
            DemoCadre(
                cadre_id=uuid.uuid5(NAMESPACE, f"{seed}:cadre:{index}"),
                unit=unit,
                full_name=name,
                user_id=_pinyin_user(name, rng),
                gender=rng.choice(["female", "male"]),
                birth_date=birth,
                education=rng.choices(["college", "bachelor", "master", "doctorate"], [2, 6, 3, 1])[0],
                position=rng.choice(POSITIONS),
                years_of_service=years,
                grassroots_months=grassroots,
                nominated_on=nominated_on,
                mentor=f"mentor.{unit.code}.{rng.randint(1, 3)}" if rng.random() < 0.85 else None,
                promoted_to=rng.choice(POSITIONS) if rng.random() < 0.2 else None,
                retirement=retirement,
            )
        )
    # From a generator of their own: the cadres above stay what earlier demos made them.
    categories_rng = random.Random(f"{seed}:categories")
    org.cadres = [replace(cadre, categories=_categories(categories_rng, cadre)) for cadre in org.cadres]
    return org


RANKS: Final = {
    OrgLevel.TOWNSHIP: ("副科级", "正科级"),
    OrgLevel.COUNTY: ("正科级", "副处级"),
    OrgLevel.MUNICIPAL: ("副处级", "正处级"),
    OrgLevel.PROVINCIAL: ("正处级", "副厅级"),
}
RESERVE_TIERS: Final = {
    OrgLevel.TOWNSHIP: "乡科级",
    OrgLevel.COUNTY: "县处级",
    OrgLevel.MUNICIPAL: "地厅级",
    OrgLevel.PROVINCIAL: "省部级",
}
EDUCATIONS: Final = ("secondary", "college", "bachelor", "master", "doctorate")


def _categories(rng: random.Random, cadre: DemoCadre) -> dict[str, Any]:
    """A cadre's categories: one in ten recorded before they were (none), the rest drawn plausibly."""
    if rng.random() < 0.1:
        return {}
    level = cadre.unit.level
    found: dict[str, Any] = {"ethnicity": "minority" if rng.random() < 0.12 else "han"}
    if rng.random() < 0.85:
        first = cadre.birth_date.year + 20
        found |= {"party": "member", "party_joined_year": rng.randint(first, max(first, cadre.nominated_on.year))}
    else:
        found["party"] = "non_party"
    highest = EDUCATIONS.index(cadre.education)
    if highest > 1 and rng.random() < 0.4:  # the highest degree earned while working
        found |= {"full_time_education": EDUCATIONS[highest - 1], "in_service_education": cadre.education}
    else:
        found["full_time_education"] = cadre.education
    ranks = RANKS.get(level, ("副处级", "正处级"))
    found["rank"] = ranks[0] if rng.random() < 0.7 else ranks[1]
    kind = "正职" if rng.random() < 0.25 else "副职"
    found["reserve_kind"] = RESERVE_TIERS.get(level, "县处级") + kind
    return found


@dataclass(frozen=True)
class DemoPerson:
    """Someone of the demo organization who signs in to the console (local development only)."""

    user_id: str
    subject: str
    """The id the local identity provider gives them (the `sub` of their tokens)."""
    name: str
    role: Role
    unit: Unit
    username: str = ""
    """What they type to sign in (their user id, but for a cadre, whose user id is the cadre's id)."""

    @property
    def login(self) -> str:
        """The name they sign in with at the identity provider."""
        return self.username or self.user_id


def people(org: DemoOrg) -> list[DemoPerson]:
    """Who signs in: an organizer per level, an auditor, a viewer, a mentor, a leader and a cadre.

    They are chosen in the whole organization; a part (one deployment's) has those whose unit it holds.
    """
    whole = org.whole or org
    by_code = {unit.code: unit for unit in whole.units}
    city = next(u for u in whole.units if u.level is OrgLevel.MUNICIPAL)
    county = next(u for u in whole.units if u.level is OrgLevel.COUNTY and u.parent == city.code)
    township = next(u for u in whole.units if u.level is OrgLevel.TOWNSHIP and u.parent == county.code)
    held = {unit.code for unit in org.units}
    chosen = [
        ("organizer.province", "Zhang Ming", Role.ORGANIZER, whole.root),
        ("organizer.city", "Li Hua", Role.ORGANIZER, city),
        ("organizer.county", "Wang Fang", Role.ORGANIZER, county),
        ("organizer.township", "Zhao Lei", Role.ORGANIZER, township),
        ("auditor.province", "Chen Jing", Role.AUDITOR, whole.root),
        ("viewer.city", "Liu Yang", Role.VIEWER, city),
        (f"mentor.{county.code}.1", f"Mentor {county.code.title()} 1", Role.VIEWER, county),
        (county.leader, f"Leader of {county.name}", Role.VIEWER, by_code[county.code]),
    ]
    found = [
        DemoPerson(user_id, str(uuid.uuid5(NAMESPACE, f"person:{user_id}")), name, role, unit)
        for user_id, name, role, unit in chosen
        if unit.code in held
    ]
    # A reserve cadre of the county who signs in for themselves (ADR 0028): their grant's user is their id.
    own = next((c for c in org.cadres if c.unit.path.startswith(county.path) and c.retirement is None), None)
    if own is not None:
        login = f"cadre.{county.code}"
        subject = str(uuid.uuid5(NAMESPACE, f"person:{login}"))
        found.append(DemoPerson(str(own.cadre_id), subject, own.full_name, Role.CADRE, own.unit, username=login))
    return found


def root_token(secret: str, org: DemoOrg) -> str:
    """A token for the organizer of the demo province, allowed to enter the demo's history late (runtime.demo)."""
    actor = Actor(user="demo.organizer", org_path=org.root.path, role=Role.ORGANIZER)
    return issue_token(secret, actor, permissions=[Permission.LATE_ENTRY])


async def load(client: httpx.AsyncClient, token: str, org: DemoOrg) -> tuple[int, int]:
    """Send the demo's commands to the registry at `client`; return (sent, already there)."""
    loader = DemoLoader(client, token, hour=9)
    founded = date(2015, 1, 1)
    for unit in org.units:
        body = {
            "code": unit.code,
            "name": unit.name,
            "level": unit.level.value,
            "parent_code": unit.parent,
            "target_pool_size": unit.target_pool_size,
        }
        await loader.send("POST", "/org-units", body, founded)
        leader = {
            "user_id": unit.leader,
            "name": f"Leader of {unit.name}",
            "email": f"{unit.leader}@qingshan.example.org",
        }
        await loader.send("PUT", f"/org-units/{unit.code}/responsible-leader", leader, founded, if_match=1)
    staff = [person for person in people(org) if person.role is not Role.CADRE]
    for person in staff:
        await _grant(loader, person, founded)
    for cadre in org.cadres:
        await _load_cadre(loader, cadre)
    nominated = {str(cadre.cadre_id): cadre.nominated_on for cadre in org.cadres}
    for person in people(org):
        if person.role is Role.CADRE:  # a cadre's own grant names a cadre in the pool: once nominated
            await _grant(loader, person, nominated[person.user_id])
    return loader.sent, loader.skipped


async def _grant(loader: DemoLoader, person: DemoPerson, founded: date) -> None:
    body = {"subject": person.subject, "name": person.name, "org_code": person.unit.code, "role": person.role}
    await loader.send("PUT", f"/access/{person.user_id}", body, founded, if_match=0)


async def _load_cadre(loader: DemoLoader, cadre: DemoCadre) -> None:
    url = f"/cadres/{cadre.cadre_id}"
    await loader.send(
        "POST",
        "/cadres",
        {
            "cadre_id": str(cadre.cadre_id),
            "org_code": cadre.unit.code,
            "full_name": cadre.full_name,
            "gender": cadre.gender,
            "birth_date": cadre.birth_date.isoformat(),
            "education": cadre.education,
            "current_position": cadre.position,
            "years_of_service": cadre.years_of_service,
            "grassroots_months": cadre.grassroots_months,
            "reason": "Recommended by the unit's democratic evaluation",
            "user_id": cadre.user_id,
            "email": f"{cadre.user_id}@qingshan.example.org",
            **cadre.categories,
        },
        cadre.nominated_on,
    )
    version = 1
    if cadre.mentor:
        mentor = {"user_id": cadre.mentor, "name": cadre.mentor.replace(".", " ").title()}
        await loader.send("PUT", f"{url}/mentor", mentor, cadre.nominated_on + timedelta(days=7), if_match=version)
        version += 1
    if cadre.promoted_to:
        await loader.send(
            "PATCH",
            url,
            {"current_position": cadre.promoted_to},
            cadre.nominated_on + timedelta(days=20),
            if_match=version,
        )
        version += 1
    if cadre.retirement:
        reason, on, post = cadre.retirement
        await loader.send(
            "POST",
            f"{url}/retirement",
            {"reason": reason, "effective_on": on.isoformat(), "appointed_to": post},
            on,
            if_match=version,
        )
