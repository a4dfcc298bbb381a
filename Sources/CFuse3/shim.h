// libfuse3 (Debian's libfuse3-dev), high-level API.
//
// fuse_new and fuse_loop_mt are macros that pick a versioned symbol, and the
// file-info flags are bit-fields: Swift sees neither, so the few we use are
// wrapped here in prefixed inline functions.
#ifndef CFUSE3_SHIM_H
#define CFUSE3_SHIM_H

#define FUSE_USE_VERSION 314
#include <fuse3/fuse.h>
#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <linux/falloc.h>

/// fuse_new with the size of the operations table filled in.
static inline struct fuse *cfuse3_new(struct fuse_args *args, const struct fuse_operations *op, void *private_data) {
    return fuse_new(args, op, sizeof(*op), private_data);
}

/// The multi-threaded loop with at most `max_threads` workers; returns
/// fuse_loop_mt's result (0 after a normal unmount or exit).
static inline int cfuse3_loop_mt(struct fuse *f, unsigned max_threads, unsigned max_idle) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config == NULL) return -12; /* -ENOMEM */
    fuse_loop_cfg_set_max_threads(config, max_threads);
    fuse_loop_cfg_set_idle_threads(config, max_idle);
    fuse_loop_cfg_set_clone_fd(config, 0);
    int r = fuse_loop_mt(f, config);
    fuse_loop_cfg_destroy(config);
    return r;
}

/// Bypass the page cache for this open file: every read and write reaches
/// the file system as issued.
static inline void cfuse3_set_direct_io(struct fuse_file_info *fi) {
    fi->direct_io = 1;
    fi->keep_cache = 0;
}

/// The open flags (O_ACCMODE bits) of a file-info.
static inline int cfuse3_access_mode(const struct fuse_file_info *fi) {
    return fi->flags & O_ACCMODE;
}

/// The private data passed to fuse_new, from inside a callback.
static inline void *cfuse3_private_data(void) {
    struct fuse_context *c = fuse_get_context();
    return c ? c->private_data : NULL;
}

#endif
