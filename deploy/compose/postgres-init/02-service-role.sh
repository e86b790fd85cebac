#!/bin/sh
# The services' login (DATABASE_URL): it owns nothing, so the row-level security the owner's schema
# declares binds whatever it reads for a person (ADR 0018). BYPASSRLS covers only its system work
# (relays, consumers); the services make it a member of cadre_system and cadre_actor at start.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=password="$SERVICE_DB_PASSWORD" <<'SQL'
CREATE ROLE cadre_service LOGIN BYPASSRLS PASSWORD :'password';
SQL
