#!/bin/sh
# Renders cassandra.yaml with this container's address (peers and clients reach it there), then
# runs Cassandra in the foreground. The JVM flags are the ones test/cassandra uses, in an argfile.
set -eu
host=$(hostname -i | awk '{print $1}')
dir=/var/lib/cassandra
mkdir -p "$dir/logs"
sed "s/__ANODE_HOST__/$host/g" /etc/cassandra/cassandra.yaml.template >"$dir/cassandra.yaml"
heap=${CASSANDRA_HEAP:-1g}
exec java "-Xms256m" "-Xmx$heap" @/etc/cassandra/jvm.args
