/*
 * agora_token_client: C99 client of agora-token-agent's Unix socket.
 * See agora_token_client.h for the API and docs/socket.md for the protocol.
 */
#define _POSIX_C_SOURCE 200809L

#include "agora_token_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* Lines read while waiting for a reply, kept for atc_next_event. */
#define ATC_PENDING 32
/* The longest token name a request may carry. */
#define ATC_NAME_MAX 256

struct atc_conn {
    int fd;
    unsigned seq;
    int skipping; /* discarding the rest of an over-long line */
    size_t rlen;
    char *pending[ATC_PENDING];
    int phead, pcount;
    char code[64];
    char err[512];
    char rbuf[ATC_LINE_MAX + 1];
    char line[ATC_LINE_MAX + 1];
    char arena[ATC_LINE_MAX + 64]; /* decoded strings of the current event */
};

/* ---- JSON: just enough for the protocol's flat objects ---- */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at '"': returns the character after the closing quote, NULL if bad. */
static const char *skip_string(const char *p)
{
    p++;
    while (*p != '"') {
        if (*p == '\0' || (unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == '\0')
                return NULL;
        }
        p++;
    }
    return p + 1;
}

static const char *skip_value(const char *p, int depth)
{
    const char *start;
    p = ws(p);
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        if (depth > 32)
            return NULL;
        p = ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || (p = skip_string(p)) == NULL)
                    return NULL;
                p = ws(p);
                if (*p != ':')
                    return NULL;
                p++;
            }
            if ((p = skip_value(p, depth + 1)) == NULL)
                return NULL;
            p = ws(p);
            if (*p == ',') {
                p = ws(p + 1);
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    start = p; /* a number or true/false/null */
    while (*p != '\0' && strchr("+-0123456789.eEtrufalsn", *p) != NULL)
        p++;
    return p > start ? p : NULL;
}

static int hex4(const char *p, unsigned *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char ch = p[i];
        *v <<= 4;
        if (ch >= '0' && ch <= '9')
            *v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            *v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            *v |= (unsigned)(ch - 'A' + 10);
        else
            return 0;
    }
    return 1;
}

/* Appends ch to out if it fits with room for the final NUL. */
static int put(char *out, size_t outlen, size_t *n, unsigned ch)
{
    if (*n + 1 >= outlen)
        return 0;
    out[(*n)++] = (char)ch;
    return 1;
}

/* Unescapes the JSON string at p (at its '"') into out. */
static int unescape(const char *p, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return ATC_ERR_SPACE;
    for (p++; *p != '"'; p++) {
        unsigned cp;
        if (*p == '\0' || (unsigned char)*p < 0x20)
            return -2;
        if (*p != '\\') {
            if (!put(out, outlen, &n, (unsigned char)*p))
                return ATC_ERR_SPACE;
            continue;
        }
        p++;
        switch (*p) {
        case '"': case '\\': case '/': cp = (unsigned char)*p; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!hex4(p + 1, &cp))
                return -2;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                unsigned lo;
                if (p[1] != '\\' || p[2] != 'u' || !hex4(p + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return -2;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
                return -2;
            }
            break;
        default:
            return -2;
        }
        if (cp < 0x80) {
            if (!put(out, outlen, &n, cp))
                return ATC_ERR_SPACE;
        } else if (cp < 0x800) {
            if (!put(out, outlen, &n, 0xC0 | (cp >> 6)) || !put(out, outlen, &n, 0x80 | (cp & 0x3F)))
                return ATC_ERR_SPACE;
        } else if (cp < 0x10000) {
            if (!put(out, outlen, &n, 0xE0 | (cp >> 12)) || !put(out, outlen, &n, 0x80 | ((cp >> 6) & 0x3F)) ||
                !put(out, outlen, &n, 0x80 | (cp & 0x3F)))
                return ATC_ERR_SPACE;
        } else {
            if (!put(out, outlen, &n, 0xF0 | (cp >> 18)) || !put(out, outlen, &n, 0x80 | ((cp >> 12) & 0x3F)) ||
                !put(out, outlen, &n, 0x80 | ((cp >> 6) & 0x3F)) || !put(out, outlen, &n, 0x80 | (cp & 0x3F)))
                return ATC_ERR_SPACE;
        }
    }
    out[n] = '\0';
    return (int)n;
}

int atc_json_field(const char *json, const char *key, char *out, size_t outlen)
{
    char kbuf[128];
    const char *p = ws(json);
    if (*p != '{')
        return -2;
    p = ws(p + 1);
    if (*p == '}')
        return -1;
    for (;;) {
        int kl;
        const char *end;
        if (*p != '"')
            return -2;
        kl = unescape(p, kbuf, sizeof kbuf);
        if (kl == -2 || (p = skip_string(p)) == NULL)
            return -2;
        p = ws(p);
        if (*p != ':')
            return -2;
        p = ws(p + 1);
        if (kl >= 0 && strcmp(kbuf, key) == 0) {
            size_t len;
            if (*p == '"')
                return unescape(p, out, outlen);
            if (*p == '{' || *p == '[')
                return -1;
            if ((end = skip_value(p, 0)) == NULL)
                return -2;
            len = (size_t)(end - p);
            if (len + 1 > outlen)
                return ATC_ERR_SPACE;
            memcpy(out, p, len);
            out[len] = '\0';
            return (int)len;
        }
        if ((p = skip_value(p, 0)) == NULL)
            return -2;
        p = ws(p);
        if (*p == ',') {
            p = ws(p + 1);
            continue;
        }
        return *p == '}' ? -1 : -2;
    }
}

/* ---- connection ---- */

static int fail(atc_conn *c, int rc, const char *fmt, ...)
{
    va_list ap;
    c->code[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return rc;
}

atc_conn *atc_connect(const char *path)
{
    struct sockaddr_un addr;
    atc_conn *c;
    int saved;
    if (path == NULL)
        path = ATC_DEFAULT_PATH;
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    if ((c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    if ((c->fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0) {
        saved = errno;
        free(c);
        errno = saved;
        return NULL;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    while (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno == EINTR)
            continue;
        saved = errno;
        close(c->fd);
        free(c);
        errno = saved;
        return NULL;
    }
    return c;
}

void atc_close(atc_conn *c)
{
    if (c == NULL)
        return;
    while (c->pcount > 0) {
        free(c->pending[c->phead]);
        c->phead = (c->phead + 1) % ATC_PENDING;
        c->pcount--;
    }
    close(c->fd);
    free(c);
}

int atc_fd(const atc_conn *c) { return c->fd; }
const char *atc_error_code(const atc_conn *c) { return c->code; }
const char *atc_last_error(const atc_conn *c) { return c->err; }

static int send_all(atc_conn *c, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(c, ATC_ERR_IO, "send: %s", strerror(errno));
        }
        buf += n;
        len -= (size_t)n;
    }
    return ATC_OK;
}

/* Reads the next line from the socket into c->line. */
static int read_line(atc_conn *c)
{
    for (;;) {
        char *nl = memchr(c->rbuf, '\n', c->rlen);
        ssize_t n;
        if (nl != NULL) {
            size_t len = (size_t)(nl - c->rbuf);
            int skipped = c->skipping;
            if (!skipped) {
                if (len > 0 && c->rbuf[len - 1] == '\r')
                    len--;
                memcpy(c->line, c->rbuf, len);
                c->line[len] = '\0';
            }
            c->rlen -= (size_t)(nl - c->rbuf) + 1;
            memmove(c->rbuf, nl + 1, c->rlen);
            c->skipping = 0;
            if (!skipped)
                return ATC_OK;
            continue;
        }
        if (c->rlen == sizeof c->rbuf) { /* no newline in a full buffer */
            c->rlen = 0;
            if (!c->skipping) {
                c->skipping = 1;
                return fail(c, ATC_ERR_PROTO, "the agent sent a line longer than %d bytes", ATC_LINE_MAX);
            }
            continue;
        }
        n = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail(c, ATC_ERR_IO, "read: %s", strerror(errno));
        if (n == 0)
            return fail(c, ATC_ERR_CLOSED, "the agent closed the connection");
        c->rlen += (size_t)n;
    }
}

/* Decodes c->line into ev; strings go to c->arena. */
static int decode(atc_conn *c, atc_event *ev)
{
    static const char *const keys[] = {"event", "name", "service", "channel", "user",
                                       "uid", "token", "kid", "code", "message"};
    const char **dst[10];
    char num[32];
    size_t pos = 0, i;
    dst[0] = &ev->event; dst[1] = &ev->name; dst[2] = &ev->service; dst[3] = &ev->channel;
    dst[4] = &ev->user; dst[5] = &ev->uid; dst[6] = &ev->token; dst[7] = &ev->kid;
    dst[8] = &ev->code; dst[9] = &ev->message;
    memset(ev, 0, sizeof *ev);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int n = atc_json_field(c->line, keys[i], c->arena + pos, sizeof c->arena - pos);
        if (n == -2)
            return fail(c, ATC_ERR_PROTO, "the agent sent bad JSON: %.80s", c->line);
        if (n < 0) {
            *dst[i] = "";
            continue;
        }
        *dst[i] = c->arena + pos;
        pos += (size_t)n + 1;
    }
    if (ev->event[0] == '\0')
        return fail(c, ATC_ERR_PROTO, "the agent sent a line without \"event\": %.80s", c->line);
    if (atc_json_field(c->line, "expires_at", num, sizeof num) > 0)
        ev->expires_at = strtoll(num, NULL, 10);
    if (atc_json_field(c->line, "expires_in", num, sizeof num) > 0) {
        ev->expires_in = strtoll(num, NULL, 10);
        ev->has_expires_in = 1;
    }
    if (strcmp(ev->event, "token") == 0)
        ev->kind = ATC_EV_TOKEN;
    else if (strcmp(ev->event, "will_expire") == 0)
        ev->kind = ATC_EV_WILL_EXPIRE;
    else if (strcmp(ev->event, "expired") == 0)
        ev->kind = ATC_EV_EXPIRED;
    else if (strcmp(ev->event, "error") == 0)
        ev->kind = ATC_EV_ERROR;
    else
        ev->kind = ATC_EV_OTHER;
    return ATC_OK;
}

int atc_next_event(atc_conn *c, atc_event *ev)
{
    int rc;
    if (c->pcount > 0) {
        char *line = c->pending[c->phead];
        c->phead = (c->phead + 1) % ATC_PENDING;
        c->pcount--;
        strcpy(c->line, line);
        free(line);
    } else if ((rc = read_line(c)) != ATC_OK) {
        return rc;
    }
    return decode(c, ev);
}

/* Appends s to buf as a JSON string. */
static int append_string(char *buf, size_t cap, size_t *n, const char *s)
{
    if (*n + 1 >= cap)
        return 0;
    buf[(*n)++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        int w;
        if (ch == '"' || ch == '\\')
            w = snprintf(buf + *n, cap - *n, "\\%c", ch);
        else if (ch < 0x20)
            w = snprintf(buf + *n, cap - *n, "\\u%04x", ch);
        else
            w = snprintf(buf + *n, cap - *n, "%c", ch);
        if (w < 0 || (size_t)w >= cap - *n)
            return 0;
        *n += (size_t)w;
    }
    if (*n + 1 >= cap)
        return 0;
    buf[(*n)++] = '"';
    buf[*n] = '\0';
    return 1;
}

static int check_name(atc_conn *c, const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > ATC_NAME_MAX)
        return fail(c, ATC_ERR_ARG, "token name must be 1 to %d bytes", ATC_NAME_MAX);
    return ATC_OK;
}

/*
 * Sends the request {"op":op,"id":…<extra>} where extra is the rest of the
 * object (starting with ',' or empty), then reads lines until the reply
 * with that id, or an error without id (the connection was refused).
 * Other lines (watch events) are kept for atc_next_event.
 */
static int request(atc_conn *c, const char *op, const char *extra, atc_event *ev)
{
    char req[ATC_NAME_MAX * 8 + 8192];
    char id[32], got[32];
    int n, rc;
    snprintf(id, sizeof id, "atc-%u", ++c->seq);
    n = snprintf(req, sizeof req, "{\"op\":\"%s\",\"id\":\"%s\"%s}\n", op, id, extra);
    if (n < 0 || (size_t)n >= sizeof req)
        return fail(c, ATC_ERR_ARG, "request too long");
    if ((rc = send_all(c, req, (size_t)n)) != ATC_OK) {
        /* A refused caller's connection is closed at once: the reason
         * (forbidden, too_many_clients) may be waiting to be read. */
        char saved[sizeof c->err];
        snprintf(saved, sizeof saved, "%s", c->err);
        if (read_line(c) == ATC_OK && atc_json_field(c->line, "id", got, sizeof got) < 0 &&
            decode(c, ev) == ATC_OK && ev->kind == ATC_EV_ERROR) {
            snprintf(c->code, sizeof c->code, "%s", ev->code);
            snprintf(c->err, sizeof c->err, "%s", ev->message);
            return ATC_ERR_AGENT;
        }
        c->code[0] = '\0';
        snprintf(c->err, sizeof c->err, "%s", saved);
        return rc;
    }
    for (;;) {
        int idlen;
        char ev_name[16];
        if ((rc = read_line(c)) != ATC_OK)
            return rc;
        idlen = atc_json_field(c->line, "id", got, sizeof got);
        if (idlen >= 0 && strcmp(got, id) == 0)
            break;
        if (idlen < 0 && atc_json_field(c->line, "event", ev_name, sizeof ev_name) >= 0 &&
            strcmp(ev_name, "error") == 0)
            break;
        if (c->pcount == ATC_PENDING)
            return fail(c, ATC_ERR_PROTO, "more than %d events arrived while waiting for a reply", ATC_PENDING);
        if ((c->pending[(c->phead + c->pcount) % ATC_PENDING] = malloc(strlen(c->line) + 1)) == NULL)
            return fail(c, ATC_ERR_IO, "out of memory");
        strcpy(c->pending[(c->phead + c->pcount) % ATC_PENDING], c->line);
        c->pcount++;
    }
    if ((rc = decode(c, ev)) != ATC_OK)
        return rc;
    if (ev->kind == ATC_EV_ERROR) {
        snprintf(c->code, sizeof c->code, "%s", ev->code);
        snprintf(c->err, sizeof c->err, "%s", ev->message);
        return ATC_ERR_AGENT;
    }
    c->code[0] = c->err[0] = '\0';
    return ATC_OK;
}

static int expect(atc_conn *c, const atc_event *ev, const char *event)
{
    if (strcmp(ev->event, event) != 0)
        return fail(c, ATC_ERR_PROTO, "expected a %s reply, got %s", event, ev->event);
    return ATC_OK;
}

/* Sends op for one token name and reads the reply into ev. */
static int name_request(atc_conn *c, const char *op, const char *name, atc_event *ev)
{
    char extra[ATC_NAME_MAX * 8];
    size_t n;
    int rc;
    if ((rc = check_name(c, name)) != ATC_OK)
        return rc;
    strcpy(extra, ",\"name\":");
    n = strlen(extra);
    if (!append_string(extra, sizeof extra, &n, name))
        return fail(c, ATC_ERR_ARG, "token name too long");
    return request(c, op, extra, ev);
}

int atc_get(atc_conn *c, const char *name, char *buf, size_t len)
{
    atc_event ev;
    int rc;
    if ((rc = name_request(c, "get", name, &ev)) != ATC_OK)
        return rc;
    if ((rc = expect(c, &ev, "token")) != ATC_OK)
        return rc;
    if (strlen(ev.token) + 1 > len)
        return fail(c, ATC_ERR_SPACE, "token of %lu bytes does not fit the buffer", (unsigned long)strlen(ev.token));
    strcpy(buf, ev.token);
    return ATC_OK;
}

int atc_watch(atc_conn *c, const char *const *names)
{
    char extra[8192];
    size_t n = 0;
    atc_event ev;
    int rc;
    extra[0] = '\0';
    if (names != NULL && names[0] != NULL) {
        strcpy(extra, ",\"names\":[");
        n = strlen(extra);
        for (; *names != NULL; names++) {
            if ((rc = check_name(c, *names)) != ATC_OK)
                return rc;
            if (extra[n - 1] != '[') {
                if (n + 1 >= sizeof extra)
                    return fail(c, ATC_ERR_ARG, "too many names");
                extra[n++] = ',';
            }
            if (!append_string(extra, sizeof extra, &n, *names))
                return fail(c, ATC_ERR_ARG, "too many names");
        }
        if (n + 2 > sizeof extra)
            return fail(c, ATC_ERR_ARG, "too many names");
        extra[n++] = ']';
        extra[n] = '\0';
    }
    if ((rc = request(c, "watch", extra, &ev)) != ATC_OK)
        return rc;
    return expect(c, &ev, "watching");
}

int atc_renew(atc_conn *c, const char *name)
{
    atc_event ev;
    int rc;
    if ((rc = name_request(c, "renew", name, &ev)) != ATC_OK)
        return rc;
    return expect(c, &ev, "renewing");
}
