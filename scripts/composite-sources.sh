#!/usr/bin/env bash
# Fetch and unpack the Debian packages that feed `clipline datasets compose`, outside the repo,
# then curate them into source folders (symbolic links, no copies) and print the options to pass.
#
#   tuxpaint-stamps-default  photo cut-outs of objects with alpha (GPL-2)        -> objects photo
#   openclipart-png          clip-art with alpha (public domain)                  -> objects clipart
#                            (its people/ folder, drawings of people              -> objects people)
#   mate-backgrounds         nature photos (GPL-2+)                               -> backgrounds photo
#
# Where: ${CLIPLINE_SOURCES_DIR:-$HOME/.cache/clipline/sources}. .deb files already in
# ${CLIPLINE_DEBS_DIR:-/tmp/debs} are used as they are; missing ones are fetched with
# `apt-get download` (no install, no root needed). Running it again only re-curates.
#
# Curation, by relative path: tuxpaint's drawings are left out (symbols/, town/, people/,
# naturalforces/, any */cartoon/ folder) and so are its *_mirror / *_flip copies of a stamp;
# openclipart's people/ is its own kind, not clip-art. compose itself skips files without a
# usable alpha channel, too small, or too large to decode, and records why in set.json.
set -euo pipefail

dest=${CLIPLINE_SOURCES_DIR:-$HOME/.cache/clipline/sources}
debs=${CLIPLINE_DEBS_DIR:-/tmp/debs}
packages=(tuxpaint-stamps-default openclipart-png mate-backgrounds)

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || true)
mkdir -p "$dest/debs"
dest=$(cd "$dest" && pwd)
if [[ -n $repo && $dest/ == "$repo"/* ]]; then
  echo "composite-sources: $dest is inside the repository; choose CLIPLINE_SOURCES_DIR elsewhere" >&2
  exit 2
fi

for pkg in "${packages[@]}"; do
  if [[ -d $dest/unpacked/$pkg/usr ]]; then continue; fi
  deb=$(ls "$debs"/"${pkg}"_*.deb "$dest"/debs/"${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
  if [[ -z $deb ]]; then
    echo "composite-sources: apt-get download $pkg" >&2
    (cd "$dest/debs" && apt-get download "$pkg")
    deb=$(ls "$dest"/debs/"${pkg}"_*.deb | head -n 1)
  fi
  echo "composite-sources: unpacking $(basename "$deb")" >&2
  mkdir -p "$dest/unpacked/$pkg.tmp"
  dpkg-deb -x "$deb" "$dest/unpacked/$pkg.tmp"
  mv "$dest/unpacked/$pkg.tmp" "$dest/unpacked/$pkg"
done

stamps=$dest/unpacked/tuxpaint-stamps-default/usr/share/tuxpaint/stamps
clipart=$dest/unpacked/openclipart-png/usr/share/openclipart/png
photos=$dest/unpacked/mate-backgrounds/usr/share/backgrounds/mate/nature

# link_tree SRC DST FIND-ARGS...: DST mirrors the files of SRC that FIND-ARGS select.
link_tree() {
  local src=$1 out=$2; shift 2
  rm -rf "$out"
  mkdir -p "$out"
  (cd "$src" && find . -type f -name '*.png' "$@" -print) | sort | while read -r rel; do
    mkdir -p "$out/$(dirname "$rel")"
    ln -s "$src/${rel#./}" "$out/${rel#./}"
  done
}

link_tree "$stamps" "$dest/objects-photo" \
  -not -path './symbols/*' -not -path './town/*' -not -path './people/*' \
  -not -path './naturalforces/*' -not -path '*/cartoon/*' \
  -not -name '*_mirror.png' -not -name '*_flip.png'
link_tree "$clipart" "$dest/objects-clipart" -not -path './people/*'
link_tree "$clipart/people" "$dest/objects-people"
rm -rf "$dest/backgrounds-photo"
ln -s "$photos" "$dest/backgrounds-photo"

for kind in objects-photo objects-clipart objects-people; do
  echo "composite-sources: $kind: $(find "$dest/$kind" -name '*.png' | wc -l) files" >&2
done
echo "composite-sources: backgrounds-photo: $(ls "$photos" | wc -l) files" >&2
echo "--objects photo=$dest/objects-photo --objects clipart=$dest/objects-clipart" \
  "--backgrounds photo=$dest/backgrounds-photo"
echo "# people (clip-art drawings of people, not photos): --objects people=$dest/objects-people" >&2
