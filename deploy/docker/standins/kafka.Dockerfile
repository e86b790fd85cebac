# Stand-in for the official apache/kafka image where no container registry can be reached: Debian's
# Java 17 and the Kafka jars the project already fetches with Maven (deploy/local/kafka.py), run the
# way the official image runs them: KAFKA_* variables become server.properties, CLUSTER_ID formats
# empty storage in /var/lib/kafka/data, the tools sit in /opt/kafka/bin, the user is appuser (1000).
ARG DEBIAN_IMAGE=cadre-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# Java's alternatives link its manual pages, whose folder the slim root may lack.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN groupadd --system --gid 1000 appuser \
 && useradd --system --uid 1000 --gid appuser --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin appuser \
 && mkdir -p /var/lib/kafka/data /opt/kafka/bin /opt/kafka/config \
 && chown appuser:appuser /var/lib/kafka/data
COPY lib/ /opt/kafka/libs/
COPY kafka-run /opt/kafka/bin/run
COPY kafka-broker-api-versions.sh /opt/kafka/bin/kafka-broker-api-versions.sh
COPY kafka-log4j2.xml /opt/kafka/config/log4j2.xml
USER 1000:1000
VOLUME /var/lib/kafka/data
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/run"]
