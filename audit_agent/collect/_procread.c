/* One process's /proc files, read and split in C: the process reader's hot loop (processes.py).
 *
 * Why C: at thousands of processes the reader's own Python (a system-call wrapper per file, the splitting
 * of stat and status, a readlink wrapper per descriptor) cost more than the kernel work of the reads
 * (bench/evidence_floor.py). This module does the same reads as ProcReader.gather_python() and hands back
 * the same tuple; every decision about what the contents mean stays in Python, in one place.
 *
 * All reads run without the GIL: a /proc read can block (a process stuck in the kernel holds its memory
 * lock, and cmdline and environ wait for it), and the scan's deadlines run in another thread.
 *
 * Building it is optional (pyproject.toml): without a C compiler the package installs without it and the
 * reader does the same in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK 16384             /* processes.READ_CHUNK: one read(2) for nearly every /proc file */
#define LINK_MAX_BYTES 4096     /* os.readlink's buffer (MAXPATHLEN): a longer target is cut, as there */
#define MAX_CPU (1 << 22)       /* processes.MAX_CPU */
#define MAX_PID (1 << 22)      /* PID_MAX_LIMIT: the kernel numbers no PID past 4M */
#define STAT_FIELDS 22          /* fields after comm the reader needs (rss is the 22nd) */

typedef struct {
    char *data;
    Py_ssize_t size;
    int err;                    /* errno of the failed open or read; 0 when read */
} file_t;

typedef struct {
    unsigned long long *inodes; /* socket:[INODE] targets */
    Py_ssize_t n_inodes, cap_inodes;
    char **targets;             /* absolute targets of the first dir_limit descriptors */
    Py_ssize_t *target_sizes;
    Py_ssize_t n_targets, cap_targets;
    int err;                    /* errno of listing the fd folder; 0 when listed */
} fds_t;

typedef struct {
    struct stat info;
    int err;                    /* errno of the failed stat; 0 when looked at */
} looked_t;

typedef long (*syscall_fn)(long number, ...);

typedef struct {
    int dir_err;                /* opening the process's folder failed */
    file_t stat, status, cmdline, exe, cwd, cgroup, environ;
    int want_fds, want_cgroup;
    fds_t fds;
    syscall_fn call;            /* set: also ns/net (through syscall(2)) and a stat of exe, for later steps */
    file_t netns;
    looked_t exe_file;
} reading_t;

static int open_at(int dir_fd, const char *name, int flags)
{
    int fd;
    do {
        fd = openat(dir_fd, name, flags | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static ssize_t read_some(int fd, char *buf, size_t size)
{
    ssize_t n;
    do {
        n = read(fd, buf, size);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* The file, at most `limit` bytes: one read(2) when it is shorter than CHUNK (a short read is the end of a
 * /proc file), then reads of up to 1 MiB until the end or the limit: processes.read_proc_file(). */
static void read_file(int dir_fd, const char *name, Py_ssize_t limit, file_t *file)
{
    Py_ssize_t first = limit < CHUNK ? limit : CHUNK;
    int fd = open_at(dir_fd, name, O_RDONLY);
    file->data = NULL;
    file->size = 0;
    file->err = 0;
    if (fd < 0) {
        file->err = errno;
        return;
    }
    Py_ssize_t capacity = first > 0 ? first : 1;
    char *data = malloc((size_t)capacity);
    if (data == NULL) {
        file->err = ENOMEM;
        close(fd);
        return;
    }
    ssize_t got = read_some(fd, data, (size_t)first);
    if (got < 0) {
        file->err = errno;
        free(data);
        close(fd);
        return;
    }
    Py_ssize_t size = got;
    if (got == CHUNK) {
        while (size < limit) {
            Py_ssize_t want = limit - size < (1 << 20) ? limit - size : (1 << 20);
            if (size + want > capacity) {
                Py_ssize_t grown = capacity * 2 > size + want ? capacity * 2 : size + want;
                char *bigger = realloc(data, (size_t)grown);
                if (bigger == NULL) {
                    file->err = ENOMEM;
                    free(data);
                    close(fd);
                    return;
                }
                data = bigger;
                capacity = grown;
            }
            got = read_some(fd, data + size, (size_t)want);
            if (got < 0) {
                file->err = errno;
                free(data);
                close(fd);
                return;
            }
            if (got == 0)
                break;
            size += got;
        }
    }
    close(fd);
    file->data = data;
    file->size = size;
}

/* The link's target; through libc's syscall(2) wrapper when `call` is given (see the probes below: a
 * preloaded hider cannot answer there), else through readlinkat(2) as the rest of the reader. */
static void read_link(syscall_fn call, int dir_fd, const char *name, file_t *file)
{
    file->data = malloc(LINK_MAX_BYTES);
    file->size = 0;
    file->err = 0;
    if (file->data == NULL) {
        file->err = ENOMEM;
        return;
    }
    long got = call != NULL ? call(SYS_readlinkat, (long)dir_fd, name, file->data, (long)LINK_MAX_BYTES)
                            : (long)readlinkat(dir_fd, name, file->data, LINK_MAX_BYTES);
    if (got < 0) {
        file->err = errno;
        free(file->data);
        file->data = NULL;
        return;
    }
    file->size = got;
}

static int all_digits(const char *text, Py_ssize_t size)
{
    if (size <= 0)
        return 0;
    for (Py_ssize_t i = 0; i < size; i++)
        if (text[i] < '0' || text[i] > '9')
            return 0;
    return 1;
}

static int push_inode(fds_t *fds, unsigned long long inode)
{
    if (fds->n_inodes == fds->cap_inodes) {
        Py_ssize_t grown = fds->cap_inodes ? fds->cap_inodes * 2 : 16;
        unsigned long long *bigger = realloc(fds->inodes, (size_t)grown * sizeof(unsigned long long));
        if (bigger == NULL)
            return -1;
        fds->inodes = bigger;
        fds->cap_inodes = grown;
    }
    fds->inodes[fds->n_inodes++] = inode;
    return 0;
}

static int push_target(fds_t *fds, const char *target, Py_ssize_t size)
{
    if (fds->n_targets == fds->cap_targets) {
        Py_ssize_t grown = fds->cap_targets ? fds->cap_targets * 2 : 8;
        char **bigger = realloc(fds->targets, (size_t)grown * sizeof(char *));
        Py_ssize_t *sizes;
        if (bigger == NULL)
            return -1;
        fds->targets = bigger;
        sizes = realloc(fds->target_sizes, (size_t)grown * sizeof(Py_ssize_t));
        if (sizes == NULL)
            return -1;
        fds->target_sizes = sizes;
        fds->cap_targets = grown;
    }
    char *copy = malloc((size_t)size);
    if (copy == NULL)
        return -1;
    memcpy(copy, target, (size_t)size);
    fds->targets[fds->n_targets] = copy;
    fds->target_sizes[fds->n_targets++] = size;
    return 0;
}

static int ends_with(const char *text, Py_ssize_t size, const char *tail)
{
    Py_ssize_t n = (Py_ssize_t)strlen(tail);
    return size >= n && memcmp(text + size - n, tail, (size_t)n) == 0;
}

/* proc_facts.SKIPPED_PLACES: descriptors there say nothing of where a process keeps its files. */
static int skipped_place(const char *target, Py_ssize_t size)
{
    static const char *places[] = {"/proc/", "/sys/", "/dev/"};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        size_t n = strlen(places[i]);
        if ((size_t)size >= n && memcmp(target, places[i], n) == 0)
            return 1;
    }
    return 0;
}

/* proc_facts.fd_links(): in listing order, the first fd_limit descriptors; a socket's inode, or for the
 * first dir_limit an absolute target that is not deleted; a descriptor closed since the listing is skipped. */
static void walk_fds(int dir_fd, Py_ssize_t fd_limit, Py_ssize_t dir_limit, fds_t *fds)
{
    char target[LINK_MAX_BYTES];
    int fd_dir = open_at(dir_fd, "fd", O_RDONLY | O_DIRECTORY);
    if (fd_dir < 0) {
        fds->err = errno;
        return;
    }
    DIR *listing = fdopendir(fd_dir);
    if (listing == NULL) {
        fds->err = errno;
        close(fd_dir);
        return;
    }
    Py_ssize_t index = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(listing);
        if (entry == NULL) {
            if (errno != 0)
                fds->err = errno;
            break;
        }
        const char *name = entry->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        if (index >= fd_limit)
            break;
        ssize_t size = readlinkat(fd_dir, name, target, sizeof target);
        if (size >= 0) {
            if (size >= 8 && memcmp(target, "socket:[", 8) == 0) {
                Py_ssize_t n = size - 9;
                if (target[size - 1] == ']' && n > 0 && n <= 19 && all_digits(target + 8, n)) {
                    unsigned long long inode = 0;
                    for (Py_ssize_t i = 0; i < n; i++)
                        inode = inode * 10 + (unsigned long long)(target[8 + i] - '0');
                    if (push_inode(fds, inode) < 0) {
                        fds->err = ENOMEM;
                        break;
                    }
                }
            } else if (index < dir_limit && size > 0 && target[0] == '/' && !ends_with(target, size, " (deleted)")
                       && !skipped_place(target, size)) {
                if (push_target(fds, target, size) < 0) {
                    fds->err = ENOMEM;
                    break;
                }
            }
        }
        index++;
    }
    closedir(listing);
}

static void read_process(const char *path, Py_ssize_t limit, Py_ssize_t fd_limit,
                         Py_ssize_t dir_limit, reading_t *reading)
{
    int where = open_at(AT_FDCWD, path, O_PATH | O_DIRECTORY);
    if (where < 0) {
        reading->dir_err = errno;
        return;
    }
    read_file(where, "stat", limit, &reading->stat);
    if (reading->stat.err == 0)
        read_file(where, "status", limit, &reading->status);
    if (reading->stat.err == 0 && reading->status.err == 0) {
        read_file(where, "cmdline", limit, &reading->cmdline);
        read_link(NULL, where, "exe", &reading->exe);
        read_link(NULL, where, "cwd", &reading->cwd);
        if (reading->want_cgroup)
            read_file(where, "cgroup", limit, &reading->cgroup);
        read_file(where, "environ", limit, &reading->environ);
        if (reading->want_fds)
            walk_fds(where, fd_limit, dir_limit, &reading->fds);
        if (reading->call != NULL) {
            read_link(reading->call, where, "ns/net", &reading->netns);
            reading->exe_file.err = fstatat(where, "exe", &reading->exe_file.info, 0) < 0 ? errno : 0;
        }
    }
    close(where);
}

static void free_file(file_t *file)
{
    free(file->data);
    file->data = NULL;
}

static void free_reading(reading_t *reading)
{
    free_file(&reading->stat);
    free_file(&reading->status);
    free_file(&reading->cmdline);
    free_file(&reading->exe);
    free_file(&reading->cwd);
    free_file(&reading->cgroup);
    free_file(&reading->environ);
    free_file(&reading->netns);
    for (Py_ssize_t i = 0; i < reading->fds.n_targets; i++)
        free(reading->fds.targets[i]);
    free(reading->fds.targets);
    free(reading->fds.target_sizes);
    free(reading->fds.inodes);
}

/* bytes, or the errno as an int */
static PyObject *file_result(const file_t *file)
{
    if (file->err)
        return PyLong_FromLong(file->err);
    return PyBytes_FromStringAndSize(file->data ? file->data : "", file->size);
}

/* The digits of `text` as an int in `base` (PyLong_FromString wants them NUL-terminated). */
static PyObject *number_in_base(const char *text, Py_ssize_t size, int base)
{
    char small[64];
    char *copy = size < (Py_ssize_t)sizeof small ? small : malloc((size_t)size + 1);
    if (copy == NULL)
        return PyErr_NoMemory();
    memcpy(copy, text, (size_t)size);
    copy[size] = '\0';
    PyObject *number = PyLong_FromString(copy, NULL, base);
    if (copy != small)
        free(copy);
    return number;
}

/* An int of exactly `size` characters, as int() reads a /proc field: an optional sign, then decimal digits
 * (int() also takes underscores, which no /proc file holds). NULL with ValueError when it is not one. */
static PyObject *number_object(const char *text, Py_ssize_t size)
{
    Py_ssize_t digits = size > 0 && (text[0] == '-' || text[0] == '+') ? 1 : 0;
    if (size - digits <= 0 || !all_digits(text + digits, size - digits)) {
        PyErr_SetString(PyExc_ValueError, "bad /proc field");
        return NULL;
    }
    return number_in_base(text, size, 10);
}

/* A small decimal number (a CPU index): 0 and the value, -1 when it is none or not below `bound`. */
static int small_number(const char *text, Py_ssize_t size, long long bound, long long *value)
{
    Py_ssize_t digits = size > 0 && text[0] == '+' ? 1 : 0;
    *value = 0;
    if (size - digits <= 0 || size - digits > 18 || !all_digits(text + digits, size - digits))
        return -1;
    for (Py_ssize_t i = digits; i < size; i++)
        *value = *value * 10 + (text[i] - '0');
    return *value < bound ? 0 : -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* processes.split_stat(): (comm, the fields after it); None when the file has fewer than 22 fields. */
static PyObject *stat_result(const file_t *file)
{
    const char *data = file->data ? file->data : "";
    Py_ssize_t size = file->size;
    const char *open = memchr(data, '(', (size_t)size);
    const char *close = NULL;
    for (Py_ssize_t i = size - 1; i >= 0; i--) {
        if (data[i] == ')') {
            close = data + i;
            break;
        }
    }
    if (close == NULL)
        Py_RETURN_NONE;
    const char *comm = open != NULL ? open + 1 : data;
    const char *starts[STAT_FIELDS];
    Py_ssize_t sizes[STAT_FIELDS];
    int count = 0;
    const char *cursor = close + 2;
    const char *end = data + size;
    while (cursor < end && count < STAT_FIELDS) {
        while (cursor < end && is_space(*cursor))
            cursor++;
        if (cursor >= end)
            break;
        starts[count] = cursor;
        while (cursor < end && !is_space(*cursor))
            cursor++;
        sizes[count] = cursor - starts[count];
        count++;
    }
    if (count < STAT_FIELDS)
        Py_RETURN_NONE;
    static const int wanted[] = {1, 4, 11, 12, 13, 14, 16, 17, 19, 21};
    PyObject *result = PyTuple_New(2 + (Py_ssize_t)(sizeof wanted / sizeof wanted[0]));
    if (result == NULL)
        return NULL;
    PyObject *comm_bytes = PyBytes_FromStringAndSize(comm, close > comm ? close - comm : 0);
    PyObject *state = PyBytes_FromStringAndSize(starts[0], sizes[0]);
    if (comm_bytes == NULL || state == NULL) {
        Py_XDECREF(comm_bytes);
        Py_XDECREF(state);
        Py_DECREF(result);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, comm_bytes);
    PyTuple_SET_ITEM(result, 1, state);
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        PyObject *value = number_object(starts[wanted[i]], sizes[wanted[i]]);
        if (value == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, 2 + (Py_ssize_t)i, value);
    }
    return result;
}

/* The value tokens of one `Key:\tv1\tv2` line of /proc/PID/status (processes.status_field): the line's
 * start and end, or NULL when the key is absent. */
static const char *status_line(const file_t *file, const char *key, const char **line_end)
{
    char needle[32];
    int needle_size = snprintf(needle, sizeof needle, "\n%s:", key);
    const char *data = file->data ? file->data : "";
    const char *end = data + file->size;
    const char *at = memmem(data, (size_t)file->size, needle, (size_t)needle_size);
    if (at == NULL)
        return NULL;
    const char *start = at + needle_size;
    const char *stop = memchr(start, '\n', (size_t)(end - start));
    *line_end = stop != NULL ? stop : end;
    return start;
}

/* The next whitespace-separated token in [*cursor, end): its start, its size in *size; NULL when none. */
static const char *next_token(const char **cursor, const char *end, Py_ssize_t *size)
{
    const char *at = *cursor;
    while (at < end && is_space(*at))
        at++;
    if (at >= end)
        return NULL;
    const char *start = at;
    while (at < end && !is_space(*at))
        at++;
    *size = at - start;
    *cursor = at;
    return start;
}

/* processes.count_cpu_list(): the number of CPUs in `0-3,8,10-11`; -1 when a range is not one. */
static long long count_cpu_list(const char *text, Py_ssize_t size)
{
    long long total = 0;
    const char *part = text;
    const char *end = text + size;
    for (;;) {
        const char *comma = memchr(part, ',', (size_t)(end - part));
        const char *stop = comma != NULL ? comma : end;
        const char *dash = memchr(part, '-', (size_t)(stop - part));
        if (dash != NULL) {
            long long low, high;
            if (small_number(part, dash - part, MAX_CPU, &low) < 0
                || small_number(dash + 1, stop - dash - 1, MAX_CPU, &high) < 0 || high < low)
                return -1;
            total += high - low + 1;
        } else {
            total += 1;
        }
        if (comma == NULL)
            break;
        part = comma + 1;
    }
    return total;
}

/* processes.status_values(): (real uid or None, allowed CPUs or None, NSpid) of /proc/PID/status. */
static PyObject *status_result(const file_t *file)
{
    const char *line_end, *token;
    Py_ssize_t size;
    long long number;
    PyObject *uid = Py_None, *cpus = Py_None;
    const char *line = status_line(file, "Uid", &line_end);
    if (line != NULL && (token = next_token(&line, line_end, &size)) != NULL) {
        uid = number_object(token, size);
        if (uid == NULL)
            return NULL;
    } else {
        Py_INCREF(uid);
    }
    line = status_line(file, "Cpus_allowed_list", &line_end);
    if (line != NULL && (token = next_token(&line, line_end, &size)) != NULL
        && (number = count_cpu_list(token, size)) >= 0) {
        cpus = PyLong_FromLongLong(number);
        if (cpus == NULL) {
            Py_DECREF(uid);
            return NULL;
        }
    } else {
        Py_INCREF(cpus);
    }
    PyObject *ns_pids = PyList_New(0);
    if (ns_pids == NULL) {
        Py_DECREF(uid);
        Py_DECREF(cpus);
        return NULL;
    }
    line = status_line(file, "NSpid", &line_end);
    while (line != NULL && (token = next_token(&line, line_end, &size)) != NULL) {
        if (!all_digits(token, size))
            continue;
        PyObject *pid = number_object(token, size);
        if (pid == NULL || PyList_Append(ns_pids, pid) < 0) {
            Py_XDECREF(pid);
            Py_DECREF(uid);
            Py_DECREF(cpus);
            Py_DECREF(ns_pids);
            return NULL;
        }
        Py_DECREF(pid);
    }
    return Py_BuildValue("(NNN)", uid, cpus, ns_pids);
}

static PyObject *nanoseconds(const struct timespec *at)
{
    return PyLong_FromLongLong((long long)at->tv_sec * 1000000000LL + (long long)at->tv_nsec);
}

/* (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, is a regular file), or the errno as an int */
static PyObject *looked_result(const looked_t *looked)
{
    const struct stat *info = &looked->info;
    if (looked->err)
        return PyLong_FromLong(looked->err);
    return Py_BuildValue("(NNNNNN)", PyLong_FromUnsignedLongLong((unsigned long long)info->st_dev),
                         PyLong_FromUnsignedLongLong((unsigned long long)info->st_ino),
                         PyLong_FromLongLong((long long)info->st_size), nanoseconds(&info->st_mtim),
                         nanoseconds(&info->st_ctim), PyBool_FromLong(S_ISREG(info->st_mode)));
}

static PyObject *fds_result(const reading_t *reading)
{
    if (!reading->want_fds)
        Py_RETURN_NONE;
    if (reading->fds.err)
        return PyLong_FromLong(reading->fds.err);
    PyObject *inodes = PyList_New(reading->fds.n_inodes);
    PyObject *targets = PyList_New(reading->fds.n_targets);
    if (inodes == NULL || targets == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < reading->fds.n_inodes; i++) {
        PyObject *inode = PyLong_FromUnsignedLongLong(reading->fds.inodes[i]);
        if (inode == NULL)
            goto fail;
        PyList_SET_ITEM(inodes, i, inode);
    }
    for (Py_ssize_t i = 0; i < reading->fds.n_targets; i++) {
        PyObject *target = PyBytes_FromStringAndSize(reading->fds.targets[i], reading->fds.target_sizes[i]);
        if (target == NULL)
            goto fail;
        PyList_SET_ITEM(targets, i, target);
    }
    return Py_BuildValue("(NN)", inodes, targets);
fail:
    Py_XDECREF(inodes);
    Py_XDECREF(targets);
    return NULL;
}

PyDoc_STRVAR(read_doc,
"read(path, limit, fd_limit, dir_limit, want_fds, syscall_address=0, want_cgroup=True) -> int | None | tuple\n\n"
"One process's /proc folder (its path): the errno (int) when its\n"
"folder, stat or status could not be opened or read; None when stat has fewer fields than the reader\n"
"needs; else (stat, status, cmdline, exe, cwd, cgroup, environ, fds, netns, exe_file), as\n"
"ProcReader.gather(): stat is (comm, state, ppid, tty_nr, utime, stime, cutime, cstime, nice,\n"
"num_threads, starttime, rss pages); status (uid, allowed CPUs, NSpid); each other file or link its\n"
"bytes or its errno; fds None when not wanted, the errno of listing the fd folder, or (socket inodes,\n"
"absolute targets). Given the address of libc's syscall(2), netns is the ns/net link read through it\n"
"and exe_file the stat() of exe as stat_each() gives it; else both are None. cgroup is None when not\n"
"wanted (the reader knows it from a walk of the cgroup tree, cgroups.unified_members).");

static PyObject *procread_read(PyObject *module, PyObject *args)
{
    int want_fds, want_cgroup = 1;
    const char *path;
    Py_ssize_t path_size, limit, fd_limit, dir_limit;
    unsigned long long address = 0;
    (void)module;
    if (!PyArg_ParseTuple(args, "y#nnnp|Kp", &path, &path_size, &limit, &fd_limit, &dir_limit, &want_fds, &address,
                          &want_cgroup))
        return NULL;
    if ((Py_ssize_t)strlen(path) != path_size) {
        PyErr_SetString(PyExc_ValueError, "path holds a NUL byte");
        return NULL;
    }
    reading_t reading;
    memset(&reading, 0, sizeof reading);
    reading.want_fds = want_fds;
    reading.want_cgroup = want_cgroup;
    reading.call = (syscall_fn)(uintptr_t)address;
    Py_BEGIN_ALLOW_THREADS
    read_process(path, limit, fd_limit, dir_limit, &reading);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (reading.dir_err) {
        result = PyLong_FromLong(reading.dir_err);
    } else if (reading.stat.err) {
        result = PyLong_FromLong(reading.stat.err);
    } else if (reading.status.err) {
        result = PyLong_FromLong(reading.status.err);
    } else {
        PyObject *stat = stat_result(&reading.stat);
        if (stat == Py_None) {
            result = stat;
        } else if (stat != NULL) {
            PyObject *netns = Py_None, *exe_file = Py_None;
            if (reading.call != NULL) {
                netns = file_result(&reading.netns);
                exe_file = looked_result(&reading.exe_file);
            } else {
                Py_INCREF(netns);
                Py_INCREF(exe_file);
            }
            PyObject *cgroup = Py_None;
            if (reading.want_cgroup)
                cgroup = file_result(&reading.cgroup);
            else
                Py_INCREF(cgroup);
            result = Py_BuildValue("(NNNNNNNNNN)", stat, status_result(&reading.status),
                                   file_result(&reading.cmdline), file_result(&reading.exe),
                                   file_result(&reading.cwd), cgroup,
                                   file_result(&reading.environ), fds_result(&reading), netns, exe_file);
        }
    }
    free_reading(&reading);
    return result;
}

/* ---- the loops of rawsys.py that run once per PID, process or folder entry, made in C for the same reason
 * (alive_pids, readlink_each, list_fd). Each calls the libc syscall(2) wrapper whose address rawsys.py
 * resolved on libc's own handle (its docstring says why): a preloaded process hider that defines kill,
 * readlinkat, getdents64 or syscall itself cannot answer for the kernel, which it could were these calls
 * linked here through the global scope. */

static syscall_fn syscall_at(unsigned long long address)
{
    if (address == 0)
        PyErr_SetString(PyExc_ValueError, "no address of syscall(2)");
    return (syscall_fn)(uintptr_t)address;
}

PyDoc_STRVAR(alive_pids_doc,
"alive_pids(syscall_address, limit) -> list of every PID (or TID) in 1..limit that kill(pid, 0) finds\n"
"(0 or EPERM), as rawsys.alive_pids().");

static PyObject *procread_alive_pids(PyObject *module, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t limit;
    (void)module;
    if (!PyArg_ParseTuple(args, "Kn", &address, &limit))
        return NULL;
    syscall_fn call = syscall_at(address);
    if (address == 0)
        return NULL;
    if (limit < 0 || limit > MAX_PID) {
        PyErr_Format(PyExc_ValueError, "PID limit %zd outside 0..%d", limit, MAX_PID);
        return NULL;
    }
    int *alive = malloc(sizeof(int) * (size_t)(limit > 0 ? limit : 1));
    if (alive == NULL)
        return PyErr_NoMemory();
    Py_ssize_t found = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t pid = 1; pid <= limit; pid++) {
        if (call(SYS_kill, (long)pid, 0L) == 0 || errno == EPERM)
            alive[found++] = (int)pid;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = PyList_New(found);
    for (Py_ssize_t i = 0; result != NULL && i < found; i++) {
        PyObject *number = PyLong_FromLong(alive[i]);
        if (number == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, number);
    }
    free(alive);
    return result;
}

PyDoc_STRVAR(readlink_each_doc,
"readlink_each(syscall_address, paths) -> for each path (bytes) its link's target decoded as os.fsdecode()\n"
"does (at most 4096 bytes, as rawsys.readlink_each()), or None where readlinkat(2) fails.");

/* The paths of a tuple as C strings (the tuple keeps them alive); NULL with TypeError or ValueError set. */
static const char **bytes_paths(PyObject *paths, Py_ssize_t count)
{
    const char **names = malloc(sizeof(char *) * (size_t)(count > 0 ? count : 1));
    if (names == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *path = PyTuple_GET_ITEM(paths, i);
        Py_ssize_t size;
        char *text;
        if (!PyBytes_Check(path)) {
            PyErr_SetString(PyExc_TypeError, "paths must be bytes");
        } else if (PyBytes_AsStringAndSize(path, &text, &size) == 0 && (Py_ssize_t)strlen(text) != size) {
            PyErr_SetString(PyExc_ValueError, "path holds a NUL byte");
        } else {
            names[i] = text;
            continue;
        }
        free(names);
        return NULL;
    }
    return names;
}

typedef struct {
    char *data;                 /* every target, one after another */
    Py_ssize_t used, cap;
    Py_ssize_t *sizes;          /* each path's target size, -1 where it failed */
} links_t;

static int keep_target(links_t *links, const char *target, Py_ssize_t size)
{
    if (links->used + size > links->cap) {
        Py_ssize_t cap = (links->cap + size) * 2;
        char *grown = realloc(links->data, (size_t)cap);
        if (grown == NULL)
            return -1;
        links->data = grown;
        links->cap = cap;
    }
    memcpy(links->data + links->used, target, (size_t)size);
    links->used += size;
    return 0;
}

static PyObject *procread_readlink_each(PyObject *module, PyObject *args)
{
    unsigned long long address;
    PyObject *given;
    (void)module;
    if (!PyArg_ParseTuple(args, "KO", &address, &given))
        return NULL;
    syscall_fn call = syscall_at(address);
    if (address == 0)
        return NULL;
    /* A tuple of our own: the caller's list could change while the GIL is released. */
    PyObject *paths = PySequence_Tuple(given);
    if (paths == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(paths);
    const char **names = bytes_paths(paths, count);
    links_t links = {NULL, 0, 0, names ? malloc(sizeof(Py_ssize_t) * (size_t)(count > 0 ? count : 1)) : NULL};
    PyObject *result = NULL;
    if (names == NULL)
        goto done;
    if (links.sizes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int out_of_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    char target[LINK_MAX_BYTES];
    for (Py_ssize_t i = 0; i < count && !out_of_memory; i++) {
        long got = call(SYS_readlinkat, (long)AT_FDCWD, names[i], target, (long)sizeof target);
        links.sizes[i] = got < 0 ? -1 : got;
        if (got > 0 && keep_target(&links, target, got) < 0)
            out_of_memory = 1;
    }
    Py_END_ALLOW_THREADS
    if (out_of_memory) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(count);
    PyObject *last = NULL;          /* most processes share one target (one namespace): decode it once */
    Py_ssize_t offset = 0, last_offset = 0, last_size = -1;
    for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
        Py_ssize_t size = links.sizes[i];
        PyObject *text;
        if (size < 0) {
            text = Py_NewRef(Py_None);
        } else if (last != NULL && size == last_size &&
                   memcmp(links.data + offset, links.data + last_offset, (size_t)size) == 0) {
            text = Py_NewRef(last);
        } else {
            text = PyUnicode_DecodeFSDefaultAndSize(size ? links.data + offset : "", size);
            if (text == NULL) {
                Py_CLEAR(result);
                break;
            }
            last = text;
            last_offset = offset;
            last_size = size;
        }
        PyList_SET_ITEM(result, i, text);
        if (size > 0)
            offset += size;
    }
done:
    free(names);
    free(links.data);
    free(links.sizes);
    Py_DECREF(paths);
    return result;
}

/* ---- a socket table (/proc/PID/net/tcp ...) split into sockets: sockets.parse_table() in C.
 * The same lines as sockets.TABLE_LINE finds, and the same values as the Python loop makes of them. */

PyDoc_STRVAR(parse_table_doc,
"parse_table(data, make, protocol, udp, established_only, state_names) -> list of make(protocol, local\n"
"address, local port, remote address, remote port, state, uid, inode) (a tuple subclass: RawSocket) for\n"
"every line sockets.TABLE_LINE matches, as sockets.parse_table() makes them; state_names[n] names state n.");

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A run of at least one character of the class from *at; its end, or NULL when there is none. */
static const char *run_of(const char *at, const char *end, int (*in_class)(char))
{
    const char *start = at;
    while (at < end && in_class(*at))
        at++;
    return at > start ? at : NULL;
}

static int is_token(char c)
{
    return c != ' ' && c != '\n';
}

static const char *expect(const char *at, const char *end, char c)
{
    return at != NULL && at < end && *at == c ? at + 1 : NULL;
}

static const char *spaces(const char *at, const char *end)
{
    const char *start = at;
    while (at != NULL && at < end && *at == ' ')
        at++;
    return at != NULL && at > start ? at : NULL;
}

typedef struct {
    const char *host, *port;        /* the hex runs */
    Py_ssize_t host_size, port_size;
} endpoint_t;

/* A run of the class at *at (NULL: none): its start and size, and *at moved past it; 0 when there is none. */
static int take_run(const char **at, const char *end, int (*in_class)(char), const char **start, Py_ssize_t *size)
{
    const char *past = *at != NULL ? run_of(*at, end, in_class) : NULL;
    if (past == NULL)
        return 0;
    *start = *at;
    *size = past - *at;
    *at = past;
    return 1;
}

/* One line from `at` (just after its newline) as TABLE_LINE reads it; 1 with the fields set, else 0. */
static int table_line(const char *at, const char *end, endpoint_t *local, endpoint_t *remote,
                      const char **state, Py_ssize_t *state_size, const char **uid, Py_ssize_t *uid_size,
                      const char **inode, Py_ssize_t *inode_size)
{
    const char *skipped;
    Py_ssize_t skipped_size;
    while (at < end && *at == ' ')
        at++;
    if (!take_run(&at, end, is_digit, &skipped, &skipped_size))      /* sl */
        return 0;
    at = expect(expect(at, end, ':'), end, ' ');
    endpoint_t *sides[2] = {local, remote};
    for (int side = 0; side < 2; side++) {
        if (!take_run(&at, end, is_hex, &sides[side]->host, &sides[side]->host_size))
            return 0;
        at = expect(at, end, ':');
        if (!take_run(&at, end, is_hex, &sides[side]->port, &sides[side]->port_size))
            return 0;
        at = expect(at, end, ' ');
    }
    if (!take_run(&at, end, is_hex, state, state_size))
        return 0;
    for (int token = 0; token < 3; token++) {       /* tx:rx tr:when retrnsmt */
        at = expect(at, end, ' ');
        if (!take_run(&at, end, is_token, &skipped, &skipped_size))
            return 0;
    }
    at = spaces(at, end);
    if (!take_run(&at, end, is_digit, uid, uid_size))
        return 0;
    at = spaces(at, end);
    if (!take_run(&at, end, is_token, &skipped, &skipped_size))     /* timeout */
        return 0;
    at = spaces(at, end);
    return take_run(&at, end, is_digit, inode, inode_size);
}

/* An address as sockets.decode_host() gives it: each run of up to 8 hex digits is one in-kernel 32-bit
 * word in host order; one word is IPv4, four IPv6, anything else no address (NULL, no error set). */
static PyObject *address_text(const char *hex, Py_ssize_t size)
{
    Py_ssize_t words = (size + 7) / 8;
    if (words != 1 && words != 4)
        return NULL;
    unsigned char raw[16];
    for (Py_ssize_t word = 0; word < words; word++) {
        uint32_t value = 0;
        for (Py_ssize_t i = word * 8; i < size && i < word * 8 + 8; i++)
            value = value << 4 | (uint32_t)hex_value(hex[i]);
        memcpy(raw + word * 4, &value, 4);
    }
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(words == 1 ? AF_INET : AF_INET6, raw, text, sizeof text) == NULL)
        return NULL;
    return PyUnicode_FromString(text);
}

/* The state's name by its number where state_names has one, else its hex code as printed. */
static PyObject *state_text(const char *hex, Py_ssize_t size, PyObject *names)
{
    Py_ssize_t first = 0;
    while (first < size - 1 && hex[first] == '0')
        first++;
    if (size - first <= 8) {
        unsigned long value = 0;
        for (Py_ssize_t i = first; i < size; i++)
            value = value << 4 | (unsigned long)hex_value(hex[i]);
        if (value > 0 && value < (unsigned long)PyTuple_GET_SIZE(names)) {
            PyObject *name = PyTuple_GET_ITEM(names, (Py_ssize_t)value);
            if (PyUnicode_Check(name) && PyUnicode_GET_LENGTH(name) > 0)
                return Py_NewRef(name);
        }
    }
    return PyUnicode_DecodeASCII(hex, size, "strict");
}

/* The address of this side, reusing the last one made when the hex is the same (a host's own address and
 * loopback fill its tables). */
typedef struct {
    const char *hex;
    Py_ssize_t size;
    PyObject *text;
} last_address_t;

static PyObject *address_of(const endpoint_t *side, last_address_t *last)
{
    if (last->text != NULL && last->size == side->host_size && memcmp(last->hex, side->host, (size_t)side->host_size) == 0)
        return Py_NewRef(last->text);
    PyObject *text = address_text(side->host, side->host_size);
    if (text != NULL) {
        Py_XSETREF(last->text, Py_NewRef(text));
        last->hex = side->host;
        last->size = side->host_size;
    }
    return text;
}

static PyObject *procread_parse_table(PyObject *module, PyObject *args)
{
    const char *data;
    Py_ssize_t size;
    PyTypeObject *make;
    PyObject *protocol, *names;
    int udp, established_only;
    (void)module;
    if (!PyArg_ParseTuple(args, "y#O!UppO!", &data, &size, &PyType_Type, &make, &protocol, &udp, &established_only,
                          &PyTuple_Type, &names))
        return NULL;
    if (!PyType_IsSubtype(make, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "make must be a tuple type");
        return NULL;
    }
    PyObject *found = PyList_New(0);
    PyObject *no_state = PyUnicode_FromString("");
    last_address_t locals = {NULL, 0, NULL}, remotes = {NULL, 0, NULL};
    const char *end = data + size;
    const char *at = found != NULL && no_state != NULL ? memchr(data, '\n', (size_t)size) : NULL;
    int failed = found == NULL || no_state == NULL;
    while (at != NULL && !failed) {
        endpoint_t local, remote;
        const char *state, *uid, *inode;
        Py_ssize_t state_size, uid_size, inode_size;
        const char *line = at + 1;
        at = memchr(line, '\n', (size_t)(end - line));
        if (!table_line(line, at ? at : end, &local, &remote, &state, &state_size, &uid, &uid_size, &inode, &inode_size))
            continue;
        if (established_only && !(state_size == 2 && state[0] == '0' && state[1] == '1'))
            continue;
        PyObject *fields[8] = {Py_NewRef(protocol), address_of(&local, &locals),
                               number_in_base(local.port, local.port_size, 16), address_of(&remote, &remotes),
                               number_in_base(remote.port, remote.port_size, 16),
                               udp ? Py_NewRef(no_state) : state_text(state, state_size, names),
                               number_in_base(uid, uid_size, 10), number_in_base(inode, inode_size, 10)};
        int complete = 1;
        for (int i = 0; i < 8; i++)
            complete = complete && fields[i] != NULL;
        PyObject *item = NULL;
        if (complete) {
            item = make->tp_alloc(make, 8);
            for (int i = 0; item != NULL && i < 8; i++)
                PyTuple_SET_ITEM(item, i, Py_NewRef(fields[i]));
        }
        for (int i = 0; i < 8; i++)
            Py_XDECREF(fields[i]);
        if (item != NULL) {
            failed = PyList_Append(found, item) < 0;
            Py_DECREF(item);
        } else if (PyErr_Occurred()) {
            /* a decimal past int()'s digit limit is skipped, as the ValueError skips it in Python; an address
             * that is none sets no error and is skipped; anything else (out of memory) fails the call */
            if (PyErr_ExceptionMatches(PyExc_ValueError))
                PyErr_Clear();
            else
                failed = 1;
        }
    }
    Py_XDECREF(locals.text);
    Py_XDECREF(remotes.text);
    Py_XDECREF(no_state);
    if (failed)
        Py_CLEAR(found);
    return found;
}

/* ---- stat() of each path (proc_facts.stat_exes: every /proc/PID/exe), in one call without the GIL. */

PyDoc_STRVAR(stat_each_doc,
"stat_each(paths) -> for each path (bytes), following links as os.stat() does, (st_dev, st_ino, st_size,\n"
"st_mtime_ns, st_ctime_ns, is a regular file) or the errno of the failed stat.");

static PyObject *procread_stat_each(PyObject *module, PyObject *args)
{
    PyObject *given;
    (void)module;
    if (!PyArg_ParseTuple(args, "O", &given))
        return NULL;
    PyObject *paths = PySequence_Tuple(given);       /* ours: the caller's list could change without the GIL */
    if (paths == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(paths);
    const char **names = bytes_paths(paths, count);
    looked_t *looked = names ? malloc(sizeof(looked_t) * (size_t)(count > 0 ? count : 1)) : NULL;
    PyObject *result = NULL;
    if (names != NULL && looked == NULL)
        PyErr_NoMemory();
    if (looked != NULL) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < count; i++)
            looked[i].err = stat(names[i], &looked[i].info) < 0 ? errno : 0;
        Py_END_ALLOW_THREADS
        result = PyList_New(count);
    }
    for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
        PyObject *item = looked_result(&looked[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, item);
    }
    free(names);
    free(looked);
    Py_DECREF(paths);
    return result;
}

/* ---- a folder's names by getdents64 (rawsys.list_fd: /proc for the hidden-process search and the
 * namespace step, task folders, homes), through the same syscall(2) wrapper as the probes above. */

PyDoc_STRVAR(list_fd_doc,
"list_fd(syscall_address, fd, limit) -> the names (decoded as os.fsdecode() does) of the folder open as fd,\n"
"read from its current offset with getdents64 until the end or until at least limit are read, cut to\n"
"limit; '.' and '..' left out; OSError with the errno of a failed getdents64, as rawsys.list_fd().");

#define GETDENTS_BUFFER (64 * 1024)    /* rawsys.GETDENTS_BUFFER */
#define DIRENT_NAME_AT 19              /* struct linux_dirent64: d_ino 8, d_off 8, d_reclen 2, d_type 1 */

static PyObject *procread_list_fd(PyObject *module, PyObject *args)
{
    unsigned long long address;
    int fd;
    Py_ssize_t limit;
    (void)module;
    if (!PyArg_ParseTuple(args, "Kin", &address, &fd, &limit))
        return NULL;
    syscall_fn call = syscall_at(address);
    if (address == 0)
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "negative limit");
        return NULL;
    }
    char *buffer = malloc(GETDENTS_BUFFER);
    links_t names = {NULL, 0, 0, NULL};     /* the names one after another, each ended by its NUL */
    Py_ssize_t count = 0;
    int failed_errno = 0, out_of_memory = buffer == NULL;
    Py_BEGIN_ALLOW_THREADS
    while (!out_of_memory && count < limit) {
        long size = call(SYS_getdents64, (long)fd, buffer, (long)GETDENTS_BUFFER);
        if (size < 0) {
            failed_errno = errno;
            break;
        }
        if (size == 0)
            break;
        for (long offset = 0; offset + DIRENT_NAME_AT <= size;) {
            unsigned short reclen;
            memcpy(&reclen, buffer + offset + 16, sizeof reclen);
            if (reclen == 0 || offset + reclen > size)
                break;
            const char *name = buffer + offset + DIRENT_NAME_AT;
            const char *end = memchr(name, '\0', (size_t)(reclen - DIRENT_NAME_AT));
            Py_ssize_t length = end ? end - name : reclen - DIRENT_NAME_AT;
            offset += reclen;
            if ((length == 1 && name[0] == '.') || (length == 2 && name[0] == '.' && name[1] == '.'))
                continue;
            if (keep_target(&names, name, length) < 0 || keep_target(&names, "", 1) < 0) {
                out_of_memory = 1;
                break;
            }
            count++;
        }
    }
    Py_END_ALLOW_THREADS
    free(buffer);
    PyObject *result = NULL;
    if (out_of_memory) {
        PyErr_NoMemory();
    } else if (failed_errno) {
        errno = failed_errno;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        Py_ssize_t kept = count < limit ? count : limit;
        result = PyList_New(kept);
        const char *at = names.data;
        for (Py_ssize_t i = 0; result != NULL && i < kept; i++) {
            Py_ssize_t length = (Py_ssize_t)strlen(at);
            PyObject *text = PyUnicode_DecodeFSDefaultAndSize(at, length);
            if (text == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, i, text);
            at += length + 1;
        }
    }
    free(names.data);
    return result;
}

/* ---- the same sockets from the kernel's sock_diag netlink dump (what ss reads), in the caller's network
 * namespace: the tables above are text the kernel formats line by line and hands out a page per read,
 * each read walking to where the last stopped; the dump is the same sockets in binary, in a few reads.
 * Through the same syscall(2) wrapper as the probes (a preloaded hider cannot filter the answer). */

PyDoc_STRVAR(diag_table_doc,
"diag_table(syscall_address, family, protocol, make, name, udp, established_only, state_names) -> the\n"
"sockets of one family (AF_INET, AF_INET6) and protocol (IPPROTO_TCP, IPPROTO_UDP) as parse_table() gives\n"
"the lines of the matching /proc/net table: make(name, local address, local port, remote address,\n"
"remote port, state, uid, inode); OSError with the errno when the dump cannot be had.");

#define DIAG_BUFFER (256 * 1024)    /* more than one dump message batch the kernel sends per read */

static PyObject *diag_address(int family, const __be32 *words)
{
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(family, words, text, sizeof text) == NULL)
        return NULL;
    return PyUnicode_FromString(text);
}

static PyObject *diag_state(unsigned state, PyObject *names)
{
    if (state > 0 && state < (unsigned)PyTuple_GET_SIZE(names)) {
        PyObject *name = PyTuple_GET_ITEM(names, (Py_ssize_t)state);
        if (PyUnicode_Check(name) && PyUnicode_GET_LENGTH(name) > 0)
            return Py_NewRef(name);
    }
    return PyUnicode_FromFormat("%02X", state);        /* as the table prints a state it has no name for */
}

static PyObject *diag_row(const struct inet_diag_msg *msg, PyTypeObject *make, PyObject *protocol, int udp,
                          PyObject *no_state, PyObject *names)
{
    PyObject *fields[8] = {Py_NewRef(protocol), diag_address(msg->idiag_family, msg->id.idiag_src),
                           PyLong_FromLong(ntohs(msg->id.idiag_sport)),
                           diag_address(msg->idiag_family, msg->id.idiag_dst),
                           PyLong_FromLong(ntohs(msg->id.idiag_dport)),
                           udp ? Py_NewRef(no_state) : diag_state(msg->idiag_state, names),
                           PyLong_FromUnsignedLong(msg->idiag_uid), PyLong_FromUnsignedLong(msg->idiag_inode)};
    PyObject *item = NULL;
    int complete = 1;
    for (int i = 0; i < 8; i++)
        complete = complete && fields[i] != NULL;
    if (complete)
        item = make->tp_alloc(make, 8);
    for (int i = 0; item != NULL && i < 8; i++)
        PyTuple_SET_ITEM(item, i, Py_NewRef(fields[i]));
    for (int i = 0; i < 8; i++)
        Py_XDECREF(fields[i]);
    if (item == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "a socket address inet_ntop cannot write");
    return item;
}

/* Send the dump request; then each read's messages into `found` until NLMSG_DONE. 0, or an errno. */
static int diag_dump(syscall_fn call, int fd, int family, int protocol, unsigned states, char *buffer,
                     PyObject *found, PyTypeObject *make, PyObject *name, int udp, PyObject *no_state,
                     PyObject *names)
{
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } asked;
    memset(&asked, 0, sizeof asked);
    asked.header.nlmsg_len = sizeof asked;
    asked.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    asked.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    asked.header.nlmsg_seq = 1;
    asked.request.sdiag_family = (__u8)family;
    asked.request.sdiag_protocol = (__u8)protocol;
    asked.request.idiag_states = states;
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    long sent;
    Py_BEGIN_ALLOW_THREADS
    sent = call(SYS_sendto, (long)fd, &asked, (long)sizeof asked, 0L, &kernel, (long)sizeof kernel);
    Py_END_ALLOW_THREADS
    if (sent < 0)
        return errno;
    for (;;) {
        long got;
        Py_BEGIN_ALLOW_THREADS
        do {
            got = call(SYS_recvfrom, (long)fd, buffer, (long)DIAG_BUFFER, 0L, NULL, NULL);
        } while (got < 0 && errno == EINTR);
        Py_END_ALLOW_THREADS
        if (got < 0)
            return errno;
        if (got == 0)
            return EPROTO;          /* the kernel closed the dump before saying it was done */
        int left = (int)got;
        for (struct nlmsghdr *message = (struct nlmsghdr *)buffer; NLMSG_OK(message, left);
             message = NLMSG_NEXT(message, left)) {
            if (message->nlmsg_type == NLMSG_DONE)
                return 0;
            if (message->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *error = NLMSG_DATA(message);
                return message->nlmsg_len >= NLMSG_LENGTH(sizeof *error) && error->error < 0 ? -error->error
                                                                                            : EPROTO;
            }
            if (message->nlmsg_type != SOCK_DIAG_BY_FAMILY || message->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                continue;
            PyObject *item = diag_row(NLMSG_DATA(message), make, name, udp, no_state, names);
            if (item == NULL || PyList_Append(found, item) < 0) {
                Py_XDECREF(item);
                return -1;          /* a Python error is set */
            }
            Py_DECREF(item);
        }
    }
}

static PyObject *procread_diag_table(PyObject *module, PyObject *args)
{
    unsigned long long address;
    int family, protocol, udp, established_only;
    PyTypeObject *make;
    PyObject *name, *names;
    (void)module;
    if (!PyArg_ParseTuple(args, "KiiO!UppO!", &address, &family, &protocol, &PyType_Type, &make, &name, &udp,
                          &established_only, &PyTuple_Type, &names))
        return NULL;
    syscall_fn call = syscall_at(address);
    if (address == 0)
        return NULL;
    if (!PyType_IsSubtype(make, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "make must be a tuple type");
        return NULL;
    }
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "family must be AF_INET or AF_INET6");
        return NULL;
    }
    char *buffer = malloc(DIAG_BUFFER);
    PyObject *found = PyList_New(0);
    PyObject *no_state = PyUnicode_FromString("");
    if (buffer == NULL || found == NULL || no_state == NULL) {
        free(buffer);
        Py_XDECREF(found);
        Py_XDECREF(no_state);
        return PyErr_NoMemory();
    }
    long fd = call(SYS_socket, (long)AF_NETLINK, (long)(SOCK_RAW | SOCK_CLOEXEC), (long)NETLINK_SOCK_DIAG);
    int failed = fd < 0 ? errno
        : diag_dump(call, (int)fd, family, protocol, established_only ? 1U << 1 : ~0U, buffer, found, make, name,
                    udp, no_state, names);    /* TCP_ESTABLISHED is 1; a connected UDP socket is "established" too */
    if (fd >= 0)
        call(SYS_close, fd);
    free(buffer);
    Py_DECREF(no_state);
    if (failed) {
        Py_CLEAR(found);
        if (failed > 0) {           /* else diag_row set a Python error */
            errno = failed;
            PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    return found;
}

static PyMethodDef procread_methods[] = {
    {"read", procread_read, METH_VARARGS, read_doc},
    {"alive_pids", procread_alive_pids, METH_VARARGS, alive_pids_doc},
    {"readlink_each", procread_readlink_each, METH_VARARGS, readlink_each_doc},
    {"parse_table", procread_parse_table, METH_VARARGS, parse_table_doc},
    {"stat_each", procread_stat_each, METH_VARARGS, stat_each_doc},
    {"list_fd", procread_list_fd, METH_VARARGS, list_fd_doc},
    {"diag_table", procread_diag_table, METH_VARARGS, diag_table_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef procread_module = {
    PyModuleDef_HEAD_INIT, "_procread", "One process's /proc files, read in C (see processes.py).", -1,
    procread_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__procread(void)
{
    return PyModule_Create(&procread_module);
}
