#!/usr/bin/env bash
# The container image without Docker: k8s/Dockerfile's two stages, done the
# way Docker would as far as a chroot can. Each stage starts from a Debian 12
# minimal root (debootstrap --variant=minbase, cached as a tarball) and gets
# the apt-get install package list PARSED from its RUN line, installed exactly
# so (a wrong package name fails here, not in a user's docker build). The
# build stage gets the build context (the working tree less
# k8s/Dockerfile.dockerignore) at its COPY destination and runs its other RUN
# lines as written (cmake, the build); the runtime stage gets the built binary
# where its COPY --from puts it. Then, as the runtime stage's USER (65532) on a
# root remounted read-only (the StatefulSet's readOnlyRootFilesystem): no
# library missing (ldd), `ukko --version` as the tree's own ukko says, and
# `ukko run` with a small config whose /alive answers 200 and which stops with
# exit 0 on SIGTERM. Root only (chroot, mounts); SKIPPED without root,
# debootstrap or Debian's mirror. Cache: ${XDG_CACHE_HOME:-~/.cache}/ukko (the
# root tarball, apt's lists and packages). Usage: image_test.sh path/to/ukko
set -euo pipefail
ukko=$(realpath "$1")
cd "$(dirname "$0")/../.."
repo=$PWD
skip() { echo "SKIPPED: $*"; exit 0; }
fail() { echo "FAIL: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || skip "the image test needs root (chroot and mounts)"
command -v debootstrap > /dev/null || skip "debootstrap is not installed (apt-get install debootstrap)"
command -v curl > /dev/null || skip "curl is not installed (apt-get install curl)"

# --- the two stages, read from the Dockerfile --------------------------------
stage=$(python3 - k8s/Dockerfile << 'EOF'
import base64, json, re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
stages, cur = [], None
for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "FROM":
        cur = {"from": rest.split()[0], "packages": [], "copy": [], "context": [], "runs": [],
               "user": "", "entrypoint": [], "cmd": []}
        stages.append(cur)
    elif word == "RUN" and "apt-get" in rest:
        for cmd in re.split(r"&&|;|\|\|", rest):
            toks = shlex.split(cmd)
            if len(toks) > 1 and toks[0] == "apt-get" and "install" in toks:
                cur["packages"] += [t for t in toks[toks.index("install") + 1:] if not t.startswith("-")]
    elif word == "RUN":
        cur["runs"].append(rest)
    elif word == "COPY":
        toks = rest.split()
        src, dst = [t for t in toks if not t.startswith("--")]
        cur["copy" if any(t.startswith("--from=") for t in toks) else "context"].append((src, dst))
    elif word == "USER":
        cur["user"] = rest.strip()
    elif word in ("ENTRYPOINT", "CMD"):
        cur[word.lower()] = json.loads(rest)
if len(stages) != 2:
    sys.exit(f"k8s/Dockerfile has {len(stages)} stages; this test knows a build and a runtime stage")
bs, rt = stages
print("build_from", bs["from"])
print("build_packages", " ".join(bs["packages"]))
for src, dst in bs["context"]:
    print("build_context", src, dst)
for r in bs["runs"]:
    print("build_run", base64.b64encode(r.encode()).decode())
print("from", rt["from"])
print("packages", " ".join(rt["packages"]))
for src, dst in rt["copy"]:
    print("copy", src, dst)
print("user", rt["user"])
print("entrypoint", " ".join(rt["entrypoint"]))
print("cmd", " ".join(rt["cmd"]))
EOF
) || fail "cannot read k8s/Dockerfile's stages"
field() { awk -v k="$1" '$1 == k {sub($1 " ", ""); print; exit}' <<< "$stage"; }
from=$(field from)
read -r -a packages <<< "$(field packages)"
src=$(awk '$1 == "copy" && $2 ~ /\/ukko$/ {print $2; exit}' <<< "$stage")
dest=$(awk '$1 == "copy" && $2 ~ /\/ukko$/ {print $3; exit}' <<< "$stage")
build_from=$(field build_from)
read -r -a build_packages <<< "$(field build_packages)"
context=$(awk '$1 == "build_context" && $2 == "." {print $3; exit}' <<< "$stage")
mapfile -t build_runs < <(awk '$1 == "build_run" {print $2}' <<< "$stage")
user=$(field user)
entrypoint=$(field entrypoint)
[[ $build_from == debian:12* && $from == debian:12* ]] ||
  fail "the stages are FROM $build_from and $from; this test makes Debian 12 roots (update it with the Dockerfile)"
((${#build_packages[@]} > 0 && ${#build_runs[@]} > 0)) || fail "the build stage has no apt-get install list or no build RUN"
[[ -n $context ]] || fail "the build stage has no COPY . <dir> of the build context"
((${#packages[@]} > 0)) || fail "no apt-get install package list found in k8s/Dockerfile's runtime stage"
[[ -n $dest ]] || fail "no COPY --from of the ukko binary in k8s/Dockerfile's runtime stage"
[[ $user =~ ^([0-9]+):([0-9]+)$ ]] || fail "the runtime stage's USER is '$user'; want a numeric uid:gid"
uid=${BASH_REMATCH[1]}
gid=${BASH_REMATCH[2]}
[[ $entrypoint == "$dest" ]] || fail "ENTRYPOINT is '$entrypoint' but the binary is copied to $dest"
echo "build stage: FROM $build_from; ${#build_packages[@]} packages; context at $context; ${#build_runs[@]} RUN(s)"
echo "runtime stage: FROM $from; ${#packages[@]} packages: ${packages[*]}; $src at $dest; user $uid:$gid"

# --- the cached Debian 12 minimal root -------------------------------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ukko
tarball=$cache/debian12-minbase.tar
sources=/etc/apt/sources.list.d/debian.sources
[[ -f $sources ]] || sources=/etc/apt/sources.list
mirror=$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' "$sources" 2> /dev/null || true)
[[ -n $mirror ]] || skip "no Debian mirror in $sources to debootstrap from"
mkdir -p "$cache/image-apt/lists/partial" "$cache/image-apt/archives/partial"

tmp=$(mktemp -d /var/tmp/ukko-image-test.XXXXXX)
root=$tmp/root
node_pid=
cleanup() {
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2> /dev/null; then
    kill -KILL "$node_pid" 2> /dev/null || true
    wait "$node_pid" 2> /dev/null || true
  fi
  # Every mount under the temp dir, deepest first; the tree is removed only
  # when none is left (a bind of /dev must never be emptied).
  local m left
  for _ in 1 2 3; do
    while read -r m; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done \
      < <(awk -v t="$tmp" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r)
  done
  left=$(awk -v t="$tmp" 'index($2, t) == 1' /proc/self/mounts)
  if [[ -n $left ]]; then
    echo "image_test: still mounted, $tmp left in place: $left"
  else
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT

if [[ ! -f $tarball ]]; then
  echo "image_test: making the Debian 12 minimal root with debootstrap (once, a few minutes)"
  if ! debootstrap --variant=minbase bookworm "$tmp/boot" "$mirror" > "$tmp/debootstrap.log" 2>&1; then
    skip "debootstrap bookworm from $mirror failed (no network to the mirror?): $(tail -n 2 "$tmp/debootstrap.log" | tr '\n' ' ')"
  fi
  tar -C "$tmp/boot" -cf "$tarball.tmp.$$" . && mv "$tarball.tmp.$$" "$tarball"
  rm -rf --one-file-system "${tmp:?}/boot"
fi
# A stage's root, as FROM gives it: the minimal root with the host's apt
# sources and resolver, /dev, /proc, and apt's lists and packages from the cache.
make_root() {
  local r=$1
  mkdir -p "$r"
  tar -C "$r" -xf "$tarball"
  rm -f "$r/etc/apt/sources.list"
  cp "$sources" "$r/etc/apt/sources.list.d/"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  mount_pseudo "$r"
  mount --bind "$cache/image-apt/lists" "$r/var/lib/apt/lists"
  mount --bind "$cache/image-apt/archives" "$r/var/cache/apt/archives"
}
mount_pseudo() { mount --bind /dev "$1/dev" && mount -t proc proc "$1/proc"; }
in_root() { # in_root ROOT COMMAND...
  local r=$1
  shift
  chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root DEBIAN_FRONTEND=noninteractive "$@"
}
# RUN apt-get update && apt-get install ...: the parsed list, exactly.
install_packages() { # install_packages ROOT STAGE PACKAGE...
  local r=$1 what=$2 p
  shift 2
  if ! in_root "$r" apt-get update -qq > "$tmp/apt-update.log" 2>&1; then
    if ! compgen -G "$cache/image-apt/lists/*Packages*" > /dev/null; then
      skip "apt-get update in the root failed (no network to Debian's mirror?): $(tail -n 2 "$tmp/apt-update.log" | tr '\n' ' ')"
    fi
    echo "image_test: apt-get update failed; going on with the cached package lists"
  fi
  for p in "$@"; do
    in_root "$r" apt-cache show --no-all-versions "$p" > /dev/null 2>&1 ||
      fail "k8s/Dockerfile's $what stage installs '$p', which Debian 12 does not have (apt-cache show $p)"
  done
  if ! in_root "$r" apt-get install -y -qq --no-install-recommends "$@" > "$tmp/apt-install.log" 2>&1; then
    fail "apt-get install of the $what stage's packages failed: $(tail -n 5 "$tmp/apt-install.log")"
  fi
}

# --- the build stage ---------------------------------------------------------
broot=$tmp/build
make_root "$broot"
install_packages "$broot" build "${build_packages[@]}"
# COPY . <context>: the working tree less what the .dockerignore leaves out.
excludes=()
while read -r pat; do
  [[ -z $pat || $pat == \#* ]] && continue
  if [[ $pat == '**/'* ]]; then excludes+=(--no-anchored "--exclude=${pat#'**/'}"); else excludes+=(--anchored "--exclude=./$pat"); fi
done < k8s/Dockerfile.dockerignore
mkdir -p "$broot$context"
tar -C "$repo" "${excludes[@]}" -cf - . | tar -C "$broot$context" -xf -
for r in "${build_runs[@]}"; do
  cmd=$(base64 -d <<< "$r")
  if ! in_root "$broot" nice -n 10 sh -c "$cmd" > "$tmp/build.log" 2>&1; then
    fail "the build stage's RUN $cmd failed: $(grep -m 5 -i error "$tmp/build.log"; tail -n 5 "$tmp/build.log")"
  fi
done
[[ -x $broot$src ]] || fail "the build stage made no $src"
echo "build stage: built $src"

# --- the runtime stage -------------------------------------------------------
make_root "$root"
install_packages "$root" runtime "${packages[@]}"
echo "installed: ${packages[*]}"

# --- COPY --from=build /build/ukko <dest> -----------------------------------
install -D -m 0755 "$broot$src" "$root$dest"

missing=$(in_root "$root" ldd "$dest" | grep 'not found' || true)
[[ -z $missing ]] || fail "in the image, $dest lacks libraries (add their packages to the runtime stage): $missing"
echo "ldd: every library of $dest is in the image"

# --- as USER uid:gid on a read-only root -----------------------------------
# Docker's RUN rm -rf /var/lib/apt/lists/* has no part here: the lists are
# a bind of the cache, unmounted now with everything else, before the root
# is bound read-only onto itself and /dev and /proc are mounted again on top.
for m in var/cache/apt/archives var/lib/apt/lists proc dev; do umount "$root/$m"; done
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount_pseudo "$root"
as_user() { in_root "$root" setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs "$@"; }
who=$(as_user id -u)
[[ $who == "$uid" ]] || fail "setpriv ran as uid $who, not $uid"
version=$(as_user "$dest" --version) || fail "ukko --version failed in the image as $uid"
host_version=$("$ukko" --version)
[[ $version == "$host_version" ]] || fail "ukko --version in the image says '$version', outside '$host_version'"
echo "ukko --version as $uid: $version"

# A small config in a directory only root could have made (the ConfigMap's
# mount); the management port is a free one of the host's loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/config"
printf '{"log": {"format": "text"}, "management": {"hostname": "127.0.0.1", "port": %s}}\n' "$port" \
  > "$tmp/config/ukko.json"
mount --bind "$tmp/config" "$root/mnt"
# chroot, env and setpriv exec each other: $! is the node's own pid.
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin setpriv --reuid="$uid" --regid="$gid" --clear-groups \
  --no-new-privs "$dest" run --config /mnt/ukko.json > "$tmp/node.log" 2>&1 &
node_pid=$!
deadline=$((SECONDS + 30))
code=
until [[ $code == 200 ]]; do
  if ! kill -0 "$node_pid" 2> /dev/null; then
    fail "ukko run exited in the image before /alive answered: $(tail -n 5 "$tmp/node.log")"
  fi
  ((SECONDS < deadline)) || fail "GET /alive on 127.0.0.1:$port never answered 200 within 30 s (last: ${code:-none}): $(tail -n 5 "$tmp/node.log")"
  sleep 0.2
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/alive" || true)
done
runs_as=$(awk '/^Uid:/ {print $2}' "/proc/$node_pid/status")
[[ $runs_as == "$uid" ]] || fail "the node runs as uid $runs_as, not $uid"
echo "ukko run as $uid on a read-only root: GET /alive 200 on 127.0.0.1:$port"
kill -TERM "$node_pid"
deadline=$((SECONDS + 30))
while kill -0 "$node_pid" 2> /dev/null; do
  ((SECONDS < deadline)) || fail "ukko run did not stop within 30 s of SIGTERM: $(tail -n 5 "$tmp/node.log")"
  sleep 0.2
done
rc=0
wait "$node_pid" || rc=$?
node_pid=
[[ $rc == 0 ]] || fail "ukko run exited $rc after SIGTERM, not 0: $(tail -n 5 "$tmp/node.log")"
echo "stopped on SIGTERM with exit 0"
echo "image OK ($repo/k8s/Dockerfile's build and runtime stages)"
