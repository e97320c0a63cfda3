#!/usr/bin/env bash
# Check the non-Python things the pipeline needs; install them with apt-get when running as root,
# otherwise print the exact command and fail.
#   java                  pycocoevalcap's PTB tokenizer and METEOR (and SPICE)
#   espeak-ng, flite      speech synthesis for the tts-speech corpus (and phonemes for synthetic lips)
#   pocketsphinx-testdata real recordings: the out-of-domain speech test set
#   librsvg2-bin          rsvg-convert, to rasterise the openclipart drawings
#   openclipart-svg       the openclipart drawings (a real-world caption test set)
# With --image-test, also the tools of `make image-test` (scripts/image_test.py), which CI runs:
#   buildah               builds and runs the Dockerfile without a daemon
#   debootstrap           makes the Debian 12 stand-in base image
#   acl                   setfacl/getfacl: the image's user writes the mounted clone, the invoker keeps using it
# Always, for the tests only (not in the Docker image, which runs the pipeline):
#   chromium              headless browser: the report's layout, links and images (tests/test_smoke_all_papers.py)
set -euo pipefail
packages=(default-jre-headless espeak-ng flite pocketsphinx-testdata librsvg2-bin openclipart-svg)
image_test_packages=(buildah debootstrap acl)
test_packages=(chromium)
if [ "${1:-}" = --image-test ]; then
  packages+=("${image_test_packages[@]}")
fi
missing=()
for pkg in "${packages[@]}" "${test_packages[@]}"; do
  if [ "$pkg" = default-jre-headless ]; then
    command -v java >/dev/null 2>&1 || missing+=("$pkg")
  elif ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system dependencies: all present (java: $(java -version 2>&1 | head -n1))"
  exit 0
fi
cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system dependencies: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive bash -c "$cmd"
else
  echo "missing system dependencies: ${missing[*]}" >&2
  echo "install them with:  sudo bash -c '$cmd'" >&2
  echo "(java can be any JRE >= 8; on macOS: brew install openjdk)" >&2
  exit 1
fi
