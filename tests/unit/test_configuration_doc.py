"""docs/configuration.md lists every setting of every service, as the code has them."""

from __future__ import annotations

from deploy import configuration


def test_the_configuration_document_is_current() -> None:
    assert configuration.TARGET.read_text() == configuration.render(), "run: python -m deploy.configuration"


def test_every_service_has_its_section() -> None:
    text = configuration.render()
    for service in configuration.settings_classes():
        assert f"## {service}" in text
    assert "`SMTP_HOST`" in text
    assert "`KAFKA_BOOTSTRAP_SERVERS`" in text
