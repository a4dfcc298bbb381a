#ifndef KANSHI_QEMU_PLUGIN_H
#define KANSHI_QEMU_PLUGIN_H

// Private declarations of the VM sensor's QEMU plugin.

#include <stdint.h>

#include "CKanshiVMIRing.h"
#include "qemu_plugin_api.h"

/// What to read for one system call: argument indexes (-1: none).
typedef struct kvmi_argspec {
    int8_t path1, path2;
    int8_t sa_ptr, sa_len;
    /// A msghdr whose msg_name is the destination.
    int8_t msg;
    int8_t argv;
    /// An int[2] written by the call (read at return).
    int8_t fdpair;
    /// clone3's struct clone_args (flags read at entry).
    int8_t clone3;
    /// openat2's struct open_how (flags read at entry).
    int8_t open_how;
    /// A written buffer and its length (write, pwrite64): its byte entropy is read at entry.
    int8_t wbuf, wlen;
    /// The call does not come back (exit, sigreturn): no pending return.
    uint8_t no_return;
    /// A utime-family call's times argument and its size in bytes (read at entry).
    int8_t times;
    uint8_t times_size;
} kvmi_argspec;

kvmi_argspec kvmi_spec(int abi, int64_t nr);

#endif
