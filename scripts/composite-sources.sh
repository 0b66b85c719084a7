#!/usr/bin/env bash
# Fetch and unpack the Debian packages that feed `clipline datasets compose`, outside the repo,
# then curate them into source folders (symbolic links, no copies) and print the options to pass.
#
#   tuxpaint-stamps-default  photo cut-outs of objects with alpha (GPL-2)        -> objects photo
#   openclipart-png          clip-art with alpha (public domain)                  -> objects clipart
#                            (its people/ folder, drawings of people              -> objects people)
#   mate-backgrounds         nature photos (GPL-2+)                               -> backgrounds photo
#   plasma-workspace-wallpapers  KDE's wallpapers, photos and renders (LGPL/CC)   -> backgrounds photo
#   ukui-wallpapers          UKUI's wallpapers (GPL/CC)                           -> backgrounds photo
#                            (one file per wallpaper: its sizes are one picture, and two sizes
#                            of it on both sides of the split would leak it into training)
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
packages=(tuxpaint-stamps-default openclipart-png mate-backgrounds plasma-workspace-wallpapers
          ukui-wallpapers)

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
mkdir -p "$dest/backgrounds-photo/mate" "$dest/backgrounds-photo/plasma" "$dest/backgrounds-photo/ukui"
for f in "$photos"/*; do ln -s "$f" "$dest/backgrounds-photo/mate/$(basename "$f")"; done
# Plasma: per wallpaper, its first landscape size (images/WxH.ext, W >= H) by name.
for wall in "$dest"/unpacked/plasma-workspace-wallpapers/usr/share/wallpapers/*/; do
  pick=$(find "$wall/contents/images" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' \) \
           2>/dev/null | sort | while read -r f; do
             size=$(basename "${f%.*}")
             if [[ ${size%x*} -ge ${size#*x} ]] 2>/dev/null; then echo "$f"; fi
           done | head -n 1)
  if [[ -n $pick ]]; then
    ln -s "$pick" "$dest/backgrounds-photo/plasma/$(basename "$wall").${pick##*.}"
  fi
done
for f in "$dest"/unpacked/ukui-wallpapers/usr/share/backgrounds/*.{jpg,png}; do
  if [[ -e $f ]]; then ln -s "$f" "$dest/backgrounds-photo/ukui/$(basename "$f")"; fi
done

for kind in objects-photo objects-clipart objects-people; do
  echo "composite-sources: $kind: $(find "$dest/$kind" -name '*.png' | wc -l) files" >&2
done
echo "composite-sources: backgrounds-photo: $(find -L "$dest/backgrounds-photo" -type f | wc -l) files" >&2
echo "--objects photo=$dest/objects-photo --objects clipart=$dest/objects-clipart" \
  "--backgrounds photo=$dest/backgrounds-photo"
echo "# people (clip-art drawings of people, not photos): --objects people=$dest/objects-people" >&2
