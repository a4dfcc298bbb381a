#ifndef CKANSHI_VMI_RING_H
#define CKANSHI_VMI_RING_H

// The shared-memory ring between the VM sensor's QEMU plugin (producer, one
// or more vCPU threads) and kanshi (the one consumer), and the binary
// records that travel through it. Header only: the plugin and the Swift
// decoder read the same layout. All integers little-endian (x86_64 hosts).
//
// The ring file: an 8192-byte header (struct kvmi_ring_header, then at 4096
// one cache line of counters per vCPU), then `capacity` bytes of records (a
// power of two). `head` and `tail` are byte counts since
// the start (never wrapped): the producer writes at head % capacity and
// publishes head with a release store; the consumer reads up to head and
// publishes tail. A record never wraps: when one does not fit before the end,
// the producer writes a KVMI_PAD record up to the end and starts again at 0.
// When there is no room and the consumer is reading (`consumer` 1), the
// producer waits for room: the guest is held, nothing is lost (`waits`,
// `waited_ns`). Only when no consumer reads is a record dropped and counted
// (`dropped`).

#include <stdint.h>

#define KVMI_RING_MAGIC 0x314d56494853414bULL /* "KASHIVM1" */
#define KVMI_RING_VERSION 4
#define KVMI_RING_HEADER_SIZE 8192
#define KVMI_VCPU_COUNTERS_OFFSET 4096
#define KVMI_MAX_VCPUS 64

/// The ring's header; the producer owns head and the counters, the consumer tail.
typedef struct kvmi_ring_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    /// Written by the producer.
    volatile uint64_t head;
    /// Written by the consumer.
    volatile uint64_t tail;
    /// Records dropped because the ring was full.
    volatile uint64_t dropped;
    /// System calls seen at entry (all ABIs), and returns matched to an entry.
    volatile uint64_t calls;
    volatile uint64_t returns;
    /// Strings or structures that could not be read at entry nor at return.
    volatile uint64_t unreadable;
    /// Entries still waiting for a return when the pending table was full (evicted).
    volatile uint64_t evicted;
    /// 1 once the kernel's KASLR slide is known; the slide itself.
    volatile uint64_t calibrated;
    volatile uint64_t slide;
    /// 1 while the plugin runs; 2 after it ended cleanly.
    volatile uint64_t state;
    /// Page-table isolation as seen at returns: 0 unknown, 1 off, 2 on.
    volatile uint64_t pti;
    /// vCPUs that registered.
    volatile uint64_t vcpus;
    /// Entries written to the ring (the calls the behaviour model needs, or all with all=1).
    volatile uint64_t recorded;
    /// Text of the first error the plugin met (NUL-terminated), for kanshi to report.
    char error[256];
    /// How the plugin reads guest memory: see KVMI_GUEST_RAM_*.
    volatile uint64_t guest_ram;
    /// Written by the consumer: 1 while it reads the ring (a full ring then holds the
    /// producer until there is room), 0 before it starts and after it stopped (a full
    /// ring then drops).
    volatile uint64_t consumer;
    /// Times the producer found the ring full and waited for the consumer, and for how long.
    volatile uint64_t waits;
    volatile uint64_t waited_ns;
    /// Where a call's pt_regs address comes from: 0 a register (read at every entry and return),
    /// 1 the per-cpu top of the task's kernel stack (checked against the register first), 2 the
    /// register again after the two disagreed.
    volatile uint64_t stack_top;
} kvmi_ring_header;

/// The counters a vCPU thread keeps at every call: written only by that thread (a plain
/// store, no locked instruction), read by the consumer; one cache line each. The totals are
/// these summed over the vCPUs, plus the header's fields of the same name (counted where
/// no vCPU is at hand).
typedef struct kvmi_vcpu_counters {
    volatile uint64_t calls;
    volatile uint64_t recorded;
    volatile uint64_t returns;
    uint64_t reserved[5];
} kvmi_vcpu_counters;

static inline kvmi_vcpu_counters *kvmi_ring_vcpu_counters(kvmi_ring_header *h) {
    return (kvmi_vcpu_counters *)((uint8_t *)h + KVMI_VCPU_COUNTERS_OFFSET);
}

/// Values of kvmi_ring_header.guest_ram.
enum {
    /// Not told the RAM's size: every read goes through QEMU.
    KVMI_GUEST_RAM_NOT_OFFERED = 0,
    /// Told, but no mapping of that size found (yet): reads go through QEMU.
    KVMI_GUEST_RAM_NOT_FOUND = 1,
    /// Page tables walked and memory read in the RAM mapping (checked against QEMU first).
    KVMI_GUEST_RAM_DIRECT = 2,
    /// A direct read differed from QEMU's: direct reads were turned off.
    KVMI_GUEST_RAM_DISAGREED = 3,
};

/// Record types.
enum {
    KVMI_PAD = 0,
    /// A system call at entry: identity, number, six arguments, strings read then.
    KVMI_ENTRY = 1,
    /// A system call's return: the entry's cookie, the result, strings read again.
    KVMI_RETURN = 2,
    /// A task ran do_exit: identity and the exit code.
    KVMI_TASK_EXIT = 3,
    /// The plugin learnt the KASLR slide (payload: kvmi_calibration).
    KVMI_CALIBRATED = 4,
    /// A whole call, written at its return (payload: kvmi_call): with all=1, a 64-bit call that
    /// needs nothing read at its entry. One that never comes back is written as a KVMI_ENTRY
    /// when the thread's next call, its task's end or the plugin's end shows it will not.
    KVMI_CALL = 5,
    /// User code running (exec=N: every Nth timer interrupt a vCPU takes in user mode): the
    /// interrupted instruction and its page table (payload: kvmi_exec_sample).
    KVMI_EXEC_SAMPLE = 6,
};

/// ABIs of an entry.
enum {
    KVMI_ABI_X86_64 = 0,
    /// 32-bit calls (int 0x80, sysenter, 32-bit syscall): the i386 numbers and argument registers.
    KVMI_ABI_I386 = 1,
};

/// Every record starts with this; `size` is a multiple of 8 and includes the items.
typedef struct kvmi_record {
    uint32_t size;
    uint16_t type;
    uint16_t abi;
    /// Host wall clock, nanoseconds since the Unix epoch (0 in returns: a call is timed at entry).
    uint64_t time_ns;
} kvmi_record;

/// Who made the call: read from the guest kernel's task_struct.
typedef struct kvmi_identity {
    /// Guest address of the task_struct.
    uint64_t task;
    /// Thread id (task->pid), process id (task->tgid), parent's process id (task->real_parent->tgid).
    int32_t tid;
    int32_t pid;
    int32_t ppid;
    uint32_t vcpu;
    char comm[16];
} kvmi_identity;

typedef struct kvmi_entry {
    kvmi_record r;
    kvmi_identity who;
    /// Pairs the entry with its return: (vcpu << 56) | per-vCPU counter.
    uint64_t cookie;
    int64_t nr;
    uint64_t args[6];
    /// User instruction and stack pointers at the call.
    uint64_t user_ip;
    uint64_t user_sp;
    /// Items (kvmi_item) follow, up to `size`.
} kvmi_entry;

typedef struct kvmi_return {
    kvmi_record r;
    uint64_t cookie;
    int64_t ret;
    /// Items read at the return follow.
} kvmi_return;

typedef struct kvmi_call {
    /// The entry as it would have been written (its r.type is KVMI_CALL); no items.
    kvmi_entry e;
    int64_t ret;
} kvmi_call;

typedef struct kvmi_task_exit {
    kvmi_record r;
    kvmi_identity who;
    int64_t code;
} kvmi_task_exit;

typedef struct kvmi_calibration {
    kvmi_record r;
    uint64_t slide;
    uint64_t entry;
} kvmi_calibration;

typedef struct kvmi_exec_sample {
    kvmi_record r;
    /// CR3 without its PCID bits: the process's top-level page table.
    uint64_t cr3;
    uint64_t rip;
    uint32_t vcpu;
    uint32_t reserved;
} kvmi_exec_sample;

/// An item after an entry or return: a string or structure from guest memory.
/// `len` bytes follow the 4-byte item header, padded to 4 bytes.
typedef struct kvmi_item {
    uint8_t tag;
    /// KVMI_ITEM_* flags.
    uint8_t flags;
    uint16_t len;
} kvmi_item;

/// Item tags.
enum {
    /// A path argument (first, second).
    KVMI_PATH1 = 1,
    KVMI_PATH2 = 2,
    /// A socket address (connect, bind, sendto, sendmsg's msg_name, accept's result).
    KVMI_SOCKADDR = 3,
    /// One element of execve's argv, in order.
    KVMI_ARGV = 4,
    /// Two 32-bit descriptors written by pipe/pipe2/socketpair (at return).
    KVMI_FDPAIR = 5,
    /// clone3's flags (8 bytes).
    KVMI_CLONE_FLAGS = 6,
    /// openat2's flags (8 bytes, struct open_how.flags).
    KVMI_OPEN_HOW = 7,
    /// i386 socketcall's six 32-bit arguments.
    KVMI_SOCKETCALL = 8,
    /// write and pwrite64: the byte entropy of the buffer's first bytes (at most
    /// KVMI_ENTROPY_SAMPLE): uint16 thousandths of a bit per byte, then uint16 bytes sampled.
    KVMI_WRITE_ENTROPY = 9,
    /// The times argument of utime (two words), utimes and futimesat (struct timeval[2]) or
    /// utimensat (struct timespec[2]), as read at entry; no item when it is NULL (now).
    KVMI_FILE_TIMES = 10,
};

/// The most bytes of a written buffer the plugin reads for its entropy.
#define KVMI_ENTROPY_SAMPLE 4096

/// Item flags.
enum {
    /// The string was cut at the plugin's limit.
    KVMI_ITEM_TRUNCATED = 1,
    /// Could not be read (not paged in): `len` is 0.
    KVMI_ITEM_UNREADABLE = 2,
};

/// The producer's published head (acquire: the records before it are visible).
static inline uint64_t kvmi_ring_head(const kvmi_ring_header *h) {
    return __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
}

/// Publishes how far the consumer has read (release: it is done with those bytes).
static inline void kvmi_ring_set_tail(kvmi_ring_header *h, uint64_t tail) {
    __atomic_store_n(&h->tail, tail, __ATOMIC_RELEASE);
}

/// Calls the behaviour model needs (files, descriptors, processes, network, every write); the
/// plugin only counts the rest unless every call is asked for (all=1). `abi` is KVMI_ABI_*.
int kvmi_model_needs(int abi, int64_t nr);

/// Says whether the consumer reads the ring (1) or not (0).
static inline void kvmi_ring_set_consumer(kvmi_ring_header *h, uint64_t reading) {
    __atomic_store_n(&h->consumer, reading, __ATOMIC_RELEASE);
}

/// A counter or state word written by the producer.
static inline uint64_t kvmi_ring_load(const volatile uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

/// Calls, recorded entries and returns over every vCPU, with the header's own counts.
static inline void kvmi_ring_totals(kvmi_ring_header *h, uint64_t *calls, uint64_t *recorded, uint64_t *returns) {
    uint64_t c = __atomic_load_n(&h->calls, __ATOMIC_ACQUIRE), r = __atomic_load_n(&h->recorded, __ATOMIC_ACQUIRE),
             t = __atomic_load_n(&h->returns, __ATOMIC_ACQUIRE);
    kvmi_vcpu_counters *v = kvmi_ring_vcpu_counters(h);
    for (int i = 0; i < KVMI_MAX_VCPUS; i++) {
        c += __atomic_load_n(&v[i].calls, __ATOMIC_RELAXED);
        r += __atomic_load_n(&v[i].recorded, __ATOMIC_RELAXED);
        t += __atomic_load_n(&v[i].returns, __ATOMIC_RELAXED);
    }
    *calls = c; *recorded = r; *returns = t;
}

#endif
