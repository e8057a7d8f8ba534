/*
 * fake_nvidia_smi.c: a tiny `nvidia-smi` linked against the stand-in libnvidia-ml
 * (fake_nvml.c), for tests and for a spawn-per-sample benchmark. Like the real one it
 * initializes NVML, queries and shuts down on every run.
 *
 * Build:  gcc -O2 -o DIR/nvidia-smi fake_nvidia_smi.c -LDIR -l:libnvidia-ml.so.1 \
 *             -Wl,-rpath,DIR -ldl
 *
 * Supported:  nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]
 *   Fields: index, uuid, name, utilization.gpu, utilization.memory, memory.used,
 *   memory.total (MiB), temperature.gpu, power.draw, power.limit (W, 2 decimals),
 *   clocks_event_reasons.active / clocks_throttle_reasons.active (0x + 16 hex digits),
 *   driver_version, persistence_mode (Enabled/Disabled), pcie.link.gen.current,
 *   pcie.link.gen.max, pcie.link.width.current, pcie.link.width.max.
 *   Unknown fields print [N/A]; a value NVML reports NOT_SUPPORTED prints [Not Supported],
 *   any other failure [N/A]. Rows are ", "-separated, one per GPU.
 * Failures as the real tool reports them: NVML init failure -> the "couldn't communicate
 * with the NVIDIA driver" sentence, exit code = the NVML code; no GPU -> "No devices were
 * found", exit 6; a lost GPU -> "Unable to determine the device handle for GPU <i>: GPU is
 * lost. ..." in place of its row, exit 15 after the other rows. Anything else: usage, exit 2.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
const char *nvmlErrorString(nvmlReturn_t);
nvmlReturn_t nvmlSystemGetDriverVersion(char *, unsigned int);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int, nvmlDevice_t *);
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t, char *, unsigned int);
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t, char *, unsigned int);
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t, nvmlUtilization_t *);
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t *);
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t, unsigned int, unsigned int *);
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t, unsigned long long *);
nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t, unsigned int *);
nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t, unsigned int *);

typedef nvmlReturn_t (*mem_v2_fn)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef nvmlReturn_t (*reasons_fn)(nvmlDevice_t, unsigned long long *);

static int units = 1;

static void failed(nvmlReturn_t rc) { fputs(rc == 3 ? "[Not Supported]" : "[N/A]", stdout); }

static void print_uint(nvmlReturn_t rc, unsigned v, const char *unit) {
    if (rc) failed(rc);
    else printf("%u%s", v, units ? unit : "");
}

static const char *header_unit(const char *f) {
    if (!strcmp(f, "utilization.gpu") || !strcmp(f, "utilization.memory")) return " [%]";
    if (!strcmp(f, "memory.used") || !strcmp(f, "memory.total")) return " [MiB]";
    if (!strcmp(f, "power.draw") || !strcmp(f, "power.limit")) return " [W]";
    return "";
}

static void field(const char *f, unsigned index, nvmlDevice_t d) {
    char buf[256];
    unsigned v = 0;
    nvmlReturn_t rc;
    if (!strcmp(f, "index")) {
        printf("%u", index);
    } else if (!strcmp(f, "uuid")) {
        rc = nvmlDeviceGetUUID(d, buf, sizeof buf);
        if (rc) failed(rc);
        else fputs(buf, stdout);
    } else if (!strcmp(f, "name")) {
        rc = nvmlDeviceGetName(d, buf, sizeof buf);
        if (rc) failed(rc);
        else fputs(buf, stdout);
    } else if (!strcmp(f, "utilization.gpu") || !strcmp(f, "utilization.memory")) {
        nvmlUtilization_t u;
        rc = nvmlDeviceGetUtilizationRates(d, &u);
        print_uint(rc, f[12] == 'g' ? u.gpu : u.memory, " %");
    } else if (!strcmp(f, "memory.used") || !strcmp(f, "memory.total")) {
        unsigned long long used = 0, total = 0;
        mem_v2_fn v2 = (mem_v2_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetMemoryInfo_v2");
        if (v2) {
            nvmlMemory_v2_t m;
            memset(&m, 0, sizeof m);
            m.version = (unsigned)(sizeof m | (2u << 24));
            rc = v2(d, &m);
            used = m.used;
            total = m.total;
        } else {
            nvmlMemory_t m;
            rc = nvmlDeviceGetMemoryInfo(d, &m);
            used = m.used;
            total = m.total;
        }
        if (rc) failed(rc);
        else printf("%llu%s", (f[7] == 'u' ? used : total) / 1048576ULL, units ? " MiB" : "");
    } else if (!strcmp(f, "temperature.gpu")) {
        rc = nvmlDeviceGetTemperature(d, 0, &v);
        print_uint(rc, v, "");
    } else if (!strcmp(f, "power.draw") || !strcmp(f, "power.limit")) {
        rc = f[6] == 'd' ? nvmlDeviceGetPowerUsage(d, &v) : nvmlDeviceGetEnforcedPowerLimit(d, &v);
        if (rc) failed(rc);
        else printf("%.2f%s", v / 1000.0, units ? " W" : "");
    } else if (!strcmp(f, "clocks_event_reasons.active") ||
               !strcmp(f, "clocks_throttle_reasons.active")) {
        unsigned long long r = 0;
        reasons_fn fn = (reasons_fn)dlsym(RTLD_DEFAULT, "nvmlDeviceGetCurrentClocksEventReasons");
        rc = fn ? fn(d, &r) : nvmlDeviceGetCurrentClocksThrottleReasons(d, &r);
        if (rc) failed(rc);
        else printf("0x%016llX", r);
    } else if (!strcmp(f, "driver_version")) {
        rc = nvmlSystemGetDriverVersion(buf, sizeof buf);
        if (rc) failed(rc);
        else fputs(buf, stdout);
    } else if (!strcmp(f, "persistence_mode")) {
        rc = nvmlDeviceGetPersistenceMode(d, &v);
        if (rc) failed(rc);
        else fputs(v ? "Enabled" : "Disabled", stdout);
    } else if (!strcmp(f, "pcie.link.gen.current")) {
        print_uint(nvmlDeviceGetCurrPcieLinkGeneration(d, &v), v, "");
    } else if (!strcmp(f, "pcie.link.gen.max")) {
        print_uint(nvmlDeviceGetMaxPcieLinkGeneration(d, &v), v, "");
    } else if (!strcmp(f, "pcie.link.width.current")) {
        print_uint(nvmlDeviceGetCurrPcieLinkWidth(d, &v), v, "");
    } else if (!strcmp(f, "pcie.link.width.max")) {
        print_uint(nvmlDeviceGetMaxPcieLinkWidth(d, &v), v, "");
    } else {
        fputs("[N/A]", stdout);
    }
}

int main(int argc, char **argv) {
    const char *query = NULL, *format = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--query-gpu=", 12)) query = argv[i] + 12;
        else if (!strcmp(argv[i], "--query-gpu") && i + 1 < argc) query = argv[++i];
        else if (!strncmp(argv[i], "--format=", 9)) format = argv[i] + 9;
        else if (!strcmp(argv[i], "--format") && i + 1 < argc) format = argv[++i];
    }
    if (!query || !format || strncmp(format, "csv", 3) != 0) {
        fprintf(stderr, "usage: nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]\n");
        return 2;
    }
    int header = strstr(format, "noheader") == NULL;
    units = strstr(format, "nounits") == NULL;

    char *fields[64];
    int nfields = 0;
    char *copy = strdup(query), *save = NULL;
    for (char *f = strtok_r(copy, ",", &save); f && nfields < 64; f = strtok_r(NULL, ",", &save)) {
        while (*f == ' ') f++;
        fields[nfields++] = f;
    }

    nvmlReturn_t rc = nvmlInit_v2();
    if (rc) {
        printf("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
               "Make sure that the latest NVIDIA driver is installed and running.\n\n");
        return (int)rc;
    }
    unsigned n = 0;
    rc = nvmlDeviceGetCount_v2(&n);
    if (rc || n == 0) {
        printf("No devices were found\n");
        nvmlShutdown();
        return 6;
    }
    if (header) {
        for (int k = 0; k < nfields; k++)
            printf("%s%s%s", k ? ", " : "", fields[k], units ? header_unit(fields[k]) : "");
        printf("\n");
    }
    int status = 0;
    for (unsigned i = 0; i < n; i++) {
        nvmlDevice_t d = NULL;
        rc = nvmlDeviceGetHandleByIndex_v2(i, &d);
        if (rc) {
            printf("Unable to determine the device handle for GPU %u: %s. %s\n", i,
                   nvmlErrorString(rc),
                   rc == 15 ? "Reboot the system to recover this GPU" : "");
            status = (int)rc;
            continue;
        }
        for (int k = 0; k < nfields; k++) {
            if (k) fputs(", ", stdout);
            field(fields[k], i, d);
        }
        fputs("\n", stdout);
    }
    nvmlShutdown();
    free(copy);
    return status;
}
