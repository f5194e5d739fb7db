#!/usr/bin/env bash
# The test command (README): the SAM template checks, then every test of the workspace, the
# emulator suite included.
#
# It installs its Python tools at pinned versions into .venv (once): moto's server, cfn-lint and
# the SAM CLI; and cargo-deny, from crates.io, into .tools (once, about 4 minutes). It lints
# infra/template.yaml with cfn-lint (informational checks included) and `sam validate --lint`, and
# checks the dependency graph with `cargo deny check bans licenses sources` (deny.toml). With AWS_ENDPOINT_URL set (LocalStack, say) the suite runs against that
# endpoint; without it, this script starts moto (tests/moto_server.py: moto's server with
# DynamoDB's per-item atomicity) on a free loopback port and stops it after.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
SAM_CLI_VERSION="1.170.0"
CARGO_DENY_VERSION="0.20.2"
VENV=".venv"
export SAM_CLI_TELEMETRY=0

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is needed (https://rustup.rs)" >&2
  exit 1
fi

moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

installed() {
  "$VENV/bin/python" - "$@" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(name) != wanted for name, wanted in zip(sys.argv[1::2], sys.argv[2::2])))
PY
}
if ! installed moto "$MOTO_VERSION" cfn-lint "$CFN_LINT_VERSION" aws-sam-cli "$SAM_CLI_VERSION"; then
  echo "== installing moto[server]==$MOTO_VERSION cfn-lint==$CFN_LINT_VERSION aws-sam-cli==$SAM_CLI_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
fi

deny=".tools/bin/cargo-deny"
if ! { [ -x "$deny" ] && "$deny" --version | grep -qx "cargo-deny $CARGO_DENY_VERSION"; }; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION into .tools (from crates.io)"
  cargo install --quiet --locked --root .tools --version "$CARGO_DENY_VERSION" cargo-deny
fi

mkdir -p target
# The template and dependency checks count as tests in the closing line.
checks_passed=0
checks_failed=0
check() {
  local name="$1"
  shift
  echo "== $name"
  if "$@"; then
    echo "check ok: $name"
    checks_passed=$((checks_passed + 1))
  else
    echo "check FAILED: $name"
    checks_failed=$((checks_failed + 1))
  fi
}
check "cfn-lint $CFN_LINT_VERSION" "$VENV/bin/cfn-lint" --include-checks I -- infra/template.yaml
check "sam validate --lint ($SAM_CLI_VERSION)" "$VENV/bin/sam" validate --lint --template infra/template.yaml
check "cargo deny $CARGO_DENY_VERSION: bans licenses sources" "$deny" deny --log-level error check bans licenses sources

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # moto's server with DynamoDB requests serialized: plain moto lets two conditional writes to
  # one item both apply (tests/moto_server.py says more).
  "$VENV/bin/python" tests/moto_server.py -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
  moto_pid=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/')" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then
      echo "moto did not start:" >&2
      cat target/moto.log >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "== moto $MOTO_VERSION on $AWS_ENDPOINT_URL"
fi

# Credentials and region for the emulator; any values do, but the SDK wants some.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"

log="target/test-output.log"
mkdir -p target
set +e
# --no-fail-fast: every test binary runs, so the totals below are the whole suite's.
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often "0 passed").
passed=$(grep -E '^test result:' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
passed=$((passed + checks_passed))
failed=$((failed + checks_failed))
echo
echo "tests: $passed passed, $failed failed"
if [ "$checks_failed" -ne 0 ] && [ "$status" -eq 0 ]; then
  status=1
fi
exit "$status"
