"""The local identity provider: fetched once through the shared Maven code; its realm.

A real server starts in the session's `keycloak` fixture (the sign-in, console and browser
tests use it) and under `./dev up` (tests/integration/test_up_console.py, which also checks
that nothing of it is left once the command stops).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from deploy.local import keycloak
from tests.support import fake_maven, in_threads

FAKE_MVN = """\
#!/bin/sh
# A stand-in for Maven: counts its runs, then copies the prepared archive where it is told.
echo run >> "$FAKE_MVN_LOG"
for arg in "$@"; do
    case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}" ;; esac
done
sleep 0.5
mkdir -p "$out" && cp "$FAKE_ZIP" "$out/keycloak-quarkus-dist-9.9.9.zip"
"""


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `mvn` first on PATH that 'downloads' a tiny distribution; returns the file logging its runs."""
    archive = tmp_path / "dist.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        script = zipfile.ZipInfo("keycloak-9.9.9/bin/kc.sh")
        script.external_attr = 0o755 << 16
        bundle.writestr(script, "#!/bin/sh\nexit 0\n")
        bundle.writestr("keycloak-9.9.9/lib/quarkus-run.jar", "jar")
    monkeypatch.setenv("FAKE_ZIP", str(archive))
    return fake_maven(tmp_path, monkeypatch, FAKE_MVN)


def test_the_distribution_is_fetched_once_and_unpacked_runnable(fake_distribution: Path, tmp_path: Path) -> None:
    results = in_threads(lambda: keycloak.ensure_distribution("9.9.9"))
    dist = tmp_path / "cache" / "keycloak" / "9.9.9" / "dist"
    assert results == [dist, dist, dist]
    assert keycloak.ensure_distribution("9.9.9") == dist
    assert fake_distribution.read_text().splitlines() == ["run"]
    assert os.access(dist / "bin" / "kc.sh", os.X_OK)
    assert (dist / "lib" / "quarkus-run.jar").is_file()
    assert not (dist.parent / "download").exists()


def test_the_realm_keeps_roles_out_of_the_provider() -> None:
    user = keycloak.RealmUser("a.b", "11111111-2222-3333-4444-555555555555", "A B")
    realm = keycloak.realm([user], redirect_uris=["http://127.0.0.1:8080/*"])
    (client,) = realm["clients"]
    assert client["publicClient"] is True
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert client["directAccessGrantsEnabled"] is False
    assert client["redirectUris"] == ["http://127.0.0.1:8080/*"]
    assert client["protocolMappers"][0]["config"]["included.custom.audience"] == keycloak.AUDIENCE
    assert realm["users"][0]["id"] == user.subject
    assert "roles" not in realm
