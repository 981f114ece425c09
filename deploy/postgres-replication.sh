#!/bin/sh
# Run once by the PostgreSQL image when it creates the primary's data directory:
# lets the compose network's postgres-replica (--profile replica) copy and follow it.
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
