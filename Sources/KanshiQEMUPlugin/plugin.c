// Kanshi's VM sensor: a QEMU TCG plugin that sees every system call of every
// guest process from inside the VMM, with no agent in the guest.
//
// Hook sites (link-time addresses from the guest kernel's own kallsyms, given
// as arguments; the KASLR slide is learnt at run time):
//   - do_syscall_64 (64-bit `syscall`), do_fast_syscall_32 (32-bit syscall and
//     sysenter), do_int80_emulation / do_int80_syscall_32 (int 0x80): at their
//     first instruction RDI points to the user's pt_regs and the kernel's page
//     tables and GS are in place, with page-table isolation on or off;
//   - the instruction after entry_SYSCALL_64's `call do_syscall_64` (found when
//     that block is translated): a 64-bit call's return, with RSP at its pt_regs
//     (so the task's kernel stack is the key, and ax, ip and sp are read there);
//   - every `sysretl` and `iretq` of the kernel (and `sysretq` until the call above
//     is found): the return to user mode of 32-bit calls, matched to the entry by
//     (page table, user stack, user instruction);
//   - do_exit: a task ends.
// The slide: the first kernel block at an address congruent to
// entry_SYSCALL_64 modulo the KASLR alignment whose bytes equal that
// function's first bytes in the kernel image. Until then nothing but returns
// is hooked; once known, the translation cache is flushed (qemu_plugin_reset)
// so blocks translated before get their hooks too.
//
// Identity: current task = 8 bytes at GS base + the per-cpu offset of
// current_task; pid, tgid, comm and real_parent at offsets from the kernel's
// BTF. Cached per vCPU until the task changes (and after execve or exit).
//
// Everything goes to kanshi as binary records through a shared-memory ring
// (see CKanshiVMIRing.h); nothing is formatted here.

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <cpuid.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "plugin.h"

__attribute__((visibility("default"))) int qemu_plugin_version = 4;

#define KERNEL_SPACE 0xffff800000000000ULL
#define MAX_VCPUS KVMI_MAX_VCPUS
/// Spins of a waiter on a held lock before it yields the CPU.
#define SPINS_BEFORE_YIELD 256
/// A vCPU reads the real clock again after this long of TSC time, and the TSC's rate is taken
/// once this much time has passed since the plugin started.
#define TSC_ANCHOR_NS 1000000ULL
#define TSC_RATE_AFTER_NS 10000000ULL
/// CPUID leaf and bit of an invariant TSC (constant rate, runs in every power state).
#define CPUID_POWER_LEAF 0x80000007u
#define CPUID_INVARIANT_TSC (1u << 8)
#define PENDING_SLOTS 8192
#define PENDING_PROBE 32
/// Buckets of the count of pending calls per user stack pointer (per pt_regs address for
/// calls keyed by it): a return whose bucket is empty has nothing to match and costs one
/// register read.
#define SP_BUCKETS 4096
/// Calls whose number in rsi (do_syscall_64's second argument) equalled pt_regs.orig_ax
/// before the number is taken from rsi alone.
#define RSI_CONFIRMATIONS 64
#define RECORD_MAX 8192
/// How long a vCPU naps between looks at a full ring's tail.
#define RING_WAIT_NS 20000
#define PAGE 4096ULL
/// CR3 without the PCID (bits 0-11) and NOFLUSH (63). With page-table isolation
/// the user page table is the kernel one plus 4 KiB (bit 12): see `returned`.
#define CR3_MASK 0x7ffffffffffff000ULL
#define PTI_USER_BIT 0x1000ULL
/// The physical address in a page-table entry (bits 12-51).
#define PTE_ADDR 0x000ffffffffff000ULL
#define PTE_PRESENT 0x1ULL
/// A page directory (pointer) entry that maps a 2 MiB (1 GiB) page itself.
#define PTE_LARGE 0x80ULL
/// Direct reads of guest RAM checked against QEMU's own read before they are trusted.
#define DIRECT_CONFIRMATIONS 256
/// Entries and returns whose pt_regs address, read from a register, the per-cpu top of stack
/// must have given before the register is no longer read.
#define STACK_TOP_CONFIRMATIONS 64
/// The pc machine's legacy video and ROM window: not RAM to the guest.
#define LEGACY_HOLE_START 0xa0000ULL
#define LEGACY_HOLE_END 0x100000ULL
/// The pc machine keeps RAM at guest-physical 0 in one piece when it is smaller than this;
/// larger RAM is split around the 4 GiB hole (then every read goes through QEMU).
#define PC_LOWMEM_LIMIT 0xe0000000ULL
/// In the name of the sandbox's shared RAM file (KanshiMemory's GuestRAM.namePrefix).
#define RAM_FILE_MARK "/kanshi-ram-"

/// Hook kinds (udata of the instruction callbacks).
enum { HOOK_SYS64 = 1, HOOK_FAST32, HOOK_INT80, HOOK_EXIT, HOOK_SYSRET, HOOK_SYSRET32, HOOK_IRET, HOOK_SYS64_RETURN };

/// The `ip` of a pending 64-bit call keyed by its pt_regs address (held in `cr3`): no user
/// instruction pointer keys another call with a kernel address as its page table.
#define KEY_BY_REGS 1ULL
/// x86 `call rel32`.
#define CALL_REL32 0xe8
#define CALL_REL32_SIZE 5

/// The user code segment of 32-bit processes (an iret frame's CS says the return is to compat mode).
#define USER32_CS 0x23

/// The user registers the kernel saved (struct pt_regs; its layout is x86_64 ABI).
typedef struct pt_regs {
    uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
} pt_regs;

typedef struct vcpu_state {
    struct qemu_plugin_register *rdi, *rsi, *rax, *rcx, *rsp, *gs_base, *cr3;
    /// Timer interrupts taken in user mode since the last execution sample.
    uint64_t exec_ticks;
    GByteArray *regbuf;
    GByteArray *membuf;
    /// This vCPU's counters in the ring header.
    kvmi_vcpu_counters *count;
    /// The entry clock (see entry_ns): the last real-clock reading and the TSC then, how long
    /// an anchor lasts in TSC ticks, and nanoseconds per tick (0 until measured).
    uint64_t anchor_tsc, anchor_ns, anchor_ticks;
    double ns_per_tick;
    uint64_t counter;
    /// CR3 read once per callback (valid while cr3_known).
    uint64_t cr3_now;
    int cr3_known;
    uint64_t cached_task;
    /// The pt_regs address (top of the task's kernel stack) the cached identity was read at, and
    /// the exit generation then: while both hold, the task is the same and no memory is read.
    uint64_t cached_regs_at, cached_exit_gen;
    /// The kernel page table at the last recorded entry (while page-table isolation is unknown).
    uint64_t entry_cr3;
    /// Where the task's pt_regs lie in the RAM mapping (the kernel stack's page of
    /// regs_page, translated at exit generation regs_gen): read without a page walk.
    uint64_t regs_page, regs_gen;
    const uint8_t *regs_host;
    /// This vCPU's per-cpu top-of-stack word in the RAM mapping (NULL until found).
    const uint64_t *stack_top;
    int stack_top_missing;
    kvmi_identity id;
    uint8_t rec[RECORD_MAX];
} vcpu_state;

typedef struct pending {
    uint64_t cr3, ip, sp;
    /// The user's instruction and stack pointers at the call (of a call keyed by its pt_regs).
    uint64_t user_ip, user_sp;
    uint64_t cookie;
    uint64_t seen;
    int64_t nr;
    uint16_t abi;
    /// Paths that could not be read at entry: read again at return.
    uint8_t retry_tag[2];
    uint64_t retry_ptr[2];
    /// An output the call writes (pipe fds).
    uint64_t fdpair_ptr;
    /// The entry is not in the ring yet (all=1, a 64-bit call needing nothing at entry): it goes
    /// with the return as one KVMI_CALL record, or alone if the call never comes back.
    int deferred;
    kvmi_entry entry;
} pending;

static struct {
    qemu_plugin_id_t id;
    kvmi_ring_header *ring;
    uint8_t *data;
    uint64_t capacity;
    /// Spin locks (see lock()): held for a few hundred nanoseconds at most, except while a full
    /// ring waits for kanshi.
    int ring_lock;
    int pending_lock;
    uint64_t entry_link, align, slide;
    uint8_t sig[32];
    size_t sig_len;
    uint64_t sys64, fast32, int80, do_exit;  // link-time
    /// The instruction after `call do_syscall_64` (run-time address), once found; until then
    /// 64-bit calls are matched at sysretq/iretq like 32-bit ones.
    uint64_t sys64_return;
    int sys64_return_known;
    uint64_t current_task;
    /// Per-cpu offset of the running task's top of kernel stack (0: not given), and how often the
    /// pt_regs address it gives agreed with the register (-1: it did not once).
    uint64_t top_of_stack;
    int stack_top_trust;
    uint64_t off_pid, off_tgid, off_comm, off_parent;
    unsigned max_string;
    /// Emit every call (1), or only those the behaviour model needs (0; the rest are counted).
    int all_calls;
    int calibrated;
    uint64_t pending_clock;
    /// An invariant TSC, and the real clock and TSC when the plugin started.
    int tsc_invariant;
    uint64_t tsc0, ns0;
    /// Pending calls per bucket of user stack pointer (changed under pending_lock).
    uint32_t sp_pending[SP_BUCKETS];
    /// do_syscall_64's nr argument (rsi) agreed with pt_regs this many times; -1: it did not.
    int rsi_trust;
    /// Bumped at every task exit: a kernel stack can then be reused by a new task.
    uint64_t exit_gen;
    /// Guest RAM mapped in QEMU (a memfd backend, found in /proc/self/maps): page tables are
    /// walked and memory read from it directly. ram_size is given (guest-physical 0 to it).
    uint64_t ram_size;
    const uint8_t *ram;
    pthread_once_t ram_once;
    /// Direct reads that matched QEMU's; -1 once one did not (then only QEMU reads).
    int direct_trust;
    /// exec=N: every Nth timer interrupt a vCPU takes in user mode samples the interrupted
    /// instruction (0: none); timer: asm_sysvec_apic_timer_interrupt (link-time).
    uint64_t exec_every, timer;
    vcpu_state *vcpus[MAX_VCPUS];
    pending table[PENDING_SLOTS];
    /// Per slot: 0 free, else a byte of its key's hash (odd), so a probe touches one cache
    /// line of tags instead of 32 slots.
    uint8_t tags[PENDING_SLOTS];
} K;

// MARK: helpers

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/// A spin lock: one locked instruction to take it, a plain store to let it go (the vCPU
/// threads meet here at every call; a mutex costs two locked instructions and a futex path).
static void lock(int *l) {
    unsigned spins = 0;
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
            if (++spins < SPINS_BEFORE_YIELD) __builtin_ia32_pause();
            else sched_yield();
        }
    }
}

static void unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

/// Adds one to a counter only this vCPU's thread writes (no locked instruction).
static void bump(volatile uint64_t *counter) {
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/// The time of a call's entry: the real clock, extrapolated from this vCPU's last reading with
/// the TSC (an invariant TSC reads in about a third of a clock_gettime here); read again every
/// TSC_ANCHOR_NS, so the extrapolation never runs far.
static uint64_t entry_ns(vcpu_state *v) {
    if (!K.tsc_invariant) return now_ns();
    uint64_t t = __rdtsc();
    uint64_t d = t - v->anchor_tsc;
    if (d < v->anchor_ticks) return v->anchor_ns + (uint64_t)((double)d * v->ns_per_tick);
    uint64_t ns = now_ns();
    t = __rdtsc();
    if (ns - K.ns0 >= TSC_RATE_AFTER_NS && t > K.tsc0) {
        v->ns_per_tick = (double)(ns - K.ns0) / (double)(t - K.tsc0);
        v->anchor_ticks = (uint64_t)((double)TSC_ANCHOR_NS / v->ns_per_tick);
    }
    v->anchor_tsc = t;
    v->anchor_ns = ns;
    return ns;
}

static void fail(const char *msg) {
    if (K.ring && K.ring->error[0] == 0) {
        strncpy((char *)K.ring->error, msg, sizeof K.ring->error - 1);
    }
    qemu_plugin_outs(msg);
    qemu_plugin_outs("\n");
}

static uint64_t reg(vcpu_state *v, struct qemu_plugin_register *r) {
    g_byte_array_set_size(v->regbuf, 0);
    int n = qemu_plugin_read_register(r, v->regbuf);
    uint64_t out = 0;
    if (n > 0) memcpy(&out, v->regbuf->data, n > 8 ? 8 : (size_t)n);
    return out;
}

static uint64_t cr3_of(vcpu_state *v) {
    if (!v->cr3_known) {
        v->cr3_now = reg(v, v->cr3);
        v->cr3_known = 1;
    }
    return v->cr3_now;
}

// MARK: guest memory

/// Finds the guest RAM's mapping in this process: QEMU maps the backend shared, a memfd under
/// the backend's type name or the sandbox's file under /dev/shm (shared with kanshi's memory sensor).
static void ram_find(void) {
    if (!K.ram_size || K.ram_size >= PC_LOWMEM_LIMIT) return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long long start, end;
        if (sscanf(line, "%llx-%llx", &start, &end) != 2) continue;
        if (!(strstr(line, "memfd:memory-backend-memfd") || strstr(line, RAM_FILE_MARK)) || end - start != K.ram_size) continue;
        K.ram = (const uint8_t *)(uintptr_t)start;
        K.ring->guest_ram = KVMI_GUEST_RAM_DIRECT;
        break;
    }
    fclose(f);
    if (!K.ram) K.ring->guest_ram = KVMI_GUEST_RAM_NOT_FOUND;
}

/// Host address of guest-physical [pa, pa+len), or NULL if that is not plain low RAM.
static const uint8_t *ram_at(uint64_t pa, uint64_t len) {
    if (pa + len > K.ram_size || pa + len < pa) return NULL;
    if (pa < LEGACY_HOLE_END && pa + len > LEGACY_HOLE_START) return NULL;
    return K.ram + pa;
}

/// The x86-64 4-level page walk (4 KiB, 2 MiB and 1 GiB pages) of `va` under `cr3`.
static int translate(uint64_t cr3, uint64_t va, uint64_t *pa) {
    uint64_t table = cr3 & PTE_ADDR;
    for (int shift = 39; shift >= 12; shift -= 9) {
        const uint8_t *at = ram_at(table + ((va >> shift) & 511) * 8, 8);
        if (!at) return 0;
        uint64_t entry = __atomic_load_n((const uint64_t *)at, __ATOMIC_RELAXED);
        if (!(entry & PTE_PRESENT)) return 0;
        uint64_t size = 1ULL << shift;
        if (shift == 12 || ((shift == 30 || shift == 21) && (entry & PTE_LARGE))) {
            *pa = (entry & PTE_ADDR & ~(size - 1)) | (va & (size - 1));
            return 1;
        }
        table = entry & PTE_ADDR;
    }
    return 0;
}

/// Reads guest virtual memory from the RAM mapping, page by page; 0 if any page is not
/// plain present RAM (then QEMU reads it).
static int mem_direct(vcpu_state *v, uint64_t addr, uint8_t *out, size_t len) {
    uint64_t cr3 = cr3_of(v);
    size_t done = 0;
    while (done < len) {
        uint64_t a = addr + done, pa;
        size_t chunk = (size_t)(PAGE - (a & (PAGE - 1)));
        if (chunk > len - done) chunk = len - done;
        const uint8_t *src;
        if (!translate(cr3, a, &pa) || !(src = ram_at(pa, chunk))) return 0;
        memcpy(out + done, src, chunk);
        done += chunk;
    }
    return 1;
}

static int mem(vcpu_state *v, uint64_t addr, void *out, size_t len) {
    if (len == 0) return 1;
    pthread_once(&K.ram_once, ram_find);
    int trust = K.ram ? __atomic_load_n(&K.direct_trust, __ATOMIC_RELAXED) : -1;
    if (trust >= DIRECT_CONFIRMATIONS && mem_direct(v, addr, out, len)) return 1;
    if (!qemu_plugin_read_memory_vaddr(addr, v->membuf, len)) return 0;
    memcpy(out, v->membuf->data, len);
    if (trust >= 0 && trust < DIRECT_CONFIRMATIONS && len <= RECORD_MAX) {
        // Not yet trusted: read it both ways and compare.
        uint8_t check[RECORD_MAX];
        if (mem_direct(v, addr, check, len)) {
            int same = memcmp(check, out, len) == 0;
            __atomic_store_n(&K.direct_trust, same ? trust + 1 : -1, __ATOMIC_RELAXED);
            if (!same) K.ring->guest_ram = KVMI_GUEST_RAM_DISAGREED;
        }
    }
    return 1;
}

/// c * log2(c) for the byte counts of a sample (filled at install).
static float n_log2_n[KVMI_ENTROPY_SAMPLE + 1];

/// The byte entropy of the first bytes of a written buffer: out[0] thousandths of a bit per
/// byte, out[1] the bytes sampled. A buffer whose first page is not readable gives nothing;
/// one that crosses into an unreadable page is sampled up to its first page's end.
static int written_entropy(vcpu_state *v, uint64_t addr, uint64_t len, uint16_t out[2]) {
    uint8_t sample[KVMI_ENTROPY_SAMPLE];
    size_t n = len < KVMI_ENTROPY_SAMPLE ? (size_t)len : KVMI_ENTROPY_SAMPLE;
    if (!mem(v, addr, sample, n)) {
        size_t first = (size_t)(PAGE - (addr & (PAGE - 1)));
        if (first >= n || !mem(v, addr, sample, first)) return 0;
        n = first;
    }
    uint16_t counts[256] = {0};
    for (size_t i = 0; i < n; i++) counts[sample[i]]++;
    float sum = 0;
    for (int b = 0; b < 256; b++) sum += n_log2_n[counts[b]];
    float h = (n_log2_n[n] - sum) / (float)n;  // log2(n) - sum(c log2 c) / n
    out[0] = (uint16_t)(h * 1000.0f + 0.5f);
    out[1] = (uint16_t)n;
    return 1;
}

/// A NUL-terminated string, read page by page; returns its length or -1.
static int string_at(vcpu_state *v, uint64_t addr, char *out, unsigned max, int *truncated) {
    unsigned got = 0;
    *truncated = 0;
    if (addr == 0) return -1;
    while (got < max) {
        uint64_t a = addr + got;
        unsigned chunk = (unsigned)(PAGE - (a & (PAGE - 1)));
        if (chunk > max - got) chunk = max - got;
        if (!mem(v, a, out + got, chunk)) return got == 0 ? -1 : (int)got;
        void *nul = memchr(out + got, 0, chunk);
        if (nul) return (int)((char *)nul - out);
        got += chunk;
    }
    *truncated = 1;
    return (int)max;
}

/// A task's pt_regs (the top of its kernel stack): a pointer into the guest's RAM mapping when it
/// can be read there, else `buf` filled through QEMU; NULL if unreadable. The page's place in the
/// RAM mapping is kept per vCPU until a task exits (a stack can then be freed and its address
/// reused), so the next call of the same task reads only the fields it needs, with no page walk,
/// register read or copy.
static const pt_regs *regs_get(vcpu_state *v, uint64_t regs_at, pt_regs *buf) {
    uint64_t page = regs_at & ~(PAGE - 1), in_page = regs_at & (PAGE - 1);
    uint64_t gen = __atomic_load_n(&K.exit_gen, __ATOMIC_ACQUIRE);
    if (v->regs_host && v->regs_page == page && v->regs_gen == gen && in_page + sizeof *buf <= PAGE) {
        return (const pt_regs *)(v->regs_host + in_page);
    }
    if (!mem(v, regs_at, buf, sizeof *buf)) return NULL;
    v->regs_host = NULL;
    uint64_t pa;
    if (K.ram && __atomic_load_n(&K.direct_trust, __ATOMIC_RELAXED) >= DIRECT_CONFIRMATIONS &&
        in_page + sizeof *buf <= PAGE && translate(cr3_of(v), page, &pa)) {
        const uint8_t *host = ram_at(pa, PAGE);
        if (host) { v->regs_host = host; v->regs_page = page; v->regs_gen = gen; }
    }
    return buf;
}

/// The pt_regs address of the task running on this vCPU, read from the per-cpu top of its kernel
/// stack in the RAM mapping; 0 until that word is found and trusted (then read the register).
static uint64_t regs_at_stack_top(vcpu_state *v) {
    if (!v->stack_top || __atomic_load_n(&K.stack_top_trust, __ATOMIC_RELAXED) < STACK_TOP_CONFIRMATIONS) return 0;
    return __atomic_load_n(v->stack_top, __ATOMIC_RELAXED) - sizeof(pt_regs);
}

/// Finds this vCPU's top-of-stack word and checks it against `regs_at`, the pt_regs address just
/// read from a register (rdi at entry, rsp at return).
static void stack_top_check(vcpu_state *v, uint64_t regs_at) {
    int trust = __atomic_load_n(&K.stack_top_trust, __ATOMIC_RELAXED);
    if (!K.top_of_stack || trust < 0 || !K.ram || __atomic_load_n(&K.direct_trust, __ATOMIC_RELAXED) < DIRECT_CONFIRMATIONS) return;
    if (!v->stack_top) {
        if (v->stack_top_missing) return;
        uint64_t va = reg(v, v->gs_base) + K.top_of_stack, pa;
        const uint8_t *host;
        if ((va & 7) || !translate(cr3_of(v), va, &pa) || !(host = ram_at(pa, 8))) {
            v->stack_top_missing = 1;  // not in plain RAM: this vCPU reads registers, without asking again
            return;
        }
        v->stack_top = (const uint64_t *)host;
    }
    int same = __atomic_load_n(v->stack_top, __ATOMIC_RELAXED) - sizeof(pt_regs) == regs_at;
    __atomic_store_n(&K.stack_top_trust, same ? trust + 1 : -1, __ATOMIC_RELAXED);
    if (!same) K.ring->stack_top = 2;
    else if (trust + 1 == STACK_TOP_CONFIRMATIONS) K.ring->stack_top = 1;
}

// MARK: the ring

/// Room for a record of `size` bytes at the ring's head: takes ring_lock and returns where to
/// write it (then ring_commit), or NULL when the record is dropped (counted; lock released).
static uint8_t *ring_claim(uint32_t size, uint64_t *next_head) {
    lock(&K.ring_lock);
    uint64_t head = K.ring->head;
    uint64_t tail = __atomic_load_n(&K.ring->tail, __ATOMIC_ACQUIRE);
    uint64_t pos = head % K.capacity;
    uint64_t pad = pos + size > K.capacity ? K.capacity - pos : 0;
    if (head + pad + size - tail > K.capacity) {
        // Full. While kanshi reads, the vCPU waits for room (other vCPUs wait on the lock):
        // the guest is slowed to kanshi's pace and nothing is lost, so no flood of calls
        // can hide the one that matters. Without a reader the record is dropped and counted.
        struct timespec t0, t1, nap = {0, RING_WAIT_NS};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int waited = 0;
        while (head + pad + size - tail > K.capacity) {
            if (!__atomic_load_n(&K.ring->consumer, __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&K.ring->dropped, 1, __ATOMIC_RELAXED);
                unlock(&K.ring_lock);
                return NULL;
            }
            nanosleep(&nap, NULL);
            waited = 1;
            tail = __atomic_load_n(&K.ring->tail, __ATOMIC_ACQUIRE);
        }
        if (waited) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            __atomic_fetch_add(&K.ring->waits, 1, __ATOMIC_RELAXED);
            __atomic_fetch_add(&K.ring->waited_ns,
                               (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)), __ATOMIC_RELAXED);
        }
    }
    if (pad) {
        kvmi_record p = {(uint32_t)pad, KVMI_PAD, 0, 0};
        memcpy(K.data + pos, &p, pad < sizeof p ? pad : sizeof p);
        head += pad;
        pos = 0;
    }
    *next_head = head + size;
    return K.data + pos;
}

/// Publishes the record written where ring_claim said, and lets the ring go.
static void ring_commit(uint64_t next_head) {
    __atomic_store_n(&K.ring->head, next_head, __ATOMIC_RELEASE);
    unlock(&K.ring_lock);
}

static void ring_push(const void *rec, uint32_t size) {
    uint64_t next;
    uint8_t *at = ring_claim(size, &next);
    if (!at) return;
    memcpy(at, rec, size);
    ring_commit(next);
}

/// Appends an item to the record being built at `*size`; false if it does not fit.
static int add_item(uint8_t *rec, uint32_t *size, uint8_t tag, uint8_t flags, const void *bytes, uint16_t len) {
    uint32_t need = (uint32_t)sizeof(kvmi_item) + ((len + 3u) & ~3u);
    if (*size + need + 8 > RECORD_MAX) return 0;
    kvmi_item it = {tag, flags, len};
    memcpy(rec + *size, &it, sizeof it);
    if (len) memcpy(rec + *size + sizeof it, bytes, len);
    memset(rec + *size + sizeof it + len, 0, ((len + 3u) & ~3u) - len);
    *size += need;
    return 1;
}

static uint32_t finish(uint8_t *rec, uint32_t size) {
    uint32_t total = (size + 7u) & ~7u;
    memset(rec + size, 0, total - size);
    ((kvmi_record *)rec)->size = total;
    return total;
}

// MARK: identity

static int identify(vcpu_state *v, uint64_t gs, unsigned vcpu, kvmi_identity *out) {
    uint64_t task = 0;
    if (!mem(v, gs + K.current_task, &task, 8) || task < KERNEL_SPACE) return 0;
    if (task != v->cached_task) {
        kvmi_identity id;
        memset(&id, 0, sizeof id);
        id.task = task;
        id.vcpu = vcpu;
        uint64_t parent = 0;
        if (!mem(v, task + K.off_pid, &id.tid, 4) || !mem(v, task + K.off_tgid, &id.pid, 4) ||
            !mem(v, task + K.off_comm, id.comm, 16)) return 0;
        if (mem(v, task + K.off_parent, &parent, 8) && parent >= KERNEL_SPACE) mem(v, parent + K.off_tgid, &id.ppid, 4);
        v->id = id;
        v->cached_task = task;
    }
    *out = v->id;
    return 1;
}

// MARK: pending calls

static uint64_t pending_hash(uint64_t cr3, uint64_t ip, uint64_t sp) {
    return (cr3 ^ (ip * 0x9e3779b97f4a7c15ULL) ^ (sp >> 4)) * 0xff51afd7ed558ccdULL;
}

static uint8_t pending_tag(uint64_t h) { return (uint8_t)(h >> 56) | 1; }

static pending *pending_find(uint64_t cr3, uint64_t ip, uint64_t sp) {
    uint64_t h = pending_hash(cr3, ip, sp);
    uint8_t tag = pending_tag(h);
    for (int i = 0; i < PENDING_PROBE; i++) {
        unsigned at = (unsigned)((h + (uint64_t)i) % PENDING_SLOTS);
        if (K.tags[at] != tag) continue;
        pending *p = &K.table[at];
        if (p->cr3 == cr3 && p->ip == ip && p->sp == sp) return p;
    }
    return NULL;
}

/// What a pending call's bucket is counted by: its pt_regs address when keyed by it, else its
/// user stack pointer.
static uint64_t bucket_key(uint64_t cr3, uint64_t ip, uint64_t sp) { return ip == KEY_BY_REGS ? cr3 : sp; }

static unsigned sp_bucket(uint64_t sp) {
    return (unsigned)((sp >> 4) ^ (sp >> 16)) & (SP_BUCKETS - 1);
}

/// Whether a pending call may have this user stack pointer (read without the lock: an entry
/// is published before the guest can reach its return).
static int sp_may_be_pending(uint64_t sp) {
    return __atomic_load_n(&K.sp_pending[sp_bucket(sp)], __ATOMIC_ACQUIRE) != 0;
}

/// Marks a slot free or taken, keeping the per-stack-pointer counts (under pending_lock).
static void pending_release(pending *p) {
    size_t at = (size_t)(p - K.table);
    if (!K.tags[at]) return;
    K.tags[at] = 0;
    p->deferred = 0;
    __atomic_fetch_sub(&K.sp_pending[sp_bucket(bucket_key(p->cr3, p->ip, p->sp))], 1, __ATOMIC_RELEASE);
}

static void pending_take(pending *p, uint64_t cr3, uint64_t ip, uint64_t sp) {
    pending_release(p);
    K.tags[p - K.table] = pending_tag(pending_hash(cr3, ip, sp));
    p->cr3 = cr3;
    p->ip = ip;
    p->sp = sp;
    __atomic_fetch_add(&K.sp_pending[sp_bucket(bucket_key(cr3, ip, sp))], 1, __ATOMIC_RELEASE);
}

static pending *pending_slot(uint64_t cr3, uint64_t ip, uint64_t sp) {
    // The thread's last call never came back (exec, signal): replaced. Most entries have no
    // pending call under their key: the per-bucket count says so without probing the table.
    pending *same = sp_may_be_pending(bucket_key(cr3, ip, sp)) ? pending_find(cr3, ip, sp) : NULL;
    if (same) return same;
    uint64_t h = pending_hash(cr3, ip, sp);
    pending *oldest = NULL;
    for (int i = 0; i < PENDING_PROBE; i++) {
        unsigned at = (unsigned)((h + (uint64_t)i) % PENDING_SLOTS);
        pending *p = &K.table[at];
        if (!K.tags[at]) return p;
        if (!oldest || p->seen < oldest->seen) oldest = p;
    }
    __atomic_fetch_add(&K.ring->evicted, 1, __ATOMIC_RELAXED);
    return oldest;
}

/// Writes a deferred entry on its own: its call will not come back to be written with it
/// (under pending_lock).
static void pending_flush(pending *p) {
    if (!p->deferred) return;
    p->deferred = 0;
    ring_push(&p->entry, p->entry.r.size);
    __atomic_fetch_add(&K.ring->recorded, 1, __ATOMIC_RELAXED);
}

/// Writes every deferred entry of `task` (0: of every task), and frees their slots.
static void pending_flush_task(uint64_t task) {
    lock(&K.pending_lock);
    for (size_t i = 0; i < PENDING_SLOTS; i++) {
        pending *p = &K.table[i];
        if (!K.tags[i] || !p->deferred || (task && p->entry.who.task != task)) continue;
        pending_flush(p);
        pending_release(p);
    }
    unlock(&K.pending_lock);
}

// MARK: entries

static void on_syscall(unsigned vcpu, void *udata) {
    vcpu_state *v = K.vcpus[vcpu];
    if (!v) return;
    v->cr3_known = 0;
    uintptr_t kind = (uintptr_t)udata;
    int abi = kind == HOOK_SYS64 ? KVMI_ABI_X86_64 : KVMI_ABI_I386;
    bump(&v->count->calls);
    // Once the per-cpu stack top is trusted, pt_regs (the call's number included) is found in
    // memory with no register read. Until then, the 64-bit entry's rsi holds the number: once
    // that has agreed with pt_regs often enough, a call the model does not need costs one
    // register read and no guest memory.
    uint64_t regs_at = regs_at_stack_top(v);
    int trust = __atomic_load_n(&K.rsi_trust, __ATOMIC_RELAXED);
    int64_t rsi_nr = 0;
    int have_rsi = !regs_at && kind == HOOK_SYS64 && !K.all_calls && trust >= 0;
    if (have_rsi) {
        rsi_nr = (int32_t)reg(v, v->rsi);
        if (trust >= RSI_CONFIRMATIONS && !kvmi_model_needs(abi, rsi_nr)) return;
    }
    if (!regs_at) {
        regs_at = reg(v, v->rdi);
        stack_top_check(v, regs_at);
    }
    pt_regs buf;
    const pt_regs *pr = regs_get(v, regs_at, &buf);
    if (!pr) {
        __atomic_fetch_add(&K.ring->unreadable, 1, __ATOMIC_RELAXED);
        return;
    }
    int64_t nr = abi == KVMI_ABI_I386 ? (int64_t)(int32_t)(pr->orig_ax == (uint64_t)-1 ? pr->ax : pr->orig_ax)
                                      : (int64_t)(pr->orig_ax == (uint64_t)-1 ? pr->ax : pr->orig_ax);
    if (have_rsi && trust < RSI_CONFIRMATIONS) {
        int agreed = rsi_nr == (int64_t)(int32_t)pr->orig_ax;
        __atomic_store_n(&K.rsi_trust, agreed ? trust + 1 : -1, __ATOMIC_RELAXED);
    }
    // Calls the model does not need, and anonymous mappings, are only counted (unless all=1).
    int mmap_call = abi == KVMI_ABI_I386 ? nr == 192 : nr == 9;
    int anonymous = mmap_call && ((int32_t)(abi == KVMI_ABI_I386 ? pr->di : pr->r8) == -1 ||
                                  ((abi == KVMI_ABI_I386 ? pr->si : pr->r10) & 0x20));
    if (!K.all_calls && (!kvmi_model_needs(abi, nr) || anonymous)) return;
    // Until page-table isolation is known, the kernel page table of this call (see on_sysret).
    if (K.ring->pti == 0) v->entry_cr3 = cr3_of(v) & CR3_MASK;
    uint8_t *rec = v->rec;
    kvmi_entry *e = (kvmi_entry *)rec;
    memset(e, 0, sizeof *e);
    e->r.type = KVMI_ENTRY;
    e->r.abi = (uint16_t)abi;
    e->r.time_ns = entry_ns(v);
    uint64_t gen = __atomic_load_n(&K.exit_gen, __ATOMIC_ACQUIRE);
    if (v->cached_task && v->cached_regs_at == regs_at && v->cached_exit_gen == gen) {
        e->who = v->id;
    } else if (identify(v, reg(v, v->gs_base), vcpu, &e->who)) {
        v->cached_regs_at = regs_at;
        v->cached_exit_gen = gen;
    } else {
        __atomic_fetch_add(&K.ring->unreadable, 1, __ATOMIC_RELAXED);
        e->who.vcpu = vcpu;
    }
    e->cookie = ((uint64_t)vcpu << 56) | (++v->counter & 0x00ffffffffffffffULL);
    e->user_ip = pr->ip;
    e->user_sp = pr->sp;
    e->nr = nr;
    if (abi == KVMI_ABI_I386) {
        uint64_t a[6] = {pr->bx, pr->cx, pr->dx, pr->si, pr->di, pr->bp};
        for (int i = 0; i < 6; i++) e->args[i] = (uint32_t)a[i];
    } else {
        uint64_t a[6] = {pr->di, pr->si, pr->dx, pr->r10, pr->r8, pr->r9};
        memcpy(e->args, a, sizeof a);
    }
    kvmi_argspec s = kvmi_spec(abi, e->nr);
    uint32_t size = sizeof *e;
    uint8_t retry_tag[2] = {0, 0};
    uint64_t retry_ptr[2] = {0, 0};
    char text[4096];
    int8_t paths[2] = {s.path1, s.path2};
    for (int i = 0; i < 2; i++) {
        if (paths[i] < 0) continue;
        int cut = 0;
        int n = string_at(v, e->args[paths[i]], text, K.max_string, &cut);
        uint8_t tag = i == 0 ? KVMI_PATH1 : KVMI_PATH2;
        if (n < 0) {
            retry_tag[i] = tag;
            retry_ptr[i] = e->args[paths[i]];
            add_item(rec, &size, tag, KVMI_ITEM_UNREADABLE, NULL, 0);
        } else {
            add_item(rec, &size, tag, cut ? KVMI_ITEM_TRUNCATED : 0, text, (uint16_t)n);
        }
    }
    uint64_t sa_ptr = 0, sa_len = 0;
    if (s.sa_ptr >= 0) { sa_ptr = e->args[s.sa_ptr]; sa_len = e->args[s.sa_len]; }
    if (s.msg >= 0 && e->args[s.msg]) {
        if (abi == KVMI_ABI_I386) {
            uint32_t m[2];
            if (mem(v, e->args[s.msg], m, sizeof m)) { sa_ptr = m[0]; sa_len = m[1]; }
        } else {
            uint64_t m[2];
            if (mem(v, e->args[s.msg], m, sizeof m)) { sa_ptr = m[0]; sa_len = (uint32_t)m[1]; }
        }
    }
    if (abi == KVMI_ABI_I386 && e->nr == 102) {  // socketcall(call, u32 args[])
        uint32_t a[6];
        if (mem(v, e->args[1], a, sizeof a)) {
            add_item(rec, &size, KVMI_SOCKETCALL, 0, a, sizeof a);
            uint64_t call = e->args[0];
            if (call == 2 || call == 3) { sa_ptr = a[1]; sa_len = a[2]; }        // bind, connect
            else if (call == 11) { sa_ptr = a[4]; sa_len = a[5]; }              // sendto
            else if (call == 16) {                                              // sendmsg
                uint32_t m[2];
                if (mem(v, a[1], m, sizeof m)) { sa_ptr = m[0]; sa_len = m[1]; }
            }
        }
    }
    if (sa_ptr && sa_len >= 2) {
        uint8_t sa[128];
        size_t n = sa_len > sizeof sa ? sizeof sa : sa_len;
        if (mem(v, sa_ptr, sa, n)) add_item(rec, &size, KVMI_SOCKADDR, 0, sa, (uint16_t)n);
        else add_item(rec, &size, KVMI_SOCKADDR, KVMI_ITEM_UNREADABLE, NULL, 0);
    }
    if (s.argv >= 0 && e->args[s.argv]) {
        unsigned width = abi == KVMI_ABI_I386 ? 4 : 8, budget = 3072;
        for (int i = 0; i < 128; i++) {
            uint64_t p = 0;
            if (!mem(v, e->args[s.argv] + (uint64_t)i * width, &p, width)) break;
            if (p == 0) break;
            int cut = 0;
            unsigned max = budget < K.max_string ? budget : K.max_string;
            int n = string_at(v, p, text, max, &cut);
            if (n < 0) { add_item(rec, &size, KVMI_ARGV, KVMI_ITEM_UNREADABLE, NULL, 0); continue; }
            if (!add_item(rec, &size, KVMI_ARGV, cut ? KVMI_ITEM_TRUNCATED : 0, text, (uint16_t)n)) break;
            budget -= (unsigned)n < budget ? (unsigned)n : budget;
            if (budget < 16) break;
        }
        v->cached_task = 0;  // comm changes at exec: read the identity again next time
    }
    if (s.clone3 >= 0) {
        uint64_t flags = 0;
        if (mem(v, e->args[s.clone3], &flags, 8)) add_item(rec, &size, KVMI_CLONE_FLAGS, 0, &flags, 8);
    }
    if (s.open_how >= 0) {
        uint64_t flags = 0;
        if (mem(v, e->args[s.open_how], &flags, 8)) add_item(rec, &size, KVMI_OPEN_HOW, 0, &flags, 8);
    }
    if (s.times >= 0 && e->args[s.times] != 0 && s.times_size <= 32) {
        uint8_t times[32];
        if (mem(v, e->args[s.times], times, s.times_size)) add_item(rec, &size, KVMI_FILE_TIMES, 0, times, s.times_size);
        else add_item(rec, &size, KVMI_FILE_TIMES, KVMI_ITEM_UNREADABLE, NULL, 0);
    }
    if (s.wbuf >= 0 && e->args[s.wlen] > 0) {
        uint16_t entropy[2];
        if (written_entropy(v, e->args[s.wbuf], e->args[s.wlen], entropy)) add_item(rec, &size, KVMI_WRITE_ENTROPY, 0, entropy, sizeof entropy);
    }
    uint32_t total = finish(rec, size);
    int by_regs = kind == HOOK_SYS64 && __atomic_load_n(&K.sys64_return_known, __ATOMIC_ACQUIRE);
    // With all=1, a 64-bit call the model does not need and that read nothing goes into the ring
    // with its return, as one record.
    int defer = K.all_calls && by_regs && size == sizeof *e && !s.no_return && !kvmi_model_needs(abi, nr);
    if (!defer) {
        ring_push(rec, total);
        bump(&v->count->recorded);
    }
    if (s.no_return) return;
    // A 64-bit call comes back to the instruction after entry_SYSCALL_64's call, on the same
    // kernel stack: its pt_regs address is the key. A fast 32-bit call (sysenter, 32-bit syscall)
    // returns to the vDSO's landing pad, which the kernel sets after this point: match its return
    // by page table and stack alone; other 32-bit calls by page table, stack and instruction.
    uint64_t key_cr3, key_ip, key_sp;
    if (by_regs) {
        key_cr3 = regs_at; key_ip = KEY_BY_REGS; key_sp = 0;
    } else {
        key_cr3 = cr3_of(v) & CR3_MASK; key_ip = kind == HOOK_FAST32 ? 0 : pr->ip; key_sp = pr->sp;
    }
    lock(&K.pending_lock);
    pending *p = pending_slot(key_cr3, key_ip, key_sp);
    pending_flush(p);  // the slot's earlier call (this thread's, or evicted) never came back
    pending_take(p, key_cr3, key_ip, key_sp);
    p->deferred = defer;
    if (defer) memcpy(&p->entry, e, sizeof *e);
    p->user_ip = pr->ip;
    p->user_sp = pr->sp;
    p->cookie = e->cookie;
    p->nr = e->nr;
    p->abi = (uint16_t)abi;
    p->seen = ++K.pending_clock;
    p->retry_tag[0] = retry_tag[0];
    p->retry_tag[1] = retry_tag[1];
    p->retry_ptr[0] = retry_ptr[0];
    p->retry_ptr[1] = retry_ptr[1];
    p->fdpair_ptr = s.fdpair >= 0 ? e->args[s.fdpair] : 0;
    unlock(&K.pending_lock);
}

// MARK: returns

static pending *pending_match(uint64_t cr3, uint64_t ip, uint64_t sp, int compat) {
    pending *p = pending_find(cr3, ip, sp);
    if (!p && compat) p = pending_find(cr3, 0, sp);
    return p;
}

static void complete_return(vcpu_state *v, const pending *call, uint64_t rax);
static void after_reset(qemu_plugin_id_t id);

static void returned(vcpu_state *v, uint64_t cr3, uint64_t ip, uint64_t sp, uint64_t rax, int via_sysret, int compat) {
    pending found;
    int have = 0;
    if (compat) { ip = (uint32_t)ip; sp = (uint32_t)sp; }
    lock(&K.pending_lock);
    pending *p = pending_match(cr3 & CR3_MASK, ip, sp, compat);
    int exact = p != NULL;
    // With page-table isolation the user CR3 is the kernel's plus 4 KiB.
    if (!p && (cr3 & PTI_USER_BIT) && K.ring->pti != 1 && (via_sysret || K.ring->pti == 2)) {
        p = pending_match((cr3 & CR3_MASK) - PTI_USER_BIT, ip, sp, compat);
    }
    if (p) {
        memcpy(&found, p, offsetof(pending, entry));  // 32-bit calls are never deferred
        pending_release(p);
        have = 1;
        if (via_sysret && K.ring->pti == 0) K.ring->pti = exact ? 1 : 2;
    }
    unlock(&K.pending_lock);
    if (have) complete_return(v, &found, rax);
}

/// Publishes the return of a pending call with its result, and what it could not read at entry.
static void complete_return(vcpu_state *v, const pending *call, uint64_t rax) {
    bump(&v->count->returns);
    uint8_t *rec = v->rec;
    kvmi_return *r = (kvmi_return *)rec;
    memset(r, 0, sizeof *r);
    r->r.type = KVMI_RETURN;
    r->r.abi = call->abi;
    r->r.time_ns = 0;  // a call is timed at its entry (one clock read per call, not two)
    r->cookie = call->cookie;
    r->ret = call->abi == KVMI_ABI_I386 ? (int64_t)(int32_t)rax : (int64_t)rax;
    uint32_t size = sizeof *r;
    char text[4096];
    for (int i = 0; i < 2; i++) {
        if (!call->retry_tag[i]) continue;
        int cut = 0;
        int n = string_at(v, call->retry_ptr[i], text, K.max_string, &cut);
        if (n < 0) {
            __atomic_fetch_add(&K.ring->unreadable, 1, __ATOMIC_RELAXED);
            add_item(rec, &size, call->retry_tag[i], KVMI_ITEM_UNREADABLE, NULL, 0);
        } else {
            add_item(rec, &size, call->retry_tag[i], cut ? KVMI_ITEM_TRUNCATED : 0, text, (uint16_t)n);
        }
    }
    if (call->fdpair_ptr && r->ret == 0) {
        int32_t fds[2];
        if (mem(v, call->fdpair_ptr, fds, sizeof fds)) add_item(rec, &size, KVMI_FDPAIR, 0, fds, sizeof fds);
    }
    ring_push(rec, finish(rec, size));
}

/// A 64-bit call's return: RSP is at its pt_regs, where the kernel left the result and the user's
/// instruction and stack pointers. A return elsewhere than after the call (a signal handler, a new
/// program, a restart) ends the call without a result.
static void on_sys64_return(unsigned vcpu, void *udata) {
    (void)udata;
    vcpu_state *v = K.vcpus[vcpu];
    if (!v) return;
    v->cr3_known = 0;
    uint64_t regs_at = regs_at_stack_top(v);
    if (!regs_at) {
        regs_at = reg(v, v->rsp);
        stack_top_check(v, regs_at);
    }
    if (!sp_may_be_pending(regs_at)) return;
    pt_regs buf;
    const pt_regs *pr = regs_get(v, regs_at, &buf);
    if (!pr) return;
    uint64_t ip = pr->ip, sp = pr->sp, ax = pr->ax;
    pending found;
    int have = 0;
    lock(&K.pending_lock);
    pending *p = pending_find(regs_at, KEY_BY_REGS, 0);
    if (p && p->user_ip == ip && p->user_sp == sp) {
        if (p->deferred) {
            // The whole call goes into the ring straight from where its entry waited.
            uint64_t next;
            kvmi_call *c = (kvmi_call *)ring_claim(sizeof *c, &next);
            if (c) {
                memcpy(&c->e, &p->entry, sizeof c->e);
                c->e.r.type = KVMI_CALL;
                c->e.r.size = sizeof *c;
                c->ret = (int64_t)ax;
                ring_commit(next);
            }
            pending_release(p);
            unlock(&K.pending_lock);
            bump(&v->count->recorded);
            bump(&v->count->returns);
            return;
        }
        // A call already in the ring needs only what precedes the held entry.
        memcpy(&found, p, offsetof(pending, entry));
        pending_release(p);
        have = 1;
    } else if (p) {
        // The task leaves this kernel stack for another instruction (a new program, a signal
        // handler, a restart): its call will not come back here. Free the key (the next returns
        // of the task are let go without the lock) and write the entry if it waited.
        pending_flush(p);
        pending_release(p);
    }
    unlock(&K.pending_lock);
    if (have) complete_return(v, &found, ax);
}

static void on_sysret(unsigned vcpu, void *udata) {
    vcpu_state *v = K.vcpus[vcpu];
    if (!v) return;
    v->cr3_known = 0;
    int compat = (uintptr_t)udata == HOOK_SYSRET32;
    if (!compat && __atomic_load_n(&K.sys64_return_known, __ATOMIC_ACQUIRE)) {
        // 64-bit returns are matched after the call; sysretq is watched only to learn whether the
        // user page table differs from the kernel's (page-table isolation), then no more.
        if (K.ring->pti != 0 || !v->entry_cr3) return;
        uint64_t user = cr3_of(v) & CR3_MASK;
        int pti = user == v->entry_cr3 ? 1 : user == (v->entry_cr3 | PTI_USER_BIT) ? 2 : 0;
        if (pti && __atomic_exchange_n(&K.ring->pti, (uint64_t)pti, __ATOMIC_ACQ_REL) == 0) qemu_plugin_reset(K.id, after_reset);
        return;
    }
    uint64_t sp = reg(v, v->rsp);
    if (compat) sp = (uint32_t)sp;
    if (!sp_may_be_pending(sp)) return;
    uint64_t ip = reg(v, v->rcx);
    if (compat) ip = (uint32_t)ip;
    returned(v, cr3_of(v), ip, sp, reg(v, v->rax), 1, compat);
}

static void on_iret(unsigned vcpu, void *udata) {
    (void)udata;
    vcpu_state *v = K.vcpus[vcpu];
    if (!v) return;
    v->cr3_known = 0;
    uint64_t frame[5];  // ip, cs, flags, sp, ss
    if (!mem(v, reg(v, v->rsp), frame, sizeof frame) || (frame[1] & 3) != 3) return;
    int compat = frame[1] == USER32_CS;
    if (!sp_may_be_pending(compat ? (uint32_t)frame[3] : frame[3])) return;
    returned(v, cr3_of(v), frame[0], frame[3], reg(v, v->rax), 0, compat);
}

static void on_task_exit(unsigned vcpu, void *udata) {
    (void)udata;
    vcpu_state *v = K.vcpus[vcpu];
    if (!v) return;
    v->cr3_known = 0;
    kvmi_task_exit x;
    memset(&x, 0, sizeof x);
    x.r.type = KVMI_TASK_EXIT;
    x.r.size = sizeof x;
    x.r.time_ns = now_ns();
    x.code = (int64_t)reg(v, v->rdi);
    __atomic_fetch_add(&K.exit_gen, 1, __ATOMIC_RELEASE);
    v->cached_task = 0;
    if (!identify(v, reg(v, v->gs_base), vcpu, &x.who)) return;
    v->cached_task = 0;
    if (K.all_calls) pending_flush_task(x.who.task);
    ring_push(&x, sizeof x);
}

// MARK: translation

static void calibrate(struct qemu_plugin_tb *tb, uint64_t va) {
    if ((va - K.entry_link) % K.align != 0) return;
    uint8_t bytes[32];
    size_t got = 0, n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n && got < K.sig_len; i++) {
        got += qemu_plugin_insn_data(qemu_plugin_tb_get_insn(tb, i), bytes + got, sizeof bytes - got);
    }
    if (got < K.sig_len || memcmp(bytes, K.sig, K.sig_len) != 0) return;
    K.slide = va - K.entry_link;
    K.calibrated = 1;
    K.ring->slide = K.slide;
    __atomic_store_n(&K.ring->calibrated, 1, __ATOMIC_RELEASE);
    kvmi_calibration c = {{sizeof c, KVMI_CALIBRATED, 0, now_ns()}, K.slide, va};
    ring_push(&c, sizeof c);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

static void at_exit(qemu_plugin_id_t id, void *p);

static void after_reset(qemu_plugin_id_t id) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
}

/// The local timer's interrupt entry: the CPU has just pushed the interrupted context (RIP at
/// [rsp], CS at [rsp+8]). One that came from user mode is a sample of user code running: the
/// instruction and the address space (CR3), every Nth per vCPU. A timer-driven profile, as perf
/// takes one: no cost for the code between ticks.
static void on_timer(unsigned int vcpu, void *udata) {
    (void)udata;
    vcpu_state *v = vcpu < MAX_VCPUS ? K.vcpus[vcpu] : NULL;
    if (!v) return;
    uint64_t frame[2];
    if (!mem(v, reg(v, v->rsp), frame, sizeof frame) || (frame[1] & 3) != 3) return;
    if (++v->exec_ticks < K.exec_every) return;
    v->exec_ticks = 0;
    kvmi_exec_sample s;
    memset(&s, 0, sizeof s);
    s.r.size = sizeof s;
    s.r.type = KVMI_EXEC_SAMPLE;
    s.r.time_ns = now_ns();
    s.cr3 = reg(v, v->cr3) & CR3_MASK;
    s.rip = frame[0];
    s.vcpu = vcpu;
    ring_push(&s, sizeof s);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    uint64_t va = qemu_plugin_tb_vaddr(tb);
    if (va < KERNEL_SPACE) return;  // user code is never instrumented
    if (!K.calibrated) {
        calibrate(tb, va);
        if (K.calibrated) {
            // Blocks translated before the slide was known lack their hooks: start again.
            qemu_plugin_reset(id, after_reset);
            return;
        }
    }
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t a = qemu_plugin_insn_vaddr(insn);
        if (K.calibrated) {
            uint64_t link = a - K.slide;
            uintptr_t kind = 0;
            if (link == K.sys64) kind = HOOK_SYS64;
            else if (link == K.fast32) kind = HOOK_FAST32;
            else if (link == K.int80) kind = HOOK_INT80;
            else if (link == K.do_exit) kind = HOOK_EXIT;
            if (K.exec_every && K.timer && link == K.timer) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_timer, QEMU_PLUGIN_CB_R_REGS, NULL);
            }
            if (kind == HOOK_EXIT) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_task_exit, QEMU_PLUGIN_CB_R_REGS, (void *)kind);
            } else if (kind) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_syscall, QEMU_PLUGIN_CB_R_REGS, (void *)kind);
            }
        }
        size_t size = qemu_plugin_insn_size(insn);
        if (K.calibrated && !K.sys64_return_known && size == CALL_REL32_SIZE && a - K.slide - K.entry_link < PAGE) {
            // entry_SYSCALL_64's call of do_syscall_64: its next instruction is where every 64-bit
            // call comes back. Start again so that blocks translated before know it.
            uint8_t c[CALL_REL32_SIZE];
            int32_t rel;
            if (qemu_plugin_insn_data(insn, c, sizeof c) == sizeof c && c[0] == CALL_REL32 &&
                (memcpy(&rel, c + 1, sizeof rel), a + CALL_REL32_SIZE + (uint64_t)(int64_t)rel - K.slide == K.sys64)) {
                K.sys64_return = a + CALL_REL32_SIZE;
                __atomic_store_n(&K.sys64_return_known, 1, __ATOMIC_RELEASE);
                qemu_plugin_reset(id, after_reset);
                return;
            }
        }
        if (K.sys64_return_known && a == K.sys64_return) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_sys64_return, QEMU_PLUGIN_CB_R_REGS, (void *)(uintptr_t)HOOK_SYS64_RETURN);
        }
        if (size != 2 && size != 3) continue;
        uint8_t b[3] = {0, 0, 0};
        qemu_plugin_insn_data(insn, b, size);
        int sysretq = size == 3 && b[0] == 0x48 && b[1] == 0x0f && b[2] == 0x07;
        int sysretl = size == 2 && b[0] == 0x0f && b[1] == 0x07;
        int iretq = size == 2 && b[0] == 0x48 && b[1] == 0xcf;
        // Once 64-bit returns are matched after the call and page-table isolation is known,
        // sysretq needs no hook.
        if (sysretq && K.sys64_return_known && K.ring->pti != 0) sysretq = 0;
        if (sysretq || sysretl) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_sysret, QEMU_PLUGIN_CB_R_REGS,
                                                   (void *)(uintptr_t)(sysretq ? HOOK_SYSRET : HOOK_SYSRET32));
        } else if (iretq) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_iret, QEMU_PLUGIN_CB_R_REGS, (void *)(uintptr_t)HOOK_IRET);
        }
    }
}

// MARK: setup

static struct qemu_plugin_register *find_register(GArray *regs, const char *name) {
    qemu_plugin_reg_descriptor *d = (qemu_plugin_reg_descriptor *)regs->data;
    for (unsigned i = 0; i < regs->len; i++) {
        if (strcmp(d[i].name, name) == 0) return d[i].handle;
    }
    return NULL;
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu) {
    (void)id;
    if (vcpu >= MAX_VCPUS) { fail("kanshi-vmi: more vCPUs than the plugin supports (64)"); return; }
    vcpu_state *v = calloc(1, sizeof *v);
    if (!v) return;
    GArray *regs = qemu_plugin_get_registers();
    v->rdi = find_register(regs, "rdi");
    v->rsi = find_register(regs, "rsi");
    v->rax = find_register(regs, "rax");
    v->rcx = find_register(regs, "rcx");
    v->rsp = find_register(regs, "rsp");
    v->gs_base = find_register(regs, "gs_base");
    v->cr3 = find_register(regs, "cr3");
    g_array_free(regs, 1);
    if (!v->rdi || !v->rsi || !v->rax || !v->rcx || !v->rsp || !v->gs_base || !v->cr3) {
        fail("kanshi-vmi: QEMU does not offer the registers rdi, rsi, rax, rcx, rsp, gs_base and cr3 to plugins");
        free(v);
        return;
    }
    v->regbuf = g_byte_array_new();
    v->membuf = g_byte_array_new();
    v->count = &kvmi_ring_vcpu_counters(K.ring)[vcpu];
    K.vcpus[vcpu] = v;
    __atomic_fetch_add(&K.ring->vcpus, 1, __ATOMIC_RELAXED);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    if (!K.ring) return;
    if (K.all_calls) pending_flush_task(0);
    __atomic_store_n(&K.ring->state, 2, __ATOMIC_RELEASE);
}

static int parse_hex_bytes(const char *s, uint8_t *out, size_t cap, size_t *len) {
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap || n == 0) return 0;
    for (size_t i = 0; i < n / 2; i++) {
        char b[3] = {s[2 * i], s[2 * i + 1], 0};
        char *end;
        out[i] = (uint8_t)strtoul(b, &end, 16);
        if (*end) return 0;
    }
    *len = n / 2;
    return 1;
}

static int open_ring(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= KVMI_RING_HEADER_SIZE) { close(fd); return 0; }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return 0;
    kvmi_ring_header *h = m;
    if (h->magic != KVMI_RING_MAGIC || h->version != KVMI_RING_VERSION ||
        h->capacity + KVMI_RING_HEADER_SIZE != (uint64_t)st.st_size) {
        munmap(m, (size_t)st.st_size);
        return 0;
    }
    K.ring = h;
    K.data = (uint8_t *)m + KVMI_RING_HEADER_SIZE;
    K.capacity = h->capacity;
    return 1;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    K.id = id;
    K.align = 0x200000;
    K.max_string = 256;
    for (int c = 1; c <= KVMI_ENTROPY_SAMPLE; c++) n_log2_n[c] = (float)c * log2f((float)c);
    K.ram_once = (pthread_once_t)PTHREAD_ONCE_INIT;
    unsigned eax, ebx, ecx, edx;
    K.tsc_invariant = __get_cpuid(CPUID_POWER_LEAF, &eax, &ebx, &ecx, &edx) && (edx & CPUID_INVARIANT_TSC);
    K.ns0 = now_ns();
    K.tsc0 = __rdtsc();
    if (!info->system_emulation || strcmp(info->target_name, "x86_64") != 0) {
        qemu_plugin_outs("kanshi-vmi: needs qemu-system-x86_64\n");
        return -1;
    }
    const char *ring = NULL;
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) { qemu_plugin_outs("kanshi-vmi: arguments are KEY=VALUE\n"); return -1; }
        size_t klen = (size_t)(eq - argv[i]);
        const char *val = eq + 1;
        uint64_t num = strtoull(val, NULL, 0);
#define KEY(k) (klen == strlen(k) && strncmp(argv[i], k, klen) == 0)
        if (KEY("ring")) ring = val;
        else if (KEY("entry")) K.entry_link = num;
        else if (KEY("sig")) { if (!parse_hex_bytes(val, K.sig, sizeof K.sig, &K.sig_len)) { qemu_plugin_outs("kanshi-vmi: bad sig\n"); return -1; } }
        else if (KEY("align")) K.align = num;
        else if (KEY("sys64")) K.sys64 = num;
        else if (KEY("fast32")) K.fast32 = num;
        else if (KEY("int80")) K.int80 = num;
        else if (KEY("exit")) K.do_exit = num;
        else if (KEY("current_task")) K.current_task = num;
        else if (KEY("top_of_stack")) K.top_of_stack = num;
        else if (KEY("pid")) K.off_pid = num;
        else if (KEY("tgid")) K.off_tgid = num;
        else if (KEY("comm")) K.off_comm = num;
        else if (KEY("parent")) K.off_parent = num;
        else if (KEY("maxstr")) K.max_string = num > 4000 ? 4000 : (unsigned)num;
        else if (KEY("all")) K.all_calls = num != 0;
        else if (KEY("ram")) K.ram_size = num;
        else if (KEY("exec")) K.exec_every = num;
        else if (KEY("timer")) K.timer = num;
        else { qemu_plugin_outs("kanshi-vmi: unknown argument\n"); return -1; }
#undef KEY
    }
    if (!ring || !open_ring(ring)) {
        qemu_plugin_outs("kanshi-vmi: ring=PATH must name a ring file made by kanshi\n");
        return -1;
    }
    if (!K.entry_link || !K.sig_len || !K.sys64 || !K.current_task || !K.off_pid || !K.off_tgid || !K.off_comm || K.align == 0) {
        fail("kanshi-vmi: missing entry, sig, sys64, current_task, pid, tgid or comm");
        return -1;
    }
    K.ring->state = 1;
    K.ring->guest_ram = K.ram_size ? KVMI_GUEST_RAM_NOT_FOUND : KVMI_GUEST_RAM_NOT_OFFERED;
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
