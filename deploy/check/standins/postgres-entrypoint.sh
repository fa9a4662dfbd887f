#!/bin/sh
# The official postgres image's start for what docker-compose.yml uses: an empty $PGDATA gets
# a UTF-8 cluster (as the official image's; a minbase's locale would give SQL_ASCII, whose
# text psycopg returns as bytes) whose superuser is POSTGRES_USER (password POSTGRES_PASSWORD)
# and a database POSTGRES_DB; then the command (postgres) runs as the postgres user, reached
# from the network with a password.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    chown postgres "$password_file"
    as_postgres initdb --username="$user" --pwfile="$password_file" \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\";" | as_postgres postgres --single -D "$PGDATA" postgres
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
