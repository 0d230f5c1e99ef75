#!/usr/bin/env bash
# PostgreSQL's statement time per payment, from pg_stat_statements (bench/README.md, "Third round").
#
# Needs an external PostgreSQL with the extension preloaded (the embedded server has no pg_stat_statements):
#   psql -h 127.0.0.1 -U postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
#   pg_ctlcluster 15 main restart
# Then: bench/pg_statements.sh [seconds of load, default 15]   (env PGURL_ADMIN, default postgresql://postgres@127.0.0.1:5432)
# Starts `tender up` on a fresh database of that server, warms up, resets the statistics, loads it with wrk
# (64 connections), waits 8 s for the drain, and prints each statement's time per payment that reached a final status.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_LOAD=${1:-15}
ADMIN=${PGURL_ADMIN:-postgresql://postgres@127.0.0.1:5432}
DB=tender_statements_$RANDOM
PORT=${BENCH_PORT:-18600}
psql "$ADMIN/postgres" -qc "CREATE DATABASE $DB"
psql "$ADMIN/$DB" -qc "CREATE EXTENSION pg_stat_statements"
DATA=$(mktemp -d)
cleanup() { kill -INT -- -"$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; rm -rf "$DATA"; psql "$ADMIN/postgres" -qc "DROP DATABASE IF EXISTS $DB" || true; }
TENDER_DATABASE_URL="$ADMIN/$DB" TENDER_DATA_DIR=$DATA TENDER_PORT=$PORT LOG_LEVEL=WARNING \
  setsid .venv/bin/python -m tender up --simulator-port $((PORT + 10)) > "$DATA/up.log" 2>&1 &
UP=$!
trap cleanup EXIT
for _ in $(seq 120); do curl -sf "localhost:$PORT/readyz" > /dev/null && break; sleep 0.5; done
KEY=$(curl -s -X POST "localhost:$PORT/admin/v1/merchants" -H "Authorization: Bearer $(cat "$DATA/admin.key")" \
  -H 'Content-Type: application/json' -d '{"name":"statements"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["secret_key"])')
BODY='{"amount": 1000, "currency": "BRL", "reference": "@REF@", "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}}'
load() { BENCH_PATH=/v1/payments BENCH_KEY=$KEY BENCH_BODY=$BODY BENCH_RUN=$1 wrk -t2 -c64 -d"$2"s -s bench/wrk/post.lua "http://127.0.0.1:$PORT/v1/payments" | grep WRK_JSON; }
load "warm$RANDOM" 3 > /dev/null
sleep 4
psql "$ADMIN/$DB" -qAtc "SELECT pg_stat_statements_reset()" > /dev/null
load "run$RANDOM" "$SECONDS_OF_LOAD"
sleep 8
N=$(psql "$ADMIN/$DB" -Atc "SELECT count(*) FROM payments WHERE status <> 'processing'")
echo "payments that reached a final status: $N"
psql "$ADMIN/$DB" -c "SELECT round((total_exec_time / $N * 1000)::numeric, 1) AS us_per_payment, calls,
  round(mean_exec_time::numeric * 1000) AS us_per_call, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  ORDER BY total_exec_time DESC LIMIT 25"
psql "$ADMIN/$DB" -Atc "SELECT 'all statements, us per payment: ' || round((sum(total_exec_time) / $N * 1000)::numeric, 1)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
