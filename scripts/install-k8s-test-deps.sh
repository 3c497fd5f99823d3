#!/usr/bin/env bash
# Builds what the end-to-end tests against a real Kubernetes API server need (run as root):
# the control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd), the node agents
# (kubelet, kube-proxy), kubectl and helm, all from the Go module proxy (no container engine, no image
# registry, no release downloads), into a fixed cache folder:
#
#   /var/tmp/kubemaker-cache/k8s/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
#                                     kube-proxy,etcd,kubectl,helm}
#
# Idempotent: a binary whose stamp file (bin/.<name>.stamp) names the pinned version is not rebuilt.
# Go's module and build caches live in /var/tmp/kubemaker-cache/go/, so a fresh clone (CI) reuses them.
# A cold build takes tens of minutes on 2 cores; a warm run only checks and prints.
#
# KUBEBUILDER_ASSETS: if set and it holds kube-apiserver and etcd (e.g. envtest's binaries), those are
# used and not built (scripts/test-apiserver.sh then runs them); kubectl is taken from there too when
# present. helm is always built.
#
# Go: the `go` on PATH, else /usr/local/go/bin/go, if it is at least MIN_GO (below). Otherwise (none, or
# too old, like Debian 12's golang package) the Go toolchain GO_FETCH_VERSION (below) is fetched from the
# Go module proxy (module golang.org/toolchain; $GOPROXY, default https://proxy.golang.org), checked
# against its go.sum hash and unpacked once into /var/tmp/kubemaker-cache/go-toolchain/go<version>/.
#
# Environment: KUBEMAKER_K8S_STEP_TIMEOUT (s, default 3600) bounds each build step,
# KUBEMAKER_K8S_FETCH_TIMEOUT (s, default 1200) each module download step.
# KUBEMAKER_GO_VERSION overrides the Go version fetched (a version without a hash pinned here is checked
# against the checksum database $GOSUMDB, default sum.golang.org, when that is reachable),
# KUBEMAKER_GO_TOOLCHAIN_DIR where it is unpacked (default /var/tmp/kubemaker-cache/go-toolchain).
#
# Sourcing this file (`. scripts/install-k8s-test-deps.sh`) only defines its settings and functions,
# e.g. to run `fetch_go_toolchain 1.26.11` alone.
set -euo pipefail

# --- pinned versions ------------------------------------------------------------------------------
K8S_VERSION=1.34.4          # k8s.io/kubernetes v$K8S_VERSION (kube-apiserver, kubectl)
K8S_STAGING_VERSION=0.34.4  # its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v$K8S_STAGING_VERSION
ETCD_VERSION=3.6.4          # go.etcd.io/etcd/server/v3; the etcd that kubernetes v1.34 is built and tested with
HELM_VERSION=3.22.0         # helm.sh/helm/v3
MIN_GO=1.26                 # helm v3.22.0's go.mod says `go 1.26.0` (k8s.io/kubernetes v1.34: go 1.24.0)
GO_FETCH_VERSION=${KUBEMAKER_GO_VERSION:-1.26.11}  # fetched when no go >= $MIN_GO is installed: newest 1.26 patch

CACHE_DIR=/var/tmp/kubemaker-cache
K8S_DIR=$CACHE_DIR/k8s
BIN_DIR=$K8S_DIR/bin
SRC_DIR=$K8S_DIR/src
STEP_TIMEOUT=${KUBEMAKER_K8S_STEP_TIMEOUT:-3600}
FETCH_TIMEOUT=${KUBEMAKER_K8S_FETCH_TIMEOUT:-1200}
GO_TOOLCHAIN_DIR=${KUBEMAKER_GO_TOOLCHAIN_DIR:-$CACHE_DIR/go-toolchain}

say() { printf '[install-k8s-test-deps] %s\n' "$*"; }
die() { printf '[install-k8s-test-deps] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Go toolchain from the module proxy ----------------------------------------------------------------
# The go.sum hashes (sum.golang.org) of golang.org/toolchain v0.0.1-go$GO_FETCH_VERSION.linux-<arch>.
go_toolchain_pinned_h1() { # version arch
    case "$1/$2" in
        1.26.11/amd64) echo 'h1:KyINmJ/FQdKRmDYGuTAAXkumyeR2DyUlSNHZj7XaLFg=' ;;
        1.26.11/arm64) echo 'h1:GFS9FmglLJxMwOSuun3qb8tBjpr8ibzOkt8tBrRLrnk=' ;;
    esac
}

go_arch() { # this machine's GOARCH
    local a
    a=$(dpkg --print-architecture 2>/dev/null || uname -m)
    case "$a" in
        amd64 | x86_64) echo amd64 ;;
        arm64 | aarch64) echo arm64 ;;
        *) die "no Go toolchain to fetch for the architecture $a (only amd64 and arm64)" ;;
    esac
}

go_version_of() { # go-command: prints its version (e.g. go1.26.8) if it runs
    [ -x "$1" ] && (cd / && GOTOOLCHAIN=local "$1" env GOVERSION) 2>/dev/null
}

go_is_recent() { # version (e.g. go1.26.8): whether it is at least $MIN_GO
    printf '%s\n%s\n' "$MIN_GO" "${1#go}" | sort -V -C
}

go_proxies() { # the proxy URLs of $GOPROXY, one a line ("direct" is skipped, "off" ends the list)
    local p list
    IFS=',|' read -r -a list <<<"${GOPROXY:-https://proxy.golang.org,direct}"
    for p in "${list[@]}"; do
        case "$p" in
            off) break ;;
            direct | '') ;;
            *) printf '%s\n' "${p%/}" ;;
        esac
    done
}

# The go.sum hash ("h1:...") of the files under $1/$2, named $2/... as in a module zip: the SHA-256 of
# the lines "<sha256 of the file>  <name>" in byte order of the names, in base64 (golang.org/x/mod dirhash).
go_dirhash() { # dir prefix
    local hex esc='' i
    hex=$(cd "$1" && find "$2" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d ' ' -f 1)
    [ "${#hex}" -eq 64 ] || return 1
    for ((i = 0; i < 64; i += 2)); do esc+="\\x${hex:i:2}"; done
    printf 'h1:%s\n' "$(printf '%b' "$esc" | base64)"
}

# The go.sum hash of module $1 at version $2 from the checksum database $GOSUMDB (through each proxy of
# $GOPROXY, then directly); prints nothing when it is off or unreachable.
go_sumdb_h1() { # module version
    local db=${GOSUMDB:-sum.golang.org} name url u h
    [ "$db" = off ] && return 0
    name=${db%% *}; name=${name%%+*}
    url=https://$name
    [[ "$db" == *' '* ]] && url=${db#* }
    local urls=()
    mapfile -t urls < <(go_proxies | sed "s|\$|/sumdb/$name|")
    for u in "${urls[@]}" "${url%/}"; do
        h=$(curl -fsS --connect-timeout 15 --max-time 30 --retry 2 --retry-delay 2 "$u/lookup/$1@$2" 2>/dev/null |
            awk -v m="$1" -v v="$2" '$1 == m && $2 == v && $3 ~ /^h1:/ { print $3; exit }') || true
        if [ -n "$h" ]; then printf '%s\n' "$h"; return 0; fi
    done
}

need_commands() { # command...: installs (apt-get) the Debian packages of that name that are missing
    local c missing=()
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing (and no apt-get to install it)"
    say "installing ${missing[*]}"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            ca-certificates "${missing[@]}"; }; then
        die "could not install ${missing[*]}"
    fi
}

go_toolchain_runs() { # goroot version: whether goroot/bin/go is go<version> for this machine
    local out
    out=$(cd / && env -u GOROOT GOTOOLCHAIN=local "$1/bin/go" version 2>/dev/null) || return 1
    [ "$out" = "go version go$2 linux/$(go_arch)" ]
}

GO_FETCH_TMP=
go_fetch_fail() { rm -rf "$GO_FETCH_TMP"; trap - EXIT; die "$@"; }

# Fetches (once) the Go toolchain go$1 for this machine from the module proxy (module golang.org/toolchain
# at v0.0.1-go$1.linux-<arch>), checks its hash, unpacks it into $GO_TOOLCHAIN_DIR/go$1 and sets
# GO_FETCHED_ROOT to that folder (a GOROOT: bin/go is the go command). Does nothing when it is there.
fetch_go_toolchain() { # version
    local ver=$1 arch modver dest zip root p from='' want got src
    arch=$(go_arch)
    modver=v0.0.1-go$ver.linux-$arch
    dest=$GO_TOOLCHAIN_DIR/go$ver
    GO_FETCHED_ROOT=$dest
    if [ -f "$dest/.kubemaker-verified" ] && go_toolchain_runs "$dest" "$ver"; then
        say "go$ver: present in $dest"
        return 0
    fi
    need_commands curl unzip
    local proxies=()
    mapfile -t proxies < <(go_proxies)
    [ "${#proxies[@]}" -gt 0 ] || die "GOPROXY=${GOPROXY:-} names no proxy to fetch golang.org/toolchain from"
    mkdir -p "$GO_TOOLCHAIN_DIR"
    GO_FETCH_TMP=$(mktemp -d "$GO_TOOLCHAIN_DIR/.fetch-go$ver.XXXXXX")
    trap 'rm -rf "$GO_FETCH_TMP"' EXIT
    zip=$GO_FETCH_TMP/toolchain.zip
    for p in "${proxies[@]}"; do
        say "go$ver: fetching $p/golang.org/toolchain/@v/$modver.zip (at most ${FETCH_TIMEOUT} s)"
        if curl -fsSL --connect-timeout 30 --max-time "$FETCH_TIMEOUT" --retry 3 --retry-delay 5 \
                --retry-connrefused --retry-max-time "$FETCH_TIMEOUT" -o "$zip" \
                "$p/golang.org/toolchain/@v/$modver.zip"; then
            from=$p
            break
        fi
    done
    [ -n "$from" ] || go_fetch_fail "could not fetch golang.org/toolchain@$modver (GOPROXY=${GOPROXY:-https://proxy.golang.org}); set KUBEMAKER_GO_VERSION to a version the proxy has (${proxies[0]}/golang.org/toolchain/@v/list) or install Go >= $MIN_GO"
    unzip -q "$zip" -d "$GO_FETCH_TMP/x" </dev/null || go_fetch_fail "$from/golang.org/toolchain/@v/$modver.zip is not a valid zip"
    rm -f "$zip"
    root=$GO_FETCH_TMP/x/golang.org/toolchain@$modver
    [ -f "$root/bin/go" ] || go_fetch_fail "the zip of golang.org/toolchain@$modver holds no golang.org/toolchain@$modver/bin/go"
    got=$(go_dirhash "$GO_FETCH_TMP/x" "golang.org/toolchain@$modver") || go_fetch_fail "could not hash $root"
    want=$(go_toolchain_pinned_h1 "$ver" "$arch")
    src="pinned in install-k8s-test-deps.sh"
    if [ -z "$want" ]; then
        want=$(go_sumdb_h1 golang.org/toolchain "$modver")
        src="from the checksum database ${GOSUMDB:-sum.golang.org}"
    fi
    if [ -n "$want" ]; then
        [ "$got" = "$want" ] || go_fetch_fail "golang.org/toolchain@$modver from $from has the hash $got, not $want ($src)"
        say "  hash $got: as $src"
    else
        say "  WARNING: golang.org/toolchain@$modver not checked against the checksum database (GOSUMDB=${GOSUMDB:-sum.golang.org} off or unreachable; hash $got): only checking that it runs"
    fi
    # Zips keep no file modes: make the commands executable, as the go command does for the toolchains it fetches.
    for p in "$root/bin" "$root/pkg/tool"; do
        [ -d "$p" ] && find "$p" -type f -exec chmod 0755 {} +
    done
    go_toolchain_runs "$root" "$ver" || go_fetch_fail "$root/bin/go is not a working go$ver for linux/$arch"
    printf 'golang.org/toolchain@%s %s\nfrom %s on %s\n' "$modver" "$got" "$from" "$(date -Is)" >"$root/.kubemaker-verified"
    rm -rf "$dest"   # an incomplete copy: it had no .kubemaker-verified
    mv -T "$root" "$dest" || go_fetch_fail "could not move the toolchain to $dest"
    rm -rf "$GO_FETCH_TMP"
    trap - EXIT
    say "go$ver: $(du -sh "$dest" | cut -f1) in $dest"
}

# Sourced: only the settings and functions above.
(return 0 2>/dev/null) && return 0

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"

mkdir -p "$BIN_DIR" "$SRC_DIR" "$CACHE_DIR/go"
exec 8>>"$K8S_DIR/install.lock"
if ! flock -n 8; then
    say "another install is running; waiting (at most ${STEP_TIMEOUT} s) for $K8S_DIR/install.lock"
    flock -w "$STEP_TIMEOUT" 8 || die "could not lock $K8S_DIR/install.lock"
fi

T_START=$SECONDS
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# --- Go toolchain and its caches -------------------------------------------------------------------
export GOPATH=$CACHE_DIR/go
export GOMODCACHE=$CACHE_DIR/go/pkg/mod
export GOCACHE=$CACHE_DIR/go/build-cache
export GOTOOLCHAIN=local         # never switch to another toolchain: build with the chosen one
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -modcacherw"
unset GOBIN GOWORK GO111MODULE GOOS GOARCH || true
GO='' go_version='' prev=''
for g in "$(command -v go || true)" /usr/local/go/bin/go; do
    if [ -z "$g" ] || [ "$g" = "$prev" ] || [ ! -x "$g" ]; then continue; fi
    prev=$g
    if ! v=$(go_version_of "$g"); then
        say "$g does not run: ignoring it"
    elif go_is_recent "$v"; then
        GO=$g go_version=$v
        break
    else
        say "$g is $v; k8s.io/kubernetes v$K8S_VERSION and helm v$HELM_VERSION need go >= $MIN_GO: ignoring it"
    fi
done
if [ -z "$GO" ]; then
    go_is_recent "go$GO_FETCH_VERSION" || die "KUBEMAKER_GO_VERSION=$GO_FETCH_VERSION is older than $MIN_GO"
    say "no go >= $MIN_GO installed: using go$GO_FETCH_VERSION from the Go module proxy"
    fetch_go_toolchain "$GO_FETCH_VERSION"
    GO=$GO_FETCHED_ROOT/bin/go
    unset GOROOT             # it is the folder above bin/go
    export PATH=$GO_FETCHED_ROOT/bin:$PATH
    go_version=$(go_version_of "$GO") || die "$GO does not run"
fi
say "go: $GO ($go_version), GOPATH=$GOPATH, GOCACHE=$GOCACHE"

# Runs a step bounded in time, at low priority (the cores are shared).
run_bounded() {
    local limit=$1; shift
    timeout --kill-after=30 "$limit" nice -n 10 "$@" || {
        local rc=$?
        [ "$rc" -eq 124 ] && die "timed out after ${limit} s: $*"
        die "failed (exit $rc): $*"
    }
}

stamp_ok() { # name version
    [ -x "$BIN_DIR/$1" ] && [ -f "$BIN_DIR/.$1.stamp" ] && [ "$(head -n 1 "$BIN_DIR/.$1.stamp")" = "$1 $2" ]
}
write_stamp() { # name version
    printf '%s %s\n%s built with %s\n' "$1" "$2" "$(date -Is)" "$go_version" >"$BIN_DIR/.$1.stamp"
}
install_bin() { # built-file name version
    chmod 0755 "$1"
    mv -f "$1" "$BIN_DIR/$2"
    write_stamp "$2" "$3"
    say "$2 v$3 -> $BIN_DIR/$2 ($(du -h "$BIN_DIR/$2" | cut -f1))"
}

# The go.mod of module $1@$2 (from the module proxy, cached).
module_gomod() {
    local json
    json=$(run_bounded "$FETCH_TIMEOUT" "$GO" mod download -json "$1@$2") || exit 1
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n 1
}

# Copies the `go` and `godebug` directives of a dependency's go.mod into the wrapper module (cwd),
# so that the binary gets the same language version and GODEBUG defaults as an upstream build.
copy_go_directives() {
    local mod=$1 gov d
    gov=$(awk '$1 == "go" && NF == 2 { print $2; exit }' "$mod")
    [ -n "$gov" ] && "$GO" mod edit -go="$gov"
    for d in $(awk '
        $1 == "godebug" && $2 == "(" { inblock = 1; next }
        inblock && $1 == ")"        { inblock = 0; next }
        inblock && NF >= 1          { print $1; next }
        $1 == "godebug" && NF >= 2  { print $2 }' "$mod"); do
        "$GO" mod edit -godebug="$d"
    done
}

# Creates (once) a wrapper module in $SRC_DIR/$1 that requires the given packages at their versions.
# $2 is the go.mod of the upstream module; "$@" after it are go get arguments.
# A module whose own go.mod has local `replace` directives (k8s.io/kubernetes, etcd) cannot be built
# with `go install pkg@version`: the wrapper is the main module, so its replaces are the ones that count.
prepare_wrapper() {
    local name=$1 dir=$SRC_DIR/$1 upstream_mod=$2; shift 2
    # .ready names what was resolved: a wrapper prepared for fewer packages is prepared again.
    if [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$*" ]; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    (
        cd "$dir"
        "$GO" mod init "local.invalid/kubemaker-$name" 2>&1 | grep -v "^go: creating new go.mod" || true
        [ -f go.mod ] || exit 1
        copy_go_directives "$upstream_mod"
        if [ -n "${WRAPPER_REPLACES:-}" ]; then
            local r args=()
            for r in $WRAPPER_REPLACES; do args+=("-replace=$r"); done
            "$GO" mod edit "${args[@]}"
        fi
        say "  resolving $* (module downloads, log $dir/go-get.log; at most ${FETCH_TIMEOUT} s)"
        if ! timeout --kill-after=30 "$FETCH_TIMEOUT" nice -n 10 "$GO" get "$@" >go-get.log 2>&1; then
            tail -n 30 go-get.log >&2
            exit 1
        fi
        say "  $(grep -c '^go: downloading' go-get.log || true) modules downloaded"
    ) || die "could not prepare the wrapper module $dir (log above)"
    printf '%s\n' "$*" >"$dir/.ready"
}

# --- KUBEBUILDER_ASSETS ----------------------------------------------------------------------------
use_assets=0
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
        use_assets=1
        say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS holds kube-apiserver and etcd: using those, not building them"
        say "  $("$KUBEBUILDER_ASSETS/kube-apiserver" --version 2>&1 | head -n 1); etcd $("$KUBEBUILDER_ASSETS/etcd" --version 2>&1 | sed -n 's/^etcd Version: //p')"
    else
        say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd: ignoring it"
    fi
fi
need_apiserver=1; need_kubectl=1
[ "$use_assets" -eq 1 ] && need_apiserver=0
[ "$use_assets" -eq 1 ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ] && need_kubectl=0 && say "kubectl: using $KUBEBUILDER_ASSETS/kubectl"

# --- the Kubernetes commands: control plane, node agents, kubectl --------------------------------------------------------------------
# The k8s.io/kubernetes module replaces its staging modules (k8s.io/api, ...) with ./staging/src/...;
# the wrapper replaces each of them with its published version v0.<minor>.<patch> instead.
k8s_ldflags() {
    local minor=${K8S_VERSION#*.}; minor=${minor%%.*}
    local date p ld="-s -w"
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    printf '%s\n' "$ld"
}

build_k8s_cmd() { # name
    local t0=$SECONDS
    say "$1: building k8s.io/kubernetes/cmd/$1 v$K8S_VERSION (CGO_ENABLED=0, nice 10, at most ${STEP_TIMEOUT} s)"
    (
        cd "$SRC_DIR/kubernetes-v$K8S_VERSION"
        run_bounded "$STEP_TIMEOUT" "$GO" build -trimpath -ldflags "$(k8s_ldflags)" \
            -o "$BIN_DIR/$1.partial" "k8s.io/kubernetes/cmd/$1"
    ) || exit 1
    install_bin "$BIN_DIR/$1.partial" "$1" "$K8S_VERSION"
    say "$1: built in $(elapsed "$t0")"
}

# kube-apiserver comes from KUBEBUILDER_ASSETS when given; the rest of the control plane and the node
# agents (scripts/local-k8s.sh runs them) are always built.
K8S_CMDS=(kube-controller-manager kube-scheduler kubelet kube-proxy)
[ "$need_apiserver" -eq 1 ] && K8S_CMDS=(kube-apiserver "${K8S_CMDS[@]}")
[ "$need_kubectl" -eq 1 ] && K8S_CMDS+=(kubectl)
k8s_todo=()
for c in "${K8S_CMDS[@]}"; do
    if stamp_ok "$c" "$K8S_VERSION"; then say "$c v$K8S_VERSION: present"; else k8s_todo+=("$c"); fi
done
if [ "${#k8s_todo[@]}" -gt 0 ]; then
    t0=$SECONDS
    say "k8s.io/kubernetes v$K8S_VERSION: preparing the wrapper module in $SRC_DIR/kubernetes-v$K8S_VERSION"
    k8s_mod=$(module_gomod k8s.io/kubernetes "v$K8S_VERSION")
    [ -f "$k8s_mod" ] || die "no go.mod for k8s.io/kubernetes@v$K8S_VERSION"
    # Every local replace must be a staging module; anything else would need the source tree.
    local_replaces=$(awk '
        $1 == "replace" && $2 == "(" { inblock = 1; next }
        inblock && $1 == ")"         { inblock = 0; next }
        inblock && $2 == "=>"        { print $1, $3; next }
        $1 == "replace" && $3 == "=>" { print $2, $4 }' "$k8s_mod" | awk '$2 ~ /^\.\.?\//')
    WRAPPER_REPLACES=""
    while read -r m target; do
        [ -n "$m" ] || continue
        case "$target" in
            ./staging/src/"$m") WRAPPER_REPLACES+=" $m=$m@v$K8S_STAGING_VERSION" ;;
            *) die "k8s.io/kubernetes v$K8S_VERSION replaces $m with $target, which is not a published staging module" ;;
        esac
    done <<<"$local_replaces"
    [ -n "$WRAPPER_REPLACES" ] || die "found no staging replaces in $k8s_mod"
    say "  $(wc -w <<<"$WRAPPER_REPLACES") staging modules pinned at v$K8S_STAGING_VERSION"
    get_args=()
    for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
        get_args+=("k8s.io/kubernetes/cmd/$c@v$K8S_VERSION")
    done
    prepare_wrapper "kubernetes-v$K8S_VERSION" "$k8s_mod" "${get_args[@]}"
    unset WRAPPER_REPLACES
    say "k8s.io/kubernetes v$K8S_VERSION: wrapper ready after $(elapsed "$t0")"
    for c in "${k8s_todo[@]}"; do build_k8s_cmd "$c"; done
fi

# --- etcd --------------------------------------------------------------------------------------------
if [ "$use_assets" -eq 0 ]; then
    if stamp_ok etcd "$ETCD_VERSION"; then
        say "etcd v$ETCD_VERSION: present"
    else
        t0=$SECONDS
        say "etcd v$ETCD_VERSION: preparing the wrapper module in $SRC_DIR/etcd-v$ETCD_VERSION"
        etcd_mod=$(module_gomod go.etcd.io/etcd/server/v3 "v$ETCD_VERSION")
        [ -f "$etcd_mod" ] || die "no go.mod for go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
        prepare_wrapper "etcd-v$ETCD_VERSION" "$etcd_mod" "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
        say "etcd: building go.etcd.io/etcd/server/v3 v$ETCD_VERSION (CGO_ENABLED=0, nice 10, at most ${STEP_TIMEOUT} s)"
        (
            cd "$SRC_DIR/etcd-v$ETCD_VERSION"
            run_bounded "$STEP_TIMEOUT" "$GO" build -trimpath -ldflags "-s -w" \
                -o "$BIN_DIR/etcd.partial" go.etcd.io/etcd/server/v3
        ) || exit 1
        install_bin "$BIN_DIR/etcd.partial" etcd "$ETCD_VERSION"
        say "etcd: built in $(elapsed "$t0")"
    fi
fi

# --- helm --------------------------------------------------------------------------------------------
if stamp_ok helm "$HELM_VERSION"; then
    say "helm v$HELM_VERSION: present"
else
    t0=$SECONDS
    say "helm: go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION (CGO_ENABLED=0, nice 10, at most ${STEP_TIMEOUT} s)"
    helm_gobin=$(mktemp -d "$K8S_DIR/helm-gobin.XXXXXX")
    # The same version stamps as helm's Makefile: `helm version`, and the default Kubernetes version
    # that `helm lint`/`helm template` assume without a cluster, taken from helm's own client-go.
    helm_mod=$(module_gomod helm.sh/helm/v3 "v$HELM_VERSION")
    cgo_ver=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$helm_mod")   # e.g. v0.34.1
    helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    if [[ "$cgo_ver" =~ ^v0\.([0-9]+)\. ]]; then
        helm_ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${BASH_REMATCH[1]}"
        helm_ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${BASH_REMATCH[1]}"
    fi
    if ! GOBIN=$helm_gobin timeout --kill-after=30 "$STEP_TIMEOUT" nice -n 10 "$GO" install -trimpath \
            -ldflags "$helm_ld" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >"$K8S_DIR/helm-install.log" 2>&1; then
        tail -n 30 "$K8S_DIR/helm-install.log" >&2
        rm -rf "$helm_gobin"
        die "go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION failed or timed out (log above)"
    fi
    say "  $(grep -c '^go: downloading' "$K8S_DIR/helm-install.log" || true) modules downloaded"
    install_bin "$helm_gobin/helm" helm "$HELM_VERSION"
    rm -rf "$helm_gobin"
    say "helm: built in $(elapsed "$t0")"
fi

# --- check and report ----------------------------------------------------------------------------------
apiserver_bin=$BIN_DIR/kube-apiserver; etcd_bin=$BIN_DIR/etcd; kubectl_bin=$BIN_DIR/kubectl
[ "$use_assets" -eq 1 ] && apiserver_bin=$KUBEBUILDER_ASSETS/kube-apiserver && etcd_bin=$KUBEBUILDER_ASSETS/etcd
[ "$need_kubectl" -eq 0 ] && kubectl_bin=$KUBEBUILDER_ASSETS/kubectl
say "kube-apiserver: $(timeout 30 "$apiserver_bin" --version 2>&1 | head -n 1) ($apiserver_bin)"
say "etcd:           $(timeout 30 "$etcd_bin" --version 2>&1 | head -n 1) ($etcd_bin)"
say "kubectl:        $(timeout 30 "$kubectl_bin" version --client 2>&1 | head -n 1) ($kubectl_bin)"
say "helm:           $(timeout 30 "$BIN_DIR/helm" version --short 2>&1 | head -n 1) ($BIN_DIR/helm)"
for c in kube-controller-manager kube-scheduler kubelet kube-proxy; do
    say "$(printf '%-15s' "$c:") $(timeout 30 "$BIN_DIR/$c" --version 2>&1 | head -n 1) ($BIN_DIR/$c)"
done
for d in "$GOMODCACHE" "$GOCACHE" "$BIN_DIR"; do
    [ -d "$d" ] && say "disk: $(du -sh "$d" 2>/dev/null | cut -f1) in $d"
done
say "done in $(elapsed "$T_START")"
