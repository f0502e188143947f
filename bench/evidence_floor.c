/* The evidence a scan reads, and nothing else: per process what audit-agent's reader and steps read
 * (stat, status, cmdline, cgroup, environ; the exe, cwd and ns/net links; a stat of the executable; every
 * descriptor's link), the four socket tables, and one kill(pid, 0) per PID up to pid_max (the hidden-process
 * probe). No parsing, no judgement: the least CPU any program gathering the same evidence can cost.
 * Built and run by bench/evidence_floor.py. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char buf[1 << 16];
static unsigned long bytes;

static void slurp(int dir, const char *name) {
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) bytes += (unsigned long)got;
    close(fd);
}

static void link_at(int dir, const char *name) {
    ssize_t got = readlinkat(dir, name, buf, sizeof buf);
    if (got > 0) bytes += (unsigned long)got;
}

static void descriptors(int dir) {
    int fd = openat(dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    DIR *listing = fdopendir(fd);
    if (!listing) { close(fd); return; }
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL)
        if (entry->d_name[0] != '.') link_at(fd, entry->d_name);
    closedir(listing);
}

int main(void) {
    DIR *proc = opendir("/proc");
    if (!proc) return 1;
    struct dirent *entry;
    struct stat info;
    unsigned long processes = 0;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        int dir = openat(dirfd(proc), entry->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) continue;
        slurp(dir, "stat"); slurp(dir, "status"); slurp(dir, "cmdline");
        link_at(dir, "exe"); link_at(dir, "cwd");
        slurp(dir, "cgroup"); slurp(dir, "environ");
        descriptors(dir);
        link_at(dir, "ns/net");
        fstatat(dir, "exe", &info, 0);
        close(dir);
        processes++;
    }
    closedir(proc);
    int net = open("/proc/net", O_PATH | O_DIRECTORY | O_CLOEXEC);
    slurp(net, "tcp"); slurp(net, "tcp6"); slurp(net, "udp"); slurp(net, "udp6");
    close(net);
    FILE *max = fopen("/proc/sys/kernel/pid_max", "r");
    long pid_max = 32768;
    if (max) { if (fscanf(max, "%ld", &pid_max) != 1) pid_max = 32768; fclose(max); }
    for (long pid = 1; pid <= pid_max; pid++) kill((pid_t)pid, 0);
    printf("%lu processes, %lu bytes\n", processes, bytes);
    return 0;
}
