# Stand-in for the official quay.io/keycloak/keycloak image where no container registry can be reached:
# Debian's Java 17 and the server distribution the project already fetches with Maven
# (deploy/local/keycloak.py), laid out as the official image lays it out: /opt/keycloak, kc.sh the
# entrypoint, the user 1000 (group 0). No realm, password or key is in the image: the compose file
# mounts the realm and gives the admin password and the database's in the environment.
ARG DEBIAN_IMAGE=cadre-local/debian:bookworm
FROM ${DEBIAN_IMAGE} AS java
ARG DEBIAN_FRONTEND=noninteractive
# Java's alternatives link its manual pages, whose folder the slim root may lack.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN useradd --system --uid 1000 --gid 0 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin keycloak

# Built for the compose file's options (PostgreSQL, health endpoints), so that `start` does not rebuild
# (a start with other build options rebuilds on its own, as the official image does). In a stage of its
# own: the build rewrites the class path's jars, which would otherwise be in the image twice.
FROM java AS build
COPY --chown=1000:0 keycloak/ /opt/keycloak/
USER 1000:0
RUN mkdir -p /opt/keycloak/data \
 && /opt/keycloak/bin/kc.sh build --db=postgres --health-enabled=true

FROM java
COPY --from=build --chown=1000:0 /opt/keycloak/ /opt/keycloak/
USER 1000:0
EXPOSE 8080 9000
ENTRYPOINT ["/opt/keycloak/bin/kc.sh"]
