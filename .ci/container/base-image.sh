#!/usr/bin/env bash
# A local stand-in for the Dockerfile's base image, built only when its tag is missing.
#
# There is no registry here, so python:3.11.17-slim-bookworm cannot be pulled. This builds the
# nearest thing from what the machine has, laid out the way the official image is:
#   - a Debian minbase root filesystem of the tag's suite (mmdebstrap), from the mirror that apt
#     already uses here (read from the apt sources now; no host name is written in this file),
#     with debian:*-slim's trimming (docs, man pages, locales; dpkg keeps them out afterwards)
#     and its apt/dpkg settings for containers;
#   - ca-certificates, netbase and tzdata, and the Debian packages of the shared libraries this
#     machine's CPython links against (as the official Dockerfile finds them: ldd + dpkg -S);
#   - this machine's CPython of the tag's minor version (built with --enable-shared) copied into
#     /usr/local without its site-packages, its tests, .pyc files or static library; pip from
#     its ensurepip; the python, pip, pydoc, idle and python-config links; ldconfig;
#   - ENV PATH, LANG=C.UTF-8, GPG_KEY, PYTHON_VERSION (the real one), CMD ["python3"].
# One addition belongs to the stand-in alone, never to the Dockerfile: this machine's extra CA
# certificates (from its trust store) in the image's trust store, and /etc/pip.conf pointing pip
# at that store, because pip inside `docker build` otherwise fails with CERTIFICATE_VERIFY_FAILED
# behind this machine's egress.
#
#   .ci/container/base-image.sh [TAG]   (default: the Dockerfile's FROM image)
# Knobs: STAND_IN_PYTHON (a CPython prefix; default the newest pyenv version of the tag's minor).
set -euo pipefail
cd "$(dirname "$0")/../.."

note() { echo "....  base: $*"; }
die() {
    echo "FAIL base: $*"
    exit 1
}

if [[ $# -ge 1 ]]; then
    tag=$1
else
    mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile | sort -u)
    [[ ${#bases[@]} -eq 1 ]] || die "expected one base image in the Dockerfile, found: ${bases[*]}"
    tag=${bases[0]}
fi
[[ $tag =~ ^python:(3\.[0-9]+)\.[0-9]+-slim-([a-z]+)$ ]] || die "'$tag' is not a python:X.Y.Z-slim-SUITE tag"
minor=${BASH_REMATCH[1]}
suite=${BASH_REMATCH[2]}

if docker image inspect "$tag" >/dev/null 2>&1; then
    note "$tag is present ($(docker image inspect --format '{{index .Config.Labels "org.textclf.stand-in"}}' "$tag")): reused"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || die "building the stand-in base needs root (mmdebstrap, chroot)"
started=$SECONDS

# ---- the CPython to copy -----------------------------------------------------------------------
prefix=${STAND_IN_PYTHON:-}
if [[ -z $prefix ]]; then
    pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    prefix=$(find "$pyenv_root/versions" -maxdepth 1 -name "$minor.*" 2>/dev/null | sort -V | tail -n 1)
fi
[[ -n $prefix && -x $prefix/bin/python$minor ]] || die "no CPython $minor found (set STAND_IN_PYTHON to its prefix)"
version=$("$prefix/bin/python$minor" -c 'import platform; print(platform.python_version())')
[[ $version == "$minor".* ]] || die "$prefix is Python $version, not $minor"
"$prefix/bin/python$minor" -c 'import sysconfig, sys; sys.exit(not sysconfig.get_config_var("Py_ENABLE_SHARED"))' ||
    die "$prefix was not built with --enable-shared (the official image's CPython is)"

# ---- the tools ---------------------------------------------------------------------------------
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v patchelf >/dev/null || missing+=(patchelf)
command -v strip >/dev/null || missing+=(binutils)
if [[ ${#missing[@]} -gt 0 ]]; then
    note "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- the mirror apt uses here: deb822 .sources and one-line .list files ------------------------
shopt -s nullglob
sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
shopt -u nullglob
existing=()
for file in "${sources[@]}"; do [[ -f $file ]] && existing+=("$file"); done
mapfile -t mirrors < <(awk -v suite="$suite" '
    function wanted(s) { return s ~ ("^" suite "(-updates|-security)?$") }
    function flush(    n, m, i, j, u, s) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no" && comps ~ /(^|[ \t])main([ \t]|$)/) {
            n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
            for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
                if (u[i] != "" && wanted(s[j])) print "deb " u[i] " " s[j] " main"
        }
        types = uris = suites = comps = enabled = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    FILENAME ~ /\.sources$/ {
        if ($0 ~ /^[ \t]*$/) { flush(); next }
        key = tolower($1); value = $0; sub(/^[^:]*:[ \t]*/, "", value)
        if (key == "types:") types = value
        else if (key == "uris:") uris = value
        else if (key == "suites:") suites = value
        else if (key == "components:") comps = value
        else if (key == "enabled:") enabled = value
        next
    }
    $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        for (k = i + 2; k <= NF; k++) if ($k == "main" && wanted($(i + 1))) { print "deb " $i " " $(i + 1) " main"; break }
    }
    END { flush() }' "${existing[@]}" | awk '!seen[$0]++')
[[ ${#mirrors[@]} -gt 0 ]] || die "no Debian '$suite' main source in the apt sources (${existing[*]})"
note "suite $suite from the apt sources: ${#mirrors[@]} source lines (${existing[*]})"

# ---- the Debian packages of the libraries CPython links against (as the official Dockerfile) ---
mapfile -t runtime_packages < <(
    find "$prefix" -path "$prefix/lib/python$minor/site-packages" -prune -o \
        -type f \( -perm -u+x -o -name '*.so*' \) -not -name '*tkinter*' -print0 |
        xargs -0 -r ldd 2>/dev/null |
        awk -v prefix="$prefix/" '/=>/ { so = $(NF - 1); if (index(so, prefix) == 1 || so !~ /^\//) next; print so }' |
        sort -u |
        while read -r so; do
            dpkg-query --search "$so" 2>/dev/null || dpkg-query --search "$(readlink -f "$so")" 2>/dev/null || true
        done | awk -F: '{ print $1 }' | sort -u
)
note "CPython $version from $prefix; its libraries come from: ${runtime_packages[*]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/stand-in.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root=$work/root

# debuerreotype's slim lists (what debian:*-slim drops), applied by dpkg while installing.
slim=(
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/linda/*'
    --dpkgopt='path-exclude=/usr/share/lintian/overrides/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/kde/HTML/*/*'
    --dpkgopt='path-exclude=/usr/share/gnome/help/*/*'
    --dpkgopt='path-exclude=/usr/share/omf/*/*-*.emf'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-include=/usr/share/doc/kde/HTML/C/*'
    --dpkgopt='path-include=/usr/share/gnome/help/*/C/*'
    --dpkgopt='path-include=/usr/share/locale/all_languages'
    --dpkgopt='path-include=/usr/share/locale/currency/*'
    --dpkgopt='path-include=/usr/share/locale/l10n/*'
    --dpkgopt='path-include=/usr/share/locale/languages'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-include=/usr/share/omf/*/*-C.emf'
)
include=ca-certificates,netbase,tzdata
for package in "${runtime_packages[@]}"; do include+=",$package"; done
note "mmdebstrap --variant=minbase $suite (+ $include)"
# merged-/usr the way debootstrap (and so debian:*) does it, without the usrmerge package and perl.
mmdebstrap --quiet --mode=root --variant=minbase --include="$include" "${slim[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    "$suite" "$root" "${mirrors[@]}" >"$work/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$work/mmdebstrap.log"; die "mmdebstrap failed"; }

# debuerreotype-minimizing-config: apt and dpkg settings of the official Debian images.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
echo 'force-unsafe-io' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
printf 'DPkg::Post-Invoke { %s };\nAPT::Update::Post-Invoke { %s };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
    "$clean" "$clean" >"$root/etc/apt/apt.conf.d/docker-clean"
echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
# This machine's, not the image's: Docker provides both at run time.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

# ---- CPython into /usr/local, as `make install` lays it out -------------------------------------
local_root=$root/usr/local
cpython_bin=()
for name in "2to3" "2to3-$minor" idle3 "idle$minor" pydoc3 "pydoc$minor" python3 python3-config \
    "python$minor" "python$minor-config"; do
    [[ -e $prefix/bin/$name ]] && cpython_bin+=("bin/$name")
done
# Not the site-packages of this machine (its tools) nor what the official image deletes.
tar -C "$prefix" -c --exclude="lib/python$minor/site-packages/*" --exclude='__pycache__' \
    --exclude='*.pyc' --exclude='*.pyo' --exclude='libpython*.a' \
    "${cpython_bin[@]}" include lib share | tar -C "$local_root" -x --no-same-owner
[[ -f $prefix/lib/python$minor/site-packages/README.txt ]] &&
    cp "$prefix/lib/python$minor/site-packages/README.txt" "$local_root/lib/python$minor/site-packages/"
# The prefix it was configured with, in scripts, sysconfig data, Makefile and pkg-config files.
grep -rlIF --null "$prefix" "$local_root" | xargs -0 -r sed -i "s|$prefix|/usr/local|g"
# Stripped, as the official build links with --strip-all; its run path pointed into this
# machine's prefix: the official binary has $ORIGIN/../lib, the libraries and extension modules none.
while IFS= read -r -d '' elf; do
    readelf -h "$elf" >/dev/null 2>&1 || continue
    strip --strip-all "$elf"
    if readelf -d "$elf" 2>/dev/null | grep -qE '\((RUNPATH|RPATH)\)'; then
        if [[ $elf == "$local_root/bin/"* ]]; then
            patchelf --set-rpath "\$ORIGIN/../lib" "$elf"
        else
            patchelf --remove-rpath "$elf"
        fi
    fi
done < <(find "$local_root" -type f \( -path "$local_root/bin/*" -o -name '*.so*' \) -print0)
chroot "$root" ldconfig
chroot "$root" env PYTHONDONTWRITEBYTECODE=1 "/usr/local/bin/python$minor" -m ensurepip --upgrade >"$work/ensurepip.log" 2>&1 ||
    { cat "$work/ensurepip.log"; die "ensurepip failed in the stand-in"; }
for src in idle3 pip3 pydoc3 python3 python3-config; do
    dst=${src//3/}
    [[ -s $local_root/bin/$src && ! -e $local_root/bin/$dst ]] && ln -sT "$src" "$local_root/bin/$dst"
done
find "$local_root" -depth \
    \( \( -type d -a \( -name test -o -name tests -o -name idle_test \) \) \
    -o \( -type f -a \( -name '*.pyc' -o -name '*.pyo' -o -name 'libpython*.a' \) \) \) \
    -exec rm -rf '{}' +
chroot "$root" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, readline, decimal' ||
    die "the copied CPython cannot import its extension modules in the stand-in"

# ---- the stand-in's own addition: this machine's extra CA certificates ---------------------------
extra_cas=0
if [[ -d /usr/local/share/ca-certificates ]]; then
    while IFS= read -r -d '' cert; do
        install -D -m 0644 "$cert" "$local_root/share/ca-certificates/${cert#/usr/local/share/ca-certificates/}"
        extra_cas=$((extra_cas + 1))
    done < <(find /usr/local/share/ca-certificates -type f -name '*.crt' -print0)
fi
if ((extra_cas > 0)); then
    chroot "$root" update-ca-certificates >/dev/null 2>&1
    # pip vendors its own CA bundle (certifi) and ignores the system store unless told.
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
fi

# ---- into Docker ---------------------------------------------------------------------------------
gpg_key=A035C8C19219BA821ECEA86B64E628F8D684696D # the 3.11 release manager's, as the official ENV
tar --numeric-owner -C "$root" -c --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    --exclude='./var/cache/apt/*.bin' --exclude='./var/lib/apt/lists/*' --exclude='./var/log/apt/*.log' . |
    docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV GPG_KEY=$gpg_key" \
        --change "ENV PYTHON_VERSION=$version" \
        --change "LABEL org.textclf.stand-in=\"local stand-in: Debian $suite minbase, slim, CPython $version, $extra_cas extra CA certificates\"" \
        --change 'CMD ["python3"]' \
        --message "stand-in for $tag" - "$tag" >/dev/null
note "built $tag in $((SECONDS - started)) s: $(docker image ls --format '{{.Size}}' "$tag") ($extra_cas extra CA certificates)"
