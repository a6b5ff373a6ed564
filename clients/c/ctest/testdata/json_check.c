/* Table test of atc_json_field, built and run by c_test.go. Prints each
 * failure and exits non-zero if any. */
#include "../../agora_token_client.h"

#include <stdio.h>
#include <string.h>

struct tcase {
    const char *json, *key;
    int rc;           /* expected return (the length when >= 0) */
    const char *want; /* expected value when rc >= 0 */
    size_t outlen;    /* 0: a large buffer */
};

int main(void)
{
    static const struct tcase cases[] = {
        {"{\"event\":\"token\",\"token\":\"007eJxTYP\"}", "token", 9, "007eJxTYP", 0},
        {"{ \"name\" : \"video\" , \"x\":1 }", "name", 5, "video", 0},
        {"{\"m\":\"say \\\"hi\\\" \\\\ \\/ \\n\\t\"}", "m", 15, "say \"hi\" \\ / \n\t", 0},
        {"{\"m\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"}", "m", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0},
        {"{\"tokens\":[{\"name\":\"x\"}],\"name\":\"y\"}", "name", 1, "y", 0},
        {"{\"a\":{\"name\":\"x\",\"b\":[1,\"]\"]},\"name\":\"z\"}", "name", 1, "z", 0},
        {"{\"a\":\"\\\"name\\\":\\\"x\\\"\",\"name\":\"w\"}", "name", 1, "w", 0},
        {"{\"na\\u006de\":\"escaped key\"}", "name", 11, "escaped key", 0},
        {"{\"expires_in\":3541,\"expires_at\":1763803600}", "expires_in", 4, "3541", 0},
        {"{\"expires_in\":-5}", "expires_in", 2, "-5", 0},
        {"{\"ok\":true}", "ok", 4, "true", 0},
        {"{\"name\":\"video\"}", "token", -1, NULL, 0},
        {"{}", "token", -1, NULL, 0},
        {"{\"tokens\":[1,2]}", "tokens", -1, NULL, 0},
        {"{\"name\":", "name", -2, NULL, 0},
        {"{\"a\":1 \"name\":\"x\"}", "name", -2, NULL, 0},
        {"[\"name\",\"x\"]", "name", -2, NULL, 0},
        {"garbage", "name", -2, NULL, 0},
        {"{\"name\":\"bad \\x escape\"}", "name", -2, NULL, 0},
        {"{\"name\":\"lone \\ud83d surrogate\"}", "name", -2, NULL, 0},
        {"{\"name\":\"nul \\u0000 inside\"}", "name", -2, NULL, 0},
        {"{\"name\":\"unterminated}", "name", -2, NULL, 0},
        {"{\"token\":\"0123456789\"}", "token", ATC_ERR_SPACE, NULL, 10},
        {"{\"token\":\"012345678\"}", "token", 9, "012345678", 10},
    };
    size_t i;
    int failed = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct tcase *t = &cases[i];
        char out[256];
        size_t outlen = t->outlen ? t->outlen : sizeof out;
        int rc = atc_json_field(t->json, t->key, out, outlen);
        if (rc != t->rc || (rc >= 0 && strcmp(out, t->want) != 0)) {
            printf("FAIL %s [%s]: got %d \"%s\", want %d \"%s\"\n", t->json, t->key, rc,
                   rc >= 0 ? out : "", t->rc, t->want ? t->want : "");
            failed = 1;
        }
    }
    if (!failed)
        printf("ok %lu cases\n", (unsigned long)(sizeof cases / sizeof cases[0]));
    return failed;
}
