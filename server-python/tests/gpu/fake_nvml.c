/*
 * fake_nvml.c: a stand-in libnvidia-ml.so.1 for the GPU telemetry tests.
 *
 * Build:  gcc -shared -fPIC -O2 -o DIR/libnvidia-ml.so.1 fake_nvml.c -lpthread
 * (tests/gpu/fake_nvml.py builds it, cached by source hash). It exports the NVML functions
 * gpu_workbench/gpu/nvml.py uses, with the real signatures and struct layouts, returns
 * scripted values and error codes, and CHECKS what the caller passes:
 *   - NULL out pointers                     -> NVML_ERROR_INVALID_ARGUMENT (2)
 *   - a handle this library did not hand out -> 2
 *   - nvmlMemory_v2_t.version != 0x02000028  -> NVML_ERROR_ARGUMENT_VERSION_MISMATCH (25)
 *   - a process buffer that is too small     -> NVML_ERROR_INSUFFICIENT_SIZE (7), count set
 *   - any call before nvmlInit*              -> NVML_ERROR_UNINITIALIZED (1)
 *
 * Compile flags (each build goes to its own directory):
 *   -DFAKE_CONF_COMPUTE        also export nvmlDeviceGetConfComputeMemSizeInfo, so
 *                              nvmlDeviceGetComputeRunningProcesses_v3 writes the 5-field
 *                              nvmlProcessInfo_v3_t (32 bytes per entry); without it _v3
 *                              writes the 4-field v2 struct (24 bytes), as real drivers do.
 *   -DFAKE_DETAIL_LIST         also export nvmlDeviceGetRunningProcessDetailList (with
 *                              FAKE_CONF_COMPUTE: _v3 writes the 4-field struct again).
 *   -DFAKE_OLD_THROTTLE_ONLY   omit nvmlDeviceGetCurrentClocksEventReasons (old drivers).
 *   -DFAKE_NO_PROCESS_V3       omit nvmlDeviceGetComputeRunningProcesses_v3.
 *   -DFAKE_NO_PROCESS_V2       omit nvmlDeviceGetComputeRunningProcesses_v2.
 *   -DFAKE_NO_MEMORY_V2        omit nvmlDeviceGetMemoryInfo_v2.
 *   -DFAKE_NO_EVENTS           omit the event API (nvmlEventSet*, nvmlDeviceRegisterEvents).
 *
 * Behaviour is scripted by the text file named by env GPUWB_FAKE_NVML_SCRIPT. It is re-read
 * whenever its (mtime, size, inode) changes, checked on every call; replace it atomically
 * (write a temporary file, rename it over). No variable or no file: an empty script
 * (driver 550.54.15, CUDA 12040, zero GPUs). Format, one statement per line; '#' starts a
 * comment (anywhere on a line); blank lines are ignored:
 *
 *   driver 550.54.15               nvmlSystemGetDriverVersion
 *   cuda 12040                     nvmlSystemGetCudaDriverVersion(_v2)
 *   init 0                         return code of nvmlInit_v2/nvmlInit/nvmlInitWithFlags
 *                                  (e.g. 9 = driver not loaded); 0 by default
 *   gpu 0 uuid=GPU-0000 util=87 memutil=40 mem_used=65498251264 mem_total=85899345920
 *       temp=71 slowdown=90 power_mw=350000 limit_mw=700000 reasons=0x0 ecc_cv=0 ecc_uv=0
 *       ecc_ca=0 ecc_ua=0 remap_corr=0 remap_unc=0 remap_pending=0 remap_failure=0
 *       pcie_gen=5 pcie_maxgen=5 pcie_width=16 pcie_maxwidth=16 persistence=1 lost=0
 *                                  (all on one line) one GPU; the GPU count is the highest
 *                                  index + 1 (= the number of gpu lines numbered 0..n-1).
 *                                  Numbers are decimal or 0x hex. Missing keys: uuid
 *                                  GPU-00000000-0000-0000-0000-<index>, util/memutil 0,
 *                                  mem_used 0, mem_total 85899345920, temp 40, slowdown 90,
 *                                  power_mw 100000, limit_mw 700000, reasons 0, ecc_* 0,
 *                                  remap_* 0, pcie 5/5/16/16, persistence 1, lost 0.
 *                                  lost=1: every device call for that GPU (handle lookup
 *                                  included) returns 15 (NVML_ERROR_GPU_IS_LOST).
 *   name 0 NVIDIA H100 80GB HBM3   the rest of the line is GPU 0's name
 *                                  (default "NVIDIA Fake GPU")
 *   proc 0 4242 8589934592         a compute process on GPU 0: pid, used bytes
 *                                  (18446744073709551615 = NVML_VALUE_NOT_AVAILABLE)
 *   xid 0 79                       an XidCriticalError event (eventData = 79) on GPU 0
 *   event 0 0x2 0                  any event: GPU, eventType, eventData (0x2 = DoubleBitEcc)
 *                                  xid/event lines are delivered once each through
 *                                  nvmlEventSetWait(_v2), in file order: the library counts
 *                                  the ones delivered so far and, after a re-read, goes on
 *                                  from that ordinal. Events for a GPU/type that was not
 *                                  registered are skipped (consumed).
 *   fail nvmlDeviceGetPowerUsage 3 every call of that function returns 3 (NOT_SUPPORTED)
 *   fail nvmlDeviceGetRemappedRows 3 1   only for GPU 1
 *
 * Memory: nvmlDeviceGetMemoryInfo_v2 reports used = mem_used and reserved =
 * min(512 MiB, mem_total - mem_used); the v1 nvmlDeviceGetMemoryInfo reports
 * used = mem_used + reserved (as real drivers do), so a test can tell which one was called.
 *
 * Optional env GPUWB_FAKE_NVML_CALLS=/path: after every call the library rewrites that file
 * (write + rename) with the number of nvmlDevice* calls this process made so far.
 *
 * Thread-safe: one mutex around the state; nvmlEventSetWait sleeps without holding it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef unsigned int nvmlReturn_t;

#define MAX_GPUS 64
#define MAX_PROCS 4096
#define MAX_EVENTS 4096
#define MAX_FAILS 256
#define RESERVED_BYTES 536870912ULL

struct fake_device {
    int index;
};
typedef struct fake_device *nvmlDevice_t;

struct fake_event_set {
    unsigned magic;
    unsigned long long masks[MAX_GPUS];
};
typedef struct fake_event_set *nvmlEventSet_t;
#define EVENT_SET_MAGIC 0x45564e54u

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;
#define NVML_MEMORY_V2 ((unsigned)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} nvmlProcessInfo_v3_t;

typedef struct {
    unsigned long long protectedMemSizeKib;
    unsigned long long unprotectedMemSizeKib;
} nvmlConfComputeMemSizeInfo_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

struct gpu {
    char uuid[96];
    char name[96];
    unsigned util, memutil;
    unsigned long long mem_used, mem_total;
    unsigned temp, slowdown, power_mw, limit_mw;
    unsigned long long reasons;
    unsigned long long ecc_cv, ecc_uv, ecc_ca, ecc_ua;
    unsigned remap_corr, remap_unc, remap_pending, remap_failure;
    unsigned pcie_gen, pcie_maxgen, pcie_width, pcie_maxwidth;
    unsigned persistence;
    int lost;
};

struct proc {
    int gpu;
    unsigned pid;
    unsigned long long mem;
};

struct event {
    int gpu;
    unsigned long long type;
    unsigned long long data;
};

struct fail {
    char fn[96];
    int gpu; /* -1: every GPU */
    unsigned code;
};

struct script {
    char driver[80];
    int cuda;
    unsigned init_rc;
    int ngpus;
    struct gpu gpus[MAX_GPUS];
    int nprocs;
    struct proc procs[MAX_PROCS];
    int nevents;
    struct event events[MAX_EVENTS];
    int nfails;
    struct fail fails[MAX_FAILS];
};

static pthread_mutex_t M = PTHREAD_MUTEX_INITIALIZER;
static struct script S, T; /* current, being parsed */
static int loaded;
static struct stat stamp;
static int have_stamp;
static int init_count;
static unsigned long long device_calls;
static int events_delivered __attribute__((unused));
static struct fake_device devices[MAX_GPUS];

/* ---------------------------------------------------------------- script */

static unsigned long long num(const char *s) {
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) return strtoull(s + 2, NULL, 16);
    return strtoull(s, NULL, 10);
}

static void gpu_defaults(struct gpu *g, int index) {
    memset(g, 0, sizeof *g);
    snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012d", index);
    snprintf(g->name, sizeof g->name, "NVIDIA Fake GPU");
    g->mem_total = 85899345920ULL;
    g->temp = 40;
    g->slowdown = 90;
    g->power_mw = 100000;
    g->limit_mw = 700000;
    g->pcie_gen = g->pcie_maxgen = 5;
    g->pcie_width = g->pcie_maxwidth = 16;
    g->persistence = 1;
}

static void script_defaults(struct script *s) {
    snprintf(s->driver, sizeof s->driver, "550.54.15");
    s->cuda = 12040;
    s->init_rc = 0;
    s->ngpus = 0;
    s->nprocs = 0;
    s->nevents = 0;
    s->nfails = 0;
    for (int i = 0; i < MAX_GPUS; i++) gpu_defaults(&s->gpus[i], i);
}

static void set_key(struct gpu *g, const char *key, const char *val) {
#define U(k, f) \
    if (!strcmp(key, k)) { g->f = (unsigned)num(val); return; }
#define ULL(k, f) \
    if (!strcmp(key, k)) { g->f = num(val); return; }
    if (!strcmp(key, "uuid")) {
        snprintf(g->uuid, sizeof g->uuid, "%s", val);
        return;
    }
    U("util", util) U("memutil", memutil) ULL("mem_used", mem_used) ULL("mem_total", mem_total)
    U("temp", temp) U("slowdown", slowdown) U("power_mw", power_mw) U("limit_mw", limit_mw)
    ULL("reasons", reasons) ULL("ecc_cv", ecc_cv) ULL("ecc_uv", ecc_uv) ULL("ecc_ca", ecc_ca)
    ULL("ecc_ua", ecc_ua) U("remap_corr", remap_corr) U("remap_unc", remap_unc)
    U("remap_pending", remap_pending) U("remap_failure", remap_failure) U("pcie_gen", pcie_gen)
    U("pcie_maxgen", pcie_maxgen) U("pcie_width", pcie_width) U("pcie_maxwidth", pcie_maxwidth)
    U("persistence", persistence)
    if (!strcmp(key, "lost")) g->lost = (int)num(val);
#undef U
#undef ULL
}

static int valid_gpu(long i) { return i >= 0 && i < MAX_GPUS; }

static void parse_line(struct script *s, char *line) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *save = NULL;
    char *word = strtok_r(line, " \t\r\n", &save);
    if (!word) return;
    if (!strcmp(word, "driver")) {
        char *v = strtok_r(NULL, " \t\r\n", &save);
        if (v) snprintf(s->driver, sizeof s->driver, "%s", v);
    } else if (!strcmp(word, "cuda")) {
        char *v = strtok_r(NULL, " \t\r\n", &save);
        if (v) s->cuda = (int)num(v);
    } else if (!strcmp(word, "init")) {
        char *v = strtok_r(NULL, " \t\r\n", &save);
        if (v) s->init_rc = (unsigned)num(v);
    } else if (!strcmp(word, "gpu")) {
        char *v = strtok_r(NULL, " \t\r\n", &save);
        if (!v) return;
        long i = (long)num(v);
        if (!valid_gpu(i)) return;
        if (i + 1 > s->ngpus) s->ngpus = (int)i + 1;
        char *kv;
        while ((kv = strtok_r(NULL, " \t\r\n", &save))) {
            char *eq = strchr(kv, '=');
            if (!eq) continue;
            *eq = 0;
            set_key(&s->gpus[i], kv, eq + 1);
        }
    } else if (!strcmp(word, "name")) {
        char *v = strtok_r(NULL, " \t\r\n", &save);
        if (!v) return;
        long i = (long)num(v);
        char *rest = save ? save + strspn(save, " \t") : NULL;
        if (!valid_gpu(i) || !rest) return;
        size_t n = strcspn(rest, "\r\n");
        while (n && (rest[n - 1] == ' ' || rest[n - 1] == '\t')) n--;
        if (n >= sizeof s->gpus[i].name) n = sizeof s->gpus[i].name - 1;
        memcpy(s->gpus[i].name, rest, n);
        s->gpus[i].name[n] = 0;
    } else if (!strcmp(word, "proc")) {
        char *g = strtok_r(NULL, " \t\r\n", &save);
        char *p = strtok_r(NULL, " \t\r\n", &save);
        char *m = strtok_r(NULL, " \t\r\n", &save);
        if (!g || !p || s->nprocs >= MAX_PROCS) return;
        struct proc *pr = &s->procs[s->nprocs++];
        pr->gpu = (int)num(g);
        pr->pid = (unsigned)num(p);
        pr->mem = m ? num(m) : 0;
    } else if (!strcmp(word, "xid") || !strcmp(word, "event")) {
        int is_xid = word[0] == 'x';
        char *g = strtok_r(NULL, " \t\r\n", &save);
        char *a = strtok_r(NULL, " \t\r\n", &save);
        char *b = is_xid ? NULL : strtok_r(NULL, " \t\r\n", &save);
        if (!g || !a || s->nevents >= MAX_EVENTS) return;
        struct event *e = &s->events[s->nevents++];
        e->gpu = (int)num(g);
        if (is_xid) {
            e->type = 0x8; /* nvmlEventTypeXidCriticalError */
            e->data = num(a);
        } else {
            e->type = num(a);
            e->data = b ? num(b) : 0;
        }
    } else if (!strcmp(word, "fail")) {
        char *fn = strtok_r(NULL, " \t\r\n", &save);
        char *code = strtok_r(NULL, " \t\r\n", &save);
        char *g = strtok_r(NULL, " \t\r\n", &save);
        if (!fn || !code || s->nfails >= MAX_FAILS) return;
        struct fail *f = &s->fails[s->nfails++];
        snprintf(f->fn, sizeof f->fn, "%s", fn);
        f->code = (unsigned)num(code);
        f->gpu = g ? (int)num(g) : -1;
    }
}

/* Re-read the script when its (mtime, size, inode) changed. Called with M held. */
static void reload(void) {
    const char *path = getenv("GPUWB_FAKE_NVML_SCRIPT");
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) {
        if (!loaded || have_stamp) {
            script_defaults(&S);
            loaded = 1;
            have_stamp = 0;
        }
        return;
    }
    if (loaded && have_stamp && st.st_ino == stamp.st_ino && st.st_size == stamp.st_size &&
        st.st_mtim.tv_sec == stamp.st_mtim.tv_sec && st.st_mtim.tv_nsec == stamp.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f) return; /* keep the last good script */
    script_defaults(&T);
    char line[4096];
    while (fgets(line, sizeof line, f)) parse_line(&T, line);
    fclose(f);
    memcpy(&S, &T, sizeof S);
    stamp = st;
    have_stamp = 1;
    loaded = 1;
}

static void count_device_call(void) {
    device_calls++;
    const char *path = getenv("GPUWB_FAKE_NVML_CALLS");
    if (!path || !*path) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%llu\n", device_calls);
    fclose(f);
    rename(tmp, path);
}

static unsigned fail_code(const char *fn, int gpu) {
    for (int i = 0; i < S.nfails; i++) {
        const struct fail *f = &S.fails[i];
        if ((f->gpu < 0 || f->gpu == gpu) && !strcmp(f->fn, fn)) return f->code;
    }
    return 0;
}

/* ----------------------------------------------------------- entry glue */

/* Lock, reload, check init and the scripted failure of a non-device function. */
static nvmlReturn_t sys_enter(const char *fn) {
    pthread_mutex_lock(&M);
    reload();
    if (!init_count) return 1;
    return fail_code(fn, -1);
}

/* Lock, reload, count, check init, the handle, lost and scripted failures. */
static nvmlReturn_t dev_enter(const char *fn, nvmlDevice_t d, struct gpu **g) {
    pthread_mutex_lock(&M);
    reload();
    count_device_call();
    if (!init_count) return 1;
    if (!d || d < devices || d >= devices + MAX_GPUS || d->index != (int)(d - devices)) return 2;
    int i = d->index;
    if (i >= S.ngpus) return 2;
    *g = &S.gpus[i];
    if ((*g)->lost) return 15;
    return fail_code(fn, i);
}

#define DEV(device) DEV_AS(__func__, device)
#define DEV_AS(fn, device)                         \
    struct gpu *g = NULL;                          \
    nvmlReturn_t rc_ = dev_enter(fn, device, &g); \
    if (rc_) OUT(rc_)
#define SYS()                               \
    nvmlReturn_t rc_ = sys_enter(__func__); \
    if (rc_) OUT(rc_)
#define OUT(rc)                    \
    do {                           \
        nvmlReturn_t r_ = (rc);    \
        pthread_mutex_unlock(&M);  \
        return r_;                 \
    } while (0)

/* -------------------------------------------------------------- lifecycle */

static nvmlReturn_t do_init(const char *fn) {
    pthread_mutex_lock(&M);
    reload();
    nvmlReturn_t rc = fail_code(fn, -1);
    if (!rc) rc = S.init_rc;
    if (!rc) {
        init_count++;
        for (int i = 0; i < MAX_GPUS; i++) devices[i].index = i;
    }
    OUT(rc);
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init(__func__); }
EXPORT nvmlReturn_t nvmlInit(void) { return do_init(__func__); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return do_init(__func__);
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    SYS();
    init_count--;
    OUT(0);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t rc) {
    switch (rc) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt request issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 25: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

/* ---------------------------------------------------------------- system */

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    SYS();
    if (!version) OUT(2);
    if (strlen(S.driver) + 1 > length) OUT(7);
    memcpy(version, S.driver, strlen(S.driver) + 1);
    OUT(0);
}

static nvmlReturn_t cuda_version(const char *fn, int *v) {
    nvmlReturn_t rc_ = sys_enter(fn);
    if (rc_) OUT(rc_);
    if (!v) OUT(2);
    *v = S.cuda;
    OUT(0);
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return cuda_version(__func__, v); }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return cuda_version(__func__, v); }

/* --------------------------------------------------------------- devices */

static nvmlReturn_t count(const char *fn, unsigned int *n) {
    pthread_mutex_lock(&M);
    reload();
    count_device_call();
    if (!init_count) OUT(1);
    nvmlReturn_t rc = fail_code(fn, -1);
    if (rc) OUT(rc);
    if (!n) OUT(2);
    *n = (unsigned)S.ngpus;
    OUT(0);
}
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) { return count(__func__, n); }
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *n) { return count(__func__, n); }

static nvmlReturn_t handle(const char *fn, unsigned int index, nvmlDevice_t *device) {
    pthread_mutex_lock(&M);
    reload();
    count_device_call();
    if (!init_count) OUT(1);
    if (!device || index >= (unsigned)S.ngpus) OUT(2);
    if (S.gpus[index].lost) OUT(15);
    nvmlReturn_t rc = fail_code(fn, (int)index);
    if (rc) OUT(rc);
    *device = &devices[index];
    OUT(0);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    return handle(__func__, i, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) {
    return handle(__func__, i, d);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    DEV(device);
    if (!uuid) OUT(2);
    if (strlen(g->uuid) + 1 > length) OUT(7);
    memcpy(uuid, g->uuid, strlen(g->uuid) + 1);
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    DEV(device);
    if (!name) OUT(2);
    if (strlen(g->name) + 1 > length) OUT(7);
    memcpy(name, g->name, strlen(g->name) + 1);
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u) {
    DEV(device);
    if (!u) OUT(2);
    u->gpu = g->util;
    u->memory = g->memutil;
    OUT(0);
}

static unsigned long long reserved_of(const struct gpu *g) {
    unsigned long long room = g->mem_total > g->mem_used ? g->mem_total - g->mem_used : 0;
    return room < RESERVED_BYTES ? room : RESERVED_BYTES;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *m) {
    DEV(device);
    if (!m) OUT(2);
    unsigned long long r = reserved_of(g);
    m->total = g->mem_total;
    m->used = g->mem_used + r;
    m->free = g->mem_total - m->used;
    OUT(0);
}

#ifndef FAKE_NO_MEMORY_V2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *m) {
    DEV(device);
    if (!m) OUT(2);
    if (m->version != NVML_MEMORY_V2) OUT(25);
    unsigned long long r = reserved_of(g);
    m->total = g->mem_total;
    m->reserved = r;
    m->used = g->mem_used;
    m->free = g->mem_total - g->mem_used - r;
    OUT(0);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, unsigned int sensor,
                                             unsigned int *temp) {
    DEV(device);
    if (!temp || sensor != 0) OUT(2);
    *temp = g->temp;
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, unsigned int type,
                                                      unsigned int *temp) {
    DEV(device);
    if (!temp) OUT(2);
    switch (type) {
    case 0: *temp = g->slowdown + 5; break; /* shutdown */
    case 1: *temp = g->slowdown; break;     /* slowdown */
    case 2: *temp = 95; break;              /* memory max */
    case 3: *temp = g->slowdown - 3; break; /* gpu max */
    default: OUT(2);
    }
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *mw) {
    DEV(device);
    if (!mw) OUT(2);
    *mw = g->power_mw;
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *mw) {
    DEV(device);
    if (!mw) OUT(2);
    *mw = g->limit_mw;
    OUT(0);
}

#ifndef FAKE_OLD_THROTTLE_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                           unsigned long long *reasons) {
    DEV(device);
    if (!reasons) OUT(2);
    *reasons = g->reasons;
    OUT(0);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                              unsigned long long *reasons) {
    DEV(device);
    if (!reasons) OUT(2);
    *reasons = g->reasons;
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, unsigned int errorType,
                                                unsigned int counterType,
                                                unsigned long long *count) {
    DEV(device);
    if (!count || errorType > 1 || counterType > 1) OUT(2);
    if (errorType == 0)
        *count = counterType == 0 ? g->ecc_cv : g->ecc_ca;
    else
        *count = counterType == 0 ? g->ecc_uv : g->ecc_ua;
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows,
                                              unsigned int *uncRows, unsigned int *isPending,
                                              unsigned int *failureOccurred) {
    DEV(device);
    if (!corrRows || !uncRows || !isPending || !failureOccurred) OUT(2);
    *corrRows = g->remap_corr;
    *uncRows = g->remap_unc;
    *isPending = g->remap_pending;
    *failureOccurred = g->remap_failure;
    OUT(0);
}

#define UINT_GETTER(fn, field)                                      \
    EXPORT nvmlReturn_t fn(nvmlDevice_t device, unsigned int *out) { \
        DEV(device);                                                \
        if (!out) OUT(2);                                           \
        *out = g->field;                                            \
        OUT(0);                                                     \
    }
UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, pcie_gen)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, pcie_maxgen)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, pcie_width)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, pcie_maxwidth)
UINT_GETTER(nvmlDeviceGetPersistenceMode, persistence)

/* ------------------------------------------------------------- processes */

/* layout: 1 = v1 (16 bytes), 2 = v2 (24 bytes), 3 = v3 (32 bytes) */
static nvmlReturn_t processes(const char *fn, nvmlDevice_t device, unsigned int *count,
                              void *infos, int layout) {
    DEV_AS(fn, device);
    if (!count) OUT(2);
    int index = (int)(device - devices);
    unsigned n = 0;
    for (int i = 0; i < S.nprocs; i++)
        if (S.procs[i].gpu == index) n++;
    if (*count < n) {
        *count = n;
        OUT(7);
    }
    if (n && !infos) OUT(2);
    unsigned k = 0;
    for (int i = 0; i < S.nprocs; i++) {
        const struct proc *p = &S.procs[i];
        if (p->gpu != index) continue;
        if (layout == 1) {
            nvmlProcessInfo_v1_t *e = (nvmlProcessInfo_v1_t *)infos + k;
            e->pid = p->pid;
            e->usedGpuMemory = p->mem;
        } else if (layout == 2) {
            nvmlProcessInfo_v2_t *e = (nvmlProcessInfo_v2_t *)infos + k;
            e->pid = p->pid;
            e->usedGpuMemory = p->mem;
            e->gpuInstanceId = e->computeInstanceId = 0xFFFFFFFFu;
        } else {
            nvmlProcessInfo_v3_t *e = (nvmlProcessInfo_v3_t *)infos + k;
            e->pid = p->pid;
            e->usedGpuMemory = p->mem;
            e->gpuInstanceId = e->computeInstanceId = 0xFFFFFFFFu;
            e->usedGpuCcProtectedMemory = 0;
        }
        k++;
    }
    *count = n;
    OUT(0);
}

#ifndef FAKE_NO_PROCESS_V3
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                            unsigned int *count, void *infos) {
#if defined(FAKE_CONF_COMPUTE) && !defined(FAKE_DETAIL_LIST)
    return processes(__func__, device, count, infos, 3);
#else
    return processes(__func__, device, count, infos, 2);
#endif
}
#endif

#ifndef FAKE_NO_PROCESS_V2
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                            unsigned int *count, void *infos) {
    return processes(__func__, device, count, infos, 2);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device,
                                                         unsigned int *count, void *infos) {
    return processes(__func__, device, count, infos, 1);
}

#ifdef FAKE_CONF_COMPUTE
EXPORT nvmlReturn_t nvmlDeviceGetConfComputeMemSizeInfo(nvmlDevice_t device,
                                                        nvmlConfComputeMemSizeInfo_t *info) {
    DEV(device);
    if (!info) OUT(2);
    info->protectedMemSizeKib = 0;
    info->unprotectedMemSizeKib = g->mem_total / 1024;
    OUT(0);
}
#endif

#ifdef FAKE_DETAIL_LIST
EXPORT nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t device, void *list) {
    DEV(device);
    if (!list) OUT(2);
    OUT(3);
}
#endif

/* ---------------------------------------------------------------- events */

#ifndef FAKE_NO_EVENTS
EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    SYS();
    if (!set) OUT(2);
    struct fake_event_set *s = calloc(1, sizeof *s);
    if (!s) OUT(20);
    s->magic = EVENT_SET_MAGIC;
    *set = s;
    OUT(0);
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    SYS();
    if (!set || set->magic != EVENT_SET_MAGIC) OUT(2);
    set->magic = 0;
    free(set);
    OUT(0);
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                             nvmlEventSet_t set) {
    DEV(device);
    if (!set || set->magic != EVENT_SET_MAGIC) OUT(2);
    set->masks[device - devices] |= types;
    OUT(0);
}

static nvmlReturn_t event_wait(const char *fn, nvmlEventSet_t set, nvmlEventData_t *data,
                               unsigned int timeoutms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        nvmlReturn_t rc_ = sys_enter(fn);
        if (rc_) OUT(rc_);
        if (!set || set->magic != EVENT_SET_MAGIC || !data) OUT(2);
        while (events_delivered < S.nevents) {
            const struct event *e = &S.events[events_delivered++];
            if (e->gpu < 0 || e->gpu >= S.ngpus || !(set->masks[e->gpu] & e->type)) continue;
            data->device = &devices[e->gpu];
            data->eventType = e->type;
            data->eventData = e->data;
            data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFFu;
            OUT(0);
        }
        pthread_mutex_unlock(&M);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long elapsed = (now.tv_sec - start.tv_sec) * 1000LL +
                            (now.tv_nsec - start.tv_nsec) / 1000000LL;
        if (elapsed >= (long long)timeoutms) return 10;
        long long left = (long long)timeoutms - elapsed;
        /* 250 ms steps: a real driver blocks; polling faster would make the stand-in's own
         * wake-ups dominate the backend's CPU in bench/gpu.py. */
        usleep((useconds_t)((left < 250 ? left : 250) * 1000));
    }
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data,
                                        unsigned int timeoutms) {
    return event_wait(__func__, set, data, timeoutms);
}
EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data,
                                     unsigned int timeoutms) {
    return event_wait(__func__, set, data, timeoutms);
}
#endif
