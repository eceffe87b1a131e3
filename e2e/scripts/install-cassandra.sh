#!/usr/bin/env bash
# Installs Apache Cassandra's jars (org.apache.cassandra:cassandra-all and its runtime dependencies),
# resolved with Maven, once, into a cache that outlives clones, and prints the install directory.
#   install-cassandra.sh [VERSION]   VERSION: exact (5.0.8) or a prefix (5.0, the default: the latest
#                                    5.0.x the repository serves)
# The directory holds lib/ (every jar, for `java -cp "lib/*"`) and a `version` file. Later runs find
# the `.complete` marker and return at once.
set -euo pipefail
want="${1:-${CASSANDRA_VERSION:-5.0}}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
JAVA_HOME="${CASSANDRA_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"
export JAVA_HOME

# An exact version already installed: done. A prefix: the newest installed match (no network);
# TABLESNAP_CASSANDRA_REFRESH=1 asks the repository for a newer one.
if [[ "$want" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  range="$want"
  if [ -f "$CACHE/cassandra-$want/.complete" ]; then echo "$CACHE/cassandra-$want"; exit 0; fi
else
  major="${want%%.*}"; minor="${want#*.}"
  range="[$major.$minor,$major.$((minor + 1)))"
  if [ "${TABLESNAP_CASSANDRA_REFRESH:-0}" != 1 ]; then
    have="$(ls -d "$CACHE"/cassandra-"$want".*/.complete 2>/dev/null | sed 's|/.complete$||' | sort -V | tail -1 || true)"
    if [ -n "$have" ]; then echo "$have"; exit 0; fi
  fi
fi

start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tablesnap.test</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$range</version>
    </dependency>
  </dependencies>
</project>
POM
echo "resolving cassandra-all $range with Maven into $CACHE (about 100 MB, cached afterwards)" >&2
# sjk-jfr5's invalid POM makes Maven print harmless ERROR lines; the exit status is what counts.
mvn -q -B -f "$work/pom.xml" -DincludeScope=runtime -DoutputDirectory="$work/lib" \
  org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies >&2 || {
  echo "maven could not resolve cassandra-all $range" >&2; exit 1; }
jar="$(ls "$work"/lib/cassandra-all-*.jar | head -1)"
version="$(basename "$jar" .jar)"; version="${version#cassandra-all-}"
dest="$CACHE/cassandra-$version"
if [ -f "$dest/.complete" ]; then echo "$dest"; exit 0; fi
rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
mv "$work/lib" "$dest.tmp/lib"
echo "$version" > "$dest.tmp/version"
touch "$dest.tmp/.complete"
rm -rf "$dest"; mv "$dest.tmp" "$dest"
echo "cassandra $version installed in $((SECONDS - start)) s ($(du -sh "$dest" | cut -f1))" >&2
echo "$dest"
