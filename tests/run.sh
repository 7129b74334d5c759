#!/usr/bin/env bash
# Install Strata with its test dependencies into ./.venv, then lint, type-check, check the
# import-layer contracts and run the whole test suite twice: on the embedded SQLite default
# and on the PostgreSQL server at 127.0.0.1:5432 (database `test`, trust auth), starting that
# server if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,lite]'

# WordNet 3.0 (Debian wordnet-base): checks indexer/backbones/data/imagenet_wordnet.json
# against its generator (python -m indexer.backbones.make_wordnet); the test skips without it.
if [ ! -f /usr/share/wordnet/data.noun ]; then
  (apt-get update -qq && apt-get install -y -qq wordnet-base) || echo "wordnet-base not installed"
fi

# Headless Chromium for tests/test_web.py (strata web in a real browser); skips without it.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
    || echo "chromium not installed: tests/test_web.py will skip"
fi

# Helm chart rendering (Helm's Go SDK as a PyPI wheel, no helm binary) and Kubernetes schema
# validation for tests/test_deploy.py: in the dev extra; installed here if an older venv lacks them.
if ! .venv/bin/python -c "import helm_python, kubernetes_validate" 2>/dev/null; then
  .venv/bin/python -m pip install -q 'helm-python-sdk>=0.2.2' 'kubernetes-validate>=1.30' \
    || echo "chart tools not installed: tests/test_deploy.py will skip"
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m service.build_protos --check

echo "== test suite on SQLite =="
STRATA_TEST_DATABASE=sqlite .venv/bin/python -m pytest -q
# Modules marked database_free (decoding, backbones, chart rendering...) run in the SQLite
# pass only: tests/conftest.py deselects them here.
echo "== test suite on PostgreSQL =="
STRATA_TEST_DATABASE=postgresql .venv/bin/python -m pytest -q
