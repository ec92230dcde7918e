# debs-prefix.sh: sourced (from the repository root) by scripts/gpu.sh and scripts/cpu.sh. If the -dev
# libraries (jansson, pcre2, utf8proc, microhttpd) or pkg-config are missing, unpacks the .deb files in
# $TL_DEBS (default .gpu-debs) into a private prefix (never into /) and points PATH, LD_LIBRARY_PATH and
# pkg-config there. Sets EXTRA: the CMake linker flags that go with it (empty when nothing was unpacked).
EXTRA=()
if ! pkg-config --exists jansson libpcre2-8 libutf8proc libmicrohttpd 2>/dev/null; then
  DEBS=${TL_DEBS:-.gpu-debs}
  PFX=/tmp/tl-deps
  echo "$(basename "$0"): system -dev libraries missing; unpacking $(ls "$DEBS"/*.deb 2>/dev/null | wc -l) .debs from $DEBS into $PFX"
  mkdir -p "$PFX"
  for f in "$DEBS"/*.deb; do dpkg -x "$f" "$PFX"; done
  LIB=$PFX/usr/lib/x86_64-linux-gnu
  for pc in "$LIB"/pkgconfig/*.pc; do
    sed -i -e "s|^prefix=.*|prefix=$PFX/usr|" -e '/^Requires.private/d' "$pc"
  done
  export PATH=$PFX/usr/bin:$PATH LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
  export PKG_CONFIG_PATH=$LIB/pkgconfig PKG_CONFIG_LIBDIR=$LIB/pkgconfig
  EXTRA=(-DCMAKE_EXE_LINKER_FLAGS="-Wl,--as-needed -Wl,--allow-shlib-undefined"
         -DCMAKE_SHARED_LINKER_FLAGS="-Wl,--allow-shlib-undefined")
fi
