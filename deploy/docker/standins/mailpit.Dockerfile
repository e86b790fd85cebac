# Stand-in for the official axllent/mailpit image where no container registry can be reached: the
# same program, built on the host from its Go module (deploy/containers), at the same path (/mailpit).
ARG DEBIAN_IMAGE=cadre-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY mailpit /mailpit
USER 1000:1000
EXPOSE 1025 8025
ENTRYPOINT ["/mailpit"]
