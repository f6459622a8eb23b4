#!/bin/sh
# Regenerates crates/catalog/.sqlx, the offline query data that lets `sqlx::query!` check queries at
# compile time without a database. Run it after changing a query or a migration, from anywhere:
#   crates/catalog/prepare-sqlx.sh
# It builds a scratch database from migrations/ with the sqlite3 CLI (or Python's sqlite3), then
# compiles the crate online against it with SQLX_OFFLINE_DIR set, which makes sqlx-macros write one
# query-<hash>.json per query there. Needs no sqlx-cli.
set -eu
crate_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$crate_dir/../.." && pwd)
db=$(mktemp -d)/catalog-prepare.db
for m in "$root"/migrations/*.sql; do
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$db" < "$m"
    else
        python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' "$db" "$m"
    fi
done
rm -rf "$crate_dir/.sqlx"
mkdir -p "$crate_dir/.sqlx"
cd "$root"
# Touching a source file makes cargo re-expand the macros even if nothing else changed.
touch "$crate_dir/src/lib.rs"
SQLX_OFFLINE=false DATABASE_URL="sqlite://$db" SQLX_OFFLINE_DIR="$crate_dir/.sqlx" \
    cargo build -p cortex-catalog --all-targets
rm -rf "$(dirname "$db")"
# Check that the data is complete: an offline build from scratch of this crate's macros.
touch "$crate_dir/src/lib.rs"
SQLX_OFFLINE=true cargo build -p cortex-catalog --all-targets
echo "wrote $(ls "$crate_dir/.sqlx" | wc -l) query files to $crate_dir/.sqlx"
