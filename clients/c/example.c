/*
 * example: how an app on Agora's IoT SDK keeps its token fresh with
 * agora-token-agent. It gets the current token (what it would join the
 * channel with), then watches the agent and, for every new token pushed,
 * prints the call it would make: agora_rtc_renew_token(conn_id, token).
 * If the agent restarts it reconnects and picks up the current token.
 *
 *   example [-s SOCKET] [-n COUNT] NAME
 *
 * -n: exit after COUNT renewals (for tests); default: run until killed.
 * Output: one line per token put to use, on stdout; notes on stderr.
 * Exit status 1 if the agent refuses this process (forbidden).
 */
#define _POSIX_C_SOURCE 200809L

#include "agora_token_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char current[ATC_TOKEN_MAX];

/* What the app would do with a token: join with the first, renew after.
 * Returns 1 for a renewal. */
static int use_token(const char *token)
{
    int renewal = current[0] != '\0';
    if (strcmp(token, current) == 0)
        return 0; /* e.g. the watch repeating the token we hold */
    if (renewal)
        printf("agora_rtc_renew_token(conn, \"%s\")\n", token);
    else
        printf("agora_rtc_join_channel(conn, channel, uid, \"%s\")\n", token);
    snprintf(current, sizeof current, "%s", token);
    return renewal;
}

/* Whether the agent refused this process for good: forbidden does not
 * change until the agent's config or this process's groups do, so it is
 * reported once and the example stops (a retry every second would only
 * fill the journal). too_many_clients and the rest are worth a retry. */
static int refused(const atc_conn *c, int rc, const char *what)
{
    if (rc != ATC_ERR_AGENT || strcmp(atc_error_code(c), "forbidden") != 0)
        return 0;
    fprintf(stderr, "example: %s: the agent refuses this process (forbidden): %s; "
                    "allow its uid or a group of it in the agent's socket config\n",
            what, atc_last_error(c));
    return 1;
}

/* One session: connect, get, watch until the connection breaks. Returns
 * -1 once count renewals were made, 1 if the agent refused us for good,
 * 0 to reconnect. */
static int session(const char *path, const char *name, long *renewals, long count)
{
    const char *names[2];
    char token[ATC_TOKEN_MAX];
    atc_event ev;
    atc_conn *c = atc_connect(path);
    int rc;
    if (c == NULL) {
        perror("example: connect to the agent");
        return 0;
    }
    rc = atc_get(c, name, token, sizeof token);
    if (rc == ATC_OK) {
        if (use_token(token) && ++*renewals == count) {
            atc_close(c);
            return -1;
        }
    } else if (rc == ATC_ERR_AGENT && strcmp(atc_error_code(c), "unavailable") == 0)
        fprintf(stderr, "example: no token yet (%s); waiting for one\n", atc_last_error(c));
    else if (refused(c, rc, "get")) {
        atc_close(c);
        return 1;
    } else {
        fprintf(stderr, "example: get %s: %s\n", name, atc_last_error(c));
        atc_close(c);
        return 0;
    }
    names[0] = name;
    names[1] = NULL;
    if ((rc = atc_watch(c, names)) != ATC_OK) {
        int fatal = refused(c, rc, "watch");
        if (!fatal)
            fprintf(stderr, "example: watch %s: %s\n", name, atc_last_error(c));
        atc_close(c);
        return fatal;
    }
    while ((rc = atc_next_event(c, &ev)) == ATC_OK) {
        switch (ev.kind) {
        case ATC_EV_TOKEN:
            fprintf(stderr, "example: token %s kid=%s channel=%s uid=%s expires in %llds\n",
                    ev.name, ev.kid, ev.channel, ev.uid, ev.expires_in);
            if (use_token(ev.token) && ++*renewals == count) {
                atc_close(c);
                return -1;
            }
            break;
        case ATC_EV_WILL_EXPIRE:
            fprintf(stderr, "example: %s expires in %llds; the agent is renewing it\n", ev.name, ev.expires_in);
            break;
        case ATC_EV_EXPIRED:
            /* The SDK would call onRequestToken now; ask for a renewal. */
            fprintf(stderr, "example: %s expired; asking the agent to renew\n", ev.name);
            if (atc_renew(c, name) != ATC_OK)
                fprintf(stderr, "example: renew: %s\n", atc_last_error(c));
            break;
        default:
            fprintf(stderr, "example: %s: %s %s\n", ev.event, ev.code, ev.message);
        }
        fflush(stdout);
    }
    fprintf(stderr, "example: %s\n", atc_last_error(c));
    atc_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long count = 0, renewals = 0;
    int opt;
    while ((opt = getopt(argc, argv, "s:n:")) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: %s [-s SOCKET] [-n COUNT] NAME\n", argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: %s [-s SOCKET] [-n COUNT] NAME\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        struct timespec pause = {1, 0};
        int rc = session(path, argv[optind], &renewals, count);
        if (rc < 0)
            return 0;
        if (rc > 0)
            return 1;
        nanosleep(&pause, NULL); /* the agent restarts: try again */
    }
}
