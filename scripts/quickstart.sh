#!/usr/bin/env bash
# The README's first command: installs what is needed, builds, creates the
# sample POS database if it is missing, and runs pipelines/pos.yaml on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
python3 scripts/make_pos_db.py --out pipelines/var/office.db --terminal pipelines/var/terminal.db --if-missing
./build/etl run pipelines/pos.yaml
