-- One database per service, created when the PostgreSQL volume is first initialized.
CREATE DATABASE cadre_registry;
CREATE DATABASE cadre_training;
CREATE DATABASE cadre_assessment;
CREATE DATABASE cadre_selection;
CREATE DATABASE cadre_notify;
CREATE DATABASE cadre_audit;
CREATE DATABASE cadre_sync;
-- Keycloak's (the compose file's identity provider).
CREATE DATABASE cadre_keycloak;
