#!/usr/bin/env bash
# Apache Kafka's jars (broker + command-line tools) from Maven Central, with
# their runtime dependencies and a log4j2 setup, for deploy/kafka-tool.
#
#   deploy/install-kafka.sh            -> prints the libs dir
#
# Cached outside the clone in ${SLUICE_CACHE:-$HOME/.cache/sluice}/kafka-<ver>/;
# idempotent: a complete install is reused without touching the network.
# Needs java (17+) and mvn. KAFKA_VERSION overrides the pinned version;
# MAVEN_REPO_LOCAL points Maven at another local repository (default ~/.m2).
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=${LOG4J_VERSION:-2.25.5}     # the log4j-core that kafka 4.4.0 resolves
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
HOME_DIR=$CACHE/kafka-$KAFKA_VERSION
LIBS=$HOME_DIR/libs
STAMP=$HOME_DIR/.complete

complete() {
  [ -f "$STAMP" ] || return 1
  local jar
  while read -r jar; do [ -f "$LIBS/$jar" ] || return 1; done < "$STAMP"
  [ -f "$HOME_DIR/config/tools-log4j2.xml" ] && [ -f "$HOME_DIR/config/log4j2.xml" ]
}

if complete; then echo "$LIBS"; exit 0; fi

command -v mvn >/dev/null || { echo "install-kafka: mvn not found" >&2; exit 1; }
command -v java >/dev/null || { echo "install-kafka: java not found" >&2; exit 1; }

start=$(date +%s)
mkdir -p "$HOME_DIR"
work=$(mktemp -d "$HOME_DIR/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.deploy</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Kafka's distribution ships log4j2 behind slf4j 1.7 -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM

echo "install-kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central ..." >&2
repo_opt=()
[ -n "${MAVEN_REPO_LOCAL:-}" ] && repo_opt=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL")
if ! mvn -q -B "${repo_opt[@]}" -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
  cat "$work/mvn.log" >&2
  echo "install-kafka: maven failed" >&2
  exit 1
fi

mkdir -p "$work/config"
# Tools: warnings and errors only, to stderr (what Kafka's tools-log4j2.yaml does).
cat > "$work/config/tools-log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
XML
# Broker (kafka.Kafka): INFO to stdout, request logging off (Kafka's log4j2.yaml, simplified).
cat > "$work/config/log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.controller" level="info"/>
    <Logger name="state.change.logger" level="warn"/>
  </Loggers>
</Configuration>
XML

for need in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" \
            "kafka-clients-$KAFKA_VERSION.jar" "log4j-slf4j-impl-$LOG4J_VERSION.jar"; do
  [ -f "$work/libs/$need" ] || { echo "install-kafka: $need missing after maven" >&2; exit 1; }
done

rm -rf "$LIBS" "$HOME_DIR/config"
mv "$work/libs" "$LIBS"
mv "$work/config" "$HOME_DIR/config"
(cd "$LIBS" && ls -1 *.jar) > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
echo "install-kafka: Kafka $KAFKA_VERSION ready ($(wc -l < "$STAMP") jars, $(( $(date +%s) - start ))s)" >&2
echo "$LIBS"
