"""Languages of the console: Babel message catalogues (zh-CN first, English), one template environment each.

The catalogues are the `.po` files in `locale/`; they are compiled in memory at start,
so no binary `.mo` file is kept in the repository. Message ids are English.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

from runtime import clock

HERE: Final = Path(__file__).resolve().parent
LOCALES: Final = HERE / "locale"
LANGUAGES: Final = {"zh-CN": "zh_CN", "en": "en"}
"""Language tags people choose → catalogue names."""
DEFAULT_LANGUAGE: Final = "zh-CN"
LANGUAGE_COOKIE: Final = "cadre_lang"


def translations(language: str) -> Translations:
    """The compiled catalogue of `language`."""
    catalogue = LOCALES / LANGUAGES[language] / "LC_MESSAGES" / "messages.po"
    with catalogue.open("rb") as po:
        catalog = read_po(po, locale=LANGUAGES[language])
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def chosen(requested: str | None, accept_language: str | None) -> str:
    """The language of a request: the person's choice, else what the browser prefers, else Chinese."""
    if requested in LANGUAGES:
        return requested
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LANGUAGE


def environments() -> dict[str, Environment]:
    """One Jinja2 environment per language, with its gettext and formatters installed."""
    made = {}
    for language, babel_name in LANGUAGES.items():
        env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
        locale = Locale.parse(babel_name)
        env.globals["language"] = language
        env.filters["day"] = lambda value, locale=locale: _day(value, locale)
        env.filters["moment"] = lambda value, locale=locale: _moment(value, locale)
        env.filters["number"] = lambda value, locale=locale: format_decimal(value, locale=locale)
        made[language] = env
    return made


def _day(value: Any, locale: Locale) -> str:
    if not value:
        return ""
    day = date.fromisoformat(str(value)[:10]) if not isinstance(value, date) else value
    return format_date(day, format="medium", locale=locale)


def _moment(value: Any, locale: Locale) -> str:
    if not value:
        return ""
    moment = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    return format_datetime(moment, format="medium", locale=locale, tzinfo=clock.current().zone)
