#!/usr/bin/env bash
# Fuzzing of the parsers that read what a peer or a user sends (fuzz/, cargo-fuzz and libFuzzer on
# the nightly toolchain):
#   remote_frame      the remote TLS stream decoder (wire::frame)
#   xml_element       the owned XML parser, with a write-and-reparse round trip (wire::xml)
#   ipc_message       the libqb IPC decoder of the local proxy, both header layouts (wire::ipc)
#   cib_status        the CIB status reader (cib::status)
#   remote_node_spec  RemoteNode manifests: YAML, validation, rendering (cib::spec, cib::desired)
#
#   scripts/fuzz.sh smoke [SECONDS]          every target for SECONDS (default 60): what .ci/run does
#   scripts/fuzz.sh run TARGET [SECONDS]     one target for SECONDS (default 1800, the long run)
#   scripts/fuzz.sh list                     the targets
#
# The corpus of each target grows in /var/tmp/kubemaker-cache/fuzz/corpus/TARGET (seeded from the
# repository's fixtures), so each run starts where the last stopped. A crash leaves its input in
# fuzz/artifacts/TARGET/ and fails the command; turn it into a regression test before fixing it.
# Each run prints libFuzzer's last status line (executions, coverage) and a summary line.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=/var/tmp/kubemaker-cache/fuzz
export CARGO_TARGET_DIR=${KUBEMAKER_FUZZ_TARGET_DIR:-$CACHE/target}
# cargo-fuzz as scripts/install-test-deps.sh builds it (or one on PATH already).
export PATH="$PATH:/var/tmp/kubemaker-cache/cargo-fuzz-0.13.2/bin"
TARGETS=(remote_frame xml_element ipc_message cib_status remote_node_spec)
# libFuzzer's own limits: per-input time and memory, longest input.
FUZZ_OPTS=(-timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1)

say() { printf '[fuzz] %s\n' "$*" >&2; }
die() { printf '[fuzz] ERROR: %s\n' "$*" >&2; exit 1; }

need_tools() {
    cargo +nightly --version >/dev/null 2>&1 ||
        die "no nightly toolchain (rustup toolchain install nightly --profile minimal)"
    cargo fuzz --version >/dev/null 2>&1 || die "no cargo-fuzz (scripts/install-test-deps.sh builds it)"
}

# Seeds from the repository: CIBs, manifests, and one well-formed message of each binary format.
seed() {
    local target=$1 dir=$CACHE/corpus/$1
    mkdir -p "$dir"
    case $target in
        xml_element | cib_status)
            find "$REPO/tests/golden/cib" -name '*.cib.xml' -exec cp -n {} "$dir/" \; ;;
        remote_node_spec)
            cp -n "$REPO"/examples/remotenode-*.yaml "$dir/" ;;
        remote_frame)
            python3 - "$dir/seed-register" <<'PY'
import struct, sys
xml = b'<lrmd_command lrmd_op="register" lrmd_remote_msg_type="request" lrmd_remote_msg_id="1" lrmd_protocol_version="1.1"/>\0'
header = struct.pack('<IIQQIIII', 0xBADADBBD, 1, 1, 0, 40 + len(xml), 40, 0, len(xml))
open(sys.argv[1], 'wb').write(b'\x07' + header + xml)  # first byte: the chunk size
PY
            ;;
        ipc_message)
            python3 - "$dir/seed-cib-query" <<'PY'
import struct, sys
xml = b'<cib_command t="cib" cib_op="cib_query" cib_callid="2" cib_callopt="4096"/>\0'
old = struct.pack('<iiiiiiIIIB3x', 1, 0, 40 + len(xml), 0, 0, 0, len(xml), 0, 0, 1)
new = struct.pack('<iiiiiiIIBxHI', 2, 0, 40 + len(xml), 0, 0, 0, len(xml), 0, 1, 0, 0)
open(sys.argv[1], 'wb').write(b'\xff' + old + xml + b'\xff' + new + xml)  # first byte: separator
PY
            ;;
        *) die "unknown target '$target' (scripts/fuzz.sh list)" ;;
    esac
}

build() {
    say "building the targets (cargo +nightly fuzz build -O; CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO/fuzz" && cargo +nightly fuzz build -O) >&2 || die "cargo fuzz build failed"
}

run_one() {
    local target=$1 seconds=$2 log rc=0 t0=$SECONDS
    seed "$target"
    log=$(mktemp)
    say "$target: ${seconds} s"
    (cd "$REPO/fuzz" && cargo +nightly fuzz run -O "$target" "$CACHE/corpus/$target" -- \
        -max_total_time="$seconds" "${FUZZ_OPTS[@]}") >"$log" 2>&1 || rc=$?
    # The last status line (#N ... cov: ... exec/s: ...) and the final stats.
    grep -E '^#[0-9]+' "$log" | tail -n 1 >&2 || true
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" >&2 || true
    local execs corpus
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "$CACHE/corpus/$target" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" >&2 || tail -n 40 "$log" >&2
        rm -f "$log"
        say "$target: FAILED after $((SECONDS - t0)) s (the input is in fuzz/artifacts/$target/)"
        return 1
    fi
    rm -f "$log"
    say "$target: ok, ${execs:-?} executions in $((SECONDS - t0)) s, corpus $corpus inputs, no crash"
}

case "${1:-}" in
    list) printf '%s\n' "${TARGETS[@]}" ;;
    smoke)
        seconds=${2:-60}
        need_tools
        build
        failed=()
        for t in "${TARGETS[@]}"; do run_one "$t" "$seconds" || failed+=("$t"); done
        [ "${#failed[@]}" -eq 0 ] || die "crashes in: ${failed[*]}"
        say "all ${#TARGETS[@]} targets ran ${seconds} s each without a crash"
        ;;
    run)
        target=${2:?scripts/fuzz.sh run TARGET [SECONDS]}
        printf '%s\n' "${TARGETS[@]}" | grep -qx "$target" || die "unknown target '$target'"
        need_tools
        build
        run_one "$target" "${3:-1800}"
        ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
