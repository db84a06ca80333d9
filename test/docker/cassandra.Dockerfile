# Stand-in for the registry's cassandra:5.0 (Docker Hub is not reachable from CI): Apache
# Cassandra's jars from Maven Central (resolved by test/cassandra) on the local Debian bookworm
# root file system with Debian's OpenJDK 17. Built by test/docker/base-images.ts.
ARG DEBIAN_IMAGE=anode/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG CASSANDRA_VERSION
LABEL org.opencontainers.image.title="anode/cassandra" anode.cassandra-version="${CASSANDRA_VERSION}"
RUN apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null \
  && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
  && groupadd --system cassandra && useradd --system --gid cassandra --home-dir /var/lib/cassandra cassandra \
  && mkdir -p /var/lib/cassandra && chown cassandra:cassandra /var/lib/cassandra
COPY lib/ /opt/cassandra/lib/
COPY conf/ /etc/cassandra/
COPY cassandra-entrypoint.sh /usr/local/bin/cassandra-entrypoint
ENV CASSANDRA_HEAP=1g
USER cassandra
VOLUME /var/lib/cassandra
EXPOSE 9042
# The CQL port opens once startup is complete.
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9042"]
ENTRYPOINT ["/usr/local/bin/cassandra-entrypoint"]
