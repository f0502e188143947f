/* Stand-in for a research chain node, pool or benchmark (tests/test_e2e_research.py).
 * It is whatever argv[0] says (bitcoind, monerod, lotus, pool_sv2, xmrig ...): the test copies this
 * binary under those names and starts it with the real programs' command lines.
 * STANDIN_BURN=1      hash-like busy loop (a benchmark's CPU use)
 * STANDIN_LISTEN=PORT listen on 127.0.0.1:PORT and keep accepted connections (a pool)
 * STANDIN_SECONDS=N   exit after N seconds (default 300; 0: exit at once, like one bitcoin-cli call)
 * Prints "ready" once set up. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

int main(void) {
    const char *seconds_text = getenv("STANDIN_SECONDS");
    long seconds = seconds_text ? atol(seconds_text) : 300;
    const char *listen_text = getenv("STANDIN_LISTEN");
    int server = -1;
    if (listen_text) {
        struct sockaddr_in addr = {0};
        int yes = 1;
        server = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        addr.sin_family = AF_INET;
        addr.sin_port = htons((unsigned short)atoi(listen_text));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(server, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(server, 8) != 0) {
            perror("listen");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    if (seconds == 0)
        return 0;
    time_t end = time(NULL) + seconds;
    int burn = getenv("STANDIN_BURN") != NULL;
    while (time(NULL) < end) {
        if (burn) {
            for (unsigned long i = 0; i < 50000000UL; i++)
                sink = sink * 6364136223846793005UL + i;
        } else if (server >= 0) {
            struct timeval tv = {1, 0};
            fd_set fds;
            FD_ZERO(&fds);
            FD_SET(server, &fds);
            if (select(server + 1, &fds, NULL, NULL, &tv) > 0)
                (void)accept(server, NULL, NULL);      /* keep it open: a connected miner */
        } else {
            sleep(1);
        }
    }
    return 0;
}
