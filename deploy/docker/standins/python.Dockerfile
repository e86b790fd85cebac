# Stand-in for the official python:3.11 slim image where no container registry can be reached:
# Debian bookworm's own Python 3.11 on a base imported from a debootstrap root (deploy/containers).
# The service Dockerfile builds on it unchanged: --build-arg PYTHON_IMAGE=cadre-local/python:3.11-bookworm.
ARG DEBIAN_IMAGE=cadre-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 ca-certificates tzdata netbase \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
