#include <zlib.h>

/// deflateInit2 is a macro; `window_bits` 15 = zlib stream, -15 = raw deflate, 31 = gzip.
static inline int czlib_deflate_init(z_streamp stream, int level, int window_bits) {
    return deflateInit2(stream, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
}

/// inflateInit2 is a macro; `window_bits` as for czlib_deflate_init (47 = zlib or gzip).
static inline int czlib_inflate_init(z_streamp stream, int window_bits) {
    return inflateInit2(stream, window_bits);
}
