#!/bin/bash
# Runs once when the primary's data directory is created: a replication role
# and a pg_hba rule so the replica container can stream from it.
set -e
psql -v ON_ERROR_STOP=1 -U postgres <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
