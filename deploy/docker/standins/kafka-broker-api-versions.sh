#!/bin/sh
# What the official image's tool of the same name runs (the compose healthcheck calls it).
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
