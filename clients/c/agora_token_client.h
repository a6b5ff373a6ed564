/*
 * agora_token_client: a dependency-free C99 client of agora-token-agent's
 * Unix socket (newline-delimited JSON; the protocol is in docs/socket.md).
 *
 * For apps on Agora's IoT SDK: get the device's current token before
 * joining, then watch the socket and pass every pushed token to
 * agora_rtc_renew_token(conn_id, token). Call atc_renew when the SDK
 * reports a token error (onRequestToken, error 109/110).
 *
 *   atc_conn *c = atc_connect(NULL);              // default socket path
 *   char tok[ATC_TOKEN_MAX];
 *   if (c && atc_get(c, "video", tok, sizeof tok) == ATC_OK) join(tok);
 *   const char *names[] = {"video", NULL};
 *   atc_watch(c, names);
 *   atc_event ev;
 *   while (atc_next_event(c, &ev) == ATC_OK)
 *       if (ev.kind == ATC_EV_TOKEN) agora_rtc_renew_token(conn_id, ev.token);
 *   atc_close(c);
 *
 * Calls block; one connection must not be used from two threads at once.
 * atc_fd gives the socket for poll(): readable means atc_next_event has
 * at least part of a line to read.
 */
#ifndef AGORA_TOKEN_CLIENT_H
#define AGORA_TOKEN_CLIENT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the agent listens unless configured otherwise. */
#define ATC_DEFAULT_PATH "/run/agora-token-agent/agent.sock"

/* The longest line the client reads from the agent, without the newline. */
#define ATC_LINE_MAX 65536

/* A buffer this size holds any AccessToken2 the agent hands out. */
#define ATC_TOKEN_MAX 4096

/* Results: ATC_OK or a negative error. */
enum {
    ATC_OK = 0,
    ATC_ERR_IO = -1,     /* a system call failed (see errno) */
    ATC_ERR_CLOSED = -2, /* the agent closed the connection */
    ATC_ERR_PROTO = -3,  /* the agent sent something unexpected */
    ATC_ERR_AGENT = -4,  /* an error reply: see atc_error_code/atc_last_error;
                          * also a refused connection: "forbidden" (final:
                          * stop) or "too_many_clients" (retry later) */
    ATC_ERR_SPACE = -5,  /* the caller's buffer is too small */
    ATC_ERR_ARG = -6     /* a bad argument (NULL, empty or too long name) */
};

typedef struct atc_conn atc_conn;

typedef enum {
    ATC_EV_TOKEN,       /* a token is current: pass ev.token to the SDK */
    ATC_EV_WILL_EXPIRE, /* the token expires soon; the agent is renewing */
    ATC_EV_EXPIRED,     /* the token expired; the agent keeps renewing */
    ATC_EV_ERROR,       /* an error line (ev.code, ev.message) */
    ATC_EV_OTHER        /* any other line (ev.event names it) */
} atc_event_kind;

/*
 * One line from the agent. The strings point into the connection and
 * stay valid until the next call on it; absent fields are "" (never NULL).
 */
typedef struct {
    atc_event_kind kind;
    const char *event; /* the "event" field as sent */
    const char *name;
    const char *service;
    const char *channel;
    const char *user;
    const char *uid;
    const char *token;
    const char *kid;
    const char *code;    /* error code: not_found, unavailable, forbidden, ... */
    const char *message; /* error message */
    long long expires_at; /* Unix seconds on the issuer's clock; 0 absent */
    long long expires_in; /* seconds left when sent */
    int has_expires_in;
} atc_event;

/* Connects to the agent at path (NULL: ATC_DEFAULT_PATH). NULL on failure
 * with errno set. */
atc_conn *atc_connect(const char *path);

/* Closes the connection and frees it. NULL is allowed. */
void atc_close(atc_conn *c);

/* The connection's socket, for poll()/select(). */
int atc_fd(const atc_conn *c);

/* Copies the named token into buf (NUL-terminated). ATC_ERR_AGENT with
 * code "unavailable" if the agent has no valid token yet, "not_found" if
 * it keeps no such name. */
int atc_get(atc_conn *c, const char *name, char *buf, size_t len);

/* Starts watching the NULL-terminated list of names (NULL or empty: all).
 * Once it returns ATC_OK, atc_next_event yields the current token of each
 * name, then every token, will_expire and expired event in order. */
int atc_watch(atc_conn *c, const char *const *names);

/* Asks the agent for a fresh token now. Returns once the agent accepted
 * (it coalesces and rate-limits); the new token then arrives as an
 * ATC_EV_TOKEN event on this connection, watching or not. */
int atc_renew(atc_conn *c, const char *name);

/* Blocks until the next line and decodes it into ev. */
int atc_next_event(atc_conn *c, atc_event *ev);

/* The agent's error code and message of the last ATC_ERR_AGENT, or a
 * description of the last other failure; "" if none. */
const char *atc_error_code(const atc_conn *c);
const char *atc_last_error(const atc_conn *c);

/*
 * The JSON field extractor the client uses, for callers that read other
 * fields: finds key at the top level of the JSON object in json and
 * copies its value into out (strings unescaped, numbers and literals as
 * written; objects and arrays are not extracted). Returns the value's
 * length, -1 if the key is absent or not a string/number/literal, -2 if
 * the JSON is malformed, ATC_ERR_SPACE if out is too small.
 */
int atc_json_field(const char *json, const char *key, char *out, size_t outlen);

#ifdef __cplusplus
}
#endif

#endif /* AGORA_TOKEN_CLIENT_H */
