#include <lzma.h>

/// LZMA_STREAM_INIT is a macro (a compound literal Swift cannot import).
static inline lzma_stream clzma_stream_init(void) {
    lzma_stream s = LZMA_STREAM_INIT;
    return s;
}
