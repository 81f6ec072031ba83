
/*
 * Unit tests of the request envelope parser and of the JSON depth
 * pre-scan.  Every input is parsed from an exact-size heap copy that is
 * freed before the result is looked at, so that ASan catches a read past
 * the end and any pointer left into the input; the request is filled with
 * garbage before each parse, so that the parser has to clear it.
 *
 * With CHAT_JSON_CORPUS naming the project's JSON corpus (t/data/json, as
 * `make test-unit` sets it), every document of it is parsed as well: n_
 * files must fail, y_ files must not fail as JSON (save the few that we
 * refuse on purpose, listed below), i_ files just must not crash or leak.
 */


#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_request.h>
#include <unit.h>


#define S(lit)        lit, sizeof(lit) - 1

#define DEPTH         32        /* NGX_HTTP_CHAT_MAX_JSON_DEPTH */
#define BUF_MAX       8192

#define REQ(lit, e)   run(__LINE__, S(lit), DEPTH, e)


#define E_JSON        "not valid JSON"
#define E_DEEP        "JSON nested too deeply"
#define E_OBJECT      "a request must be a JSON object"
#define E_ID_TYPE     "id must be a string or an integer"
#define E_ID_LONG     "id is too long"
#define E_TYPE_NONE   "type is missing"
#define E_TYPE_TYPE   "type must be a string"


typedef struct {
    const char  *name;
    const char  *why;
    unsigned     seen;
} exception_t;


/*
 * The y_ files of the corpus that we refuse on purpose; any other y_ file
 * failing as JSON, or one of these passing, is a change.
 */

static exception_t  y_refused[] = {
    { "y_object_key_nul_escape.json",
      "jansson never takes \\u0000 in a key", 0 },
    { "y_object_repeated_key.json",
      "JSON_REJECT_DUPLICATES", 0 },
    { "y_object_repeated_key_by_escape.json",
      "JSON_REJECT_DUPLICATES compares keys once unescaped", 0 },
    { "y_object_repeated_key_equal_value.json",
      "JSON_REJECT_DUPLICATES, even for an equal value", 0 },
    { "y_string_u_nul.json",
      "\\u0000 in a string needs JSON_ALLOW_NUL", 0 },
    { NULL, NULL, 0 }
};


static ngx_http_chat_request_t  req;
static const char              *err;

static char  buf[BUF_MAX];


/*
 * Parses text and checks what every outcome promises: want NULL means
 * success, otherwise the reason.  The request is left for the caller to
 * look at and to release with done().
 */

static int
run(int line, const char *text, size_t len, unsigned max_depth,
    const char *want)
{
    int       rc;
    u_char   *copy;
    unsigned  failed;

    failed = unit_failed;

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        abort();
    }

    memcpy(copy, text, len);

    memset(&req, 0xa5, sizeof(ngx_http_chat_request_t));
    err = NULL;

    rc = ngx_http_chat_request_parse(&req, copy, len, max_depth, &err);

    free(copy);

    if (want == NULL) {
        CHECK_EQ(rc, 0);

        if (rc == 0) {
            CHECK(json_is_object(req.root));
            CHECK(req.type != NULL);
            CHECK(req.id == NULL || json_is_string(req.id)
                  || json_is_integer(req.id));

            if (req.type != NULL) {
                CHECK(memchr(req.type, 0, req.type_len) == NULL);
                CHECK_EQ(req.type[req.type_len], 0);
            }

        } else {
            fprintf(stderr, "    failed with \"%s\"\n", err ? err : "");
        }

    } else {
        CHECK_EQ(rc, -1);
        CHECK_STR(err, want);

        CHECK(req.type == NULL);
        CHECK_EQ(req.type_len, 0);

        if (strcmp(want, E_JSON) == 0 || strcmp(want, E_DEEP) == 0
            || strcmp(want, E_OBJECT) == 0)
        {
            CHECK(req.root == NULL);
            CHECK(req.id == NULL);

        } else {
            CHECK(json_is_object(req.root));
        }

        if (strcmp(want, E_ID_TYPE) == 0 || strcmp(want, E_ID_LONG) == 0) {
            CHECK(req.id == NULL);
        }
    }

    if (unit_failed != failed) {
        fprintf(stderr, "    from line %d: %.*s%s\n", line,
                (int) (len > 200 ? 200 : len), text,
                len > 200 ? "..." : "");
    }

    return rc;
}


static void
done(void)
{
    ngx_http_chat_request_free(&req);

    CHECK(req.root == NULL && req.type == NULL && req.id == NULL
          && req.type_len == 0);
}


static int
type_is(const char *type)
{
    return req.type != NULL && req.type_len == strlen(type)
           && memcmp(req.type, type, req.type_len) == 0;
}


static int
id_is_string(const char *id)
{
    return json_is_string(req.id) && strcmp(json_string_value(req.id), id)
                                     == 0;
}


static int
id_is_integer(json_int_t id)
{
    return json_is_integer(req.id) && json_integer_value(req.id) == id;
}


/* {"type":"ping","a":<n - 1 more levels>1} with arrays or objects */

static size_t
nested(char *b, unsigned n, unsigned arrays)
{
    char      *p;
    unsigned   i;

    p = b;
    p += sprintf(p, "{\"type\":\"ping\",\"a\":");

    for (i = 1; i < n; i++) {
        p += sprintf(p, arrays ? "[" : "{\"a\":");
    }

    *p++ = '1';

    for (i = 1; i < n; i++) {
        *p++ = arrays ? ']' : '}';
    }

    *p++ = '}';

    return (size_t) (p - b);
}


/* {"type":"ping","id":"<n times unit>" + tail} */

static size_t
id_of(char *b, const char *unit, unsigned n, const char *tail)
{
    char      *p;
    unsigned   i;

    p = b;
    p += sprintf(p, "{\"type\":\"ping\",\"id\":\"");

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s", unit);
    }

    p += sprintf(p, "%s\"}", tail);

    return (size_t) (p - b);
}


static void
test_valid(void)
{
    /* a string id */

    if (REQ("{\"type\":\"ping\",\"id\":\"c1\"}", NULL) == 0) {
        CHECK(type_is("ping"));
        CHECK_EQ(req.type_len, 4);
        CHECK(id_is_string("c1"));
        CHECK(json_object_get(req.root, "id") == req.id);
    }

    done();

    /* an integer id, the fields after the envelope kept in root */

    if (REQ("{\"id\":42,\"type\":\"message.send\",\"conversation\":7,"
            "\"body\":\"hi\"}", NULL)
        == 0)
    {
        CHECK(type_is("message.send"));
        CHECK(id_is_integer(42));
        CHECK_STR(json_string_value(json_object_get(req.root, "body")),
                  "hi");
    }

    done();

    /* no id */

    if (REQ("{\"type\":\"ping\"}", NULL) == 0) {
        CHECK(type_is("ping"));
        CHECK(req.id == NULL);
    }

    done();

    /* the edges of integer ids */

    REQ("{\"type\":\"ping\",\"id\":0}", NULL);
    CHECK(id_is_integer(0));
    done();

    REQ("{\"type\":\"ping\",\"id\":-1}", NULL);
    CHECK(id_is_integer(-1));
    done();

    REQ("{\"type\":\"ping\",\"id\":9223372036854775807}", NULL);
    CHECK(id_is_integer(LLONG_MAX));
    done();

    REQ("{\"type\":\"ping\",\"id\":-9223372036854775808}", NULL);
    CHECK(id_is_integer(LLONG_MIN));
    done();

    /* an empty id and an empty type: what a type means is not ours */

    REQ("{\"type\":\"\",\"id\":\"\"}", NULL);
    CHECK(type_is(""));
    CHECK(id_is_string(""));
    done();

    REQ("{\"type\":\"no.such.type\"}", NULL);
    CHECK(type_is("no.such.type"));
    done();

    /* the type is decoded: escapes and UTF-8, its length in bytes */

    REQ("{\"type\":\"t\\u00e9\\n\\\"\"}", NULL);
    CHECK(type_is("t\xc3\xa9\n\""));
    CHECK_EQ(req.type_len, 5);
    done();

    REQ("{\"type\":\"\xf0\x9f\x98\x80\"}", NULL);
    CHECK_EQ(req.type_len, 4);
    done();

    /* white space around and inside */

    REQ(" \r\n\t{ \"type\" : \"ping\" , \"id\" : 1 } \r\n\t", NULL);
    CHECK(type_is("ping"));
    CHECK(id_is_integer(1));
    done();

    /* an id in the middle of nested fields is the top-level one */

    REQ("{\"data\":{\"id\":\"inner\"},\"type\":\"ping\",\"id\":\"outer\"}",
        NULL);
    CHECK(id_is_string("outer"));
    done();

    REQ("{\"data\":{\"id\":1.5,\"type\":5},\"type\":\"ping\"}", NULL);
    CHECK(req.id == NULL);
    done();
}


static void
test_type(void)
{
    REQ("{}", E_TYPE_NONE);
    done();

    REQ("{\"Type\":\"ping\"}", E_TYPE_NONE);
    done();

    REQ("{\"data\":{\"type\":\"ping\"}}", E_TYPE_NONE);
    done();

    REQ("{\"type\":1}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":-1.5}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":null}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":{}}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":{\"name\":\"ping\"}}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":[\"ping\"]}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":true}", E_TYPE_TYPE);
    done();

    REQ("{\"type\":false}", E_TYPE_TYPE);
    done();
}


static void
test_id(void)
{
    size_t  n;

    REQ("{\"type\":\"ping\",\"id\":1.5}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":1.0}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":1e2}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":-0.0}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":true}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":false}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":null}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":{}}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":{\"id\":1}}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":[]}", E_ID_TYPE);
    done();

    REQ("{\"type\":\"ping\",\"id\":[\"c1\"]}", E_ID_TYPE);
    done();

    /* the id is looked at before the type */

    REQ("{\"id\":1.5}", E_ID_TYPE);
    done();

    REQ("{\"type\":7,\"id\":null}", E_ID_TYPE);
    done();

    /* 128 bytes is the most */

    n = id_of(buf, "a", NGX_HTTP_CHAT_MAX_ID_LEN, "");
    run(__LINE__, buf, n, DEPTH, NULL);
    CHECK_EQ(json_string_length(req.id), 128);
    done();

    n = id_of(buf, "a", NGX_HTTP_CHAT_MAX_ID_LEN, "a");
    run(__LINE__, buf, n, DEPTH, E_ID_LONG);
    done();

    n = id_of(buf, "a", 4000, "");
    run(__LINE__, buf, n, DEPTH, E_ID_LONG);
    done();

    /* bytes of the decoded string, not characters nor source text */

    n = id_of(buf, "\xc3\xa9", 64, "");
    run(__LINE__, buf, n, DEPTH, NULL);
    done();

    n = id_of(buf, "\xe2\x82\xac", 43, "");
    run(__LINE__, buf, n, DEPTH, E_ID_LONG);
    done();

    n = id_of(buf, "\\u00e9", 64, "");
    run(__LINE__, buf, n, DEPTH, NULL);
    CHECK_EQ(json_string_length(req.id), 128);
    done();

    n = id_of(buf, "\\u00e9", 64, "a");
    run(__LINE__, buf, n, DEPTH, E_ID_LONG);
    done();

    /* a long id fails even where the type would */

    n = id_of(buf, "a", NGX_HTTP_CHAT_MAX_ID_LEN + 1, "");
    memcpy(buf + 2, "TYPE", 4);
    run(__LINE__, buf, n, DEPTH, E_ID_LONG);
    done();
}


/* the parser's job ends at the envelope; the reply still gets the id */

static void
test_id_kept(void)
{
    REQ("{\"id\":\"c7\"}", E_TYPE_NONE);
    CHECK(id_is_string("c7"));
    CHECK(json_object_get(req.root, "id") == req.id);
    done();

    REQ("{\"id\":7,\"type\":1}", E_TYPE_TYPE);
    CHECK(id_is_integer(7));
    done();

    REQ("{\"type\":null,\"id\":\"c8\"}", E_TYPE_TYPE);
    CHECK(id_is_string("c8"));
    done();

    REQ("{\"type\":{\"a\":[1]},\"id\":-3}", E_TYPE_TYPE);
    CHECK(id_is_integer(-3));
    done();

    /* no usable id: nothing to carry */

    REQ("{\"id\":\"c9\",\"type\":\"ping\"", E_JSON);
    done();

    REQ("{\"id\":\"c9\",\"type\":\"ping\",\"id\":\"c9\"}", E_JSON);
    done();

    run(__LINE__, S("{\"id\":\"c9\",\"a\":[[1]]}"), 2, E_DEEP);
    done();
}


static void
test_not_object(void)
{
    REQ("[]", E_OBJECT);
    done();

    REQ("[{\"type\":\"ping\",\"id\":1}]", E_OBJECT);
    done();

    REQ("\"ping\"", E_OBJECT);
    done();

    REQ("\"\"", E_OBJECT);
    done();

    REQ("42", E_OBJECT);
    done();

    REQ("-0.5", E_OBJECT);
    done();

    REQ("true", E_OBJECT);
    done();

    REQ("false", E_OBJECT);
    done();

    REQ("null", E_OBJECT);
    done();

    REQ(" 1 ", E_OBJECT);
    done();
}


static void
test_invalid(void)
{
    /* nothing */

    REQ("", E_JSON);
    done();

    REQ(" \r\n\t", E_JSON);
    done();

    /* truncated */

    REQ("{", E_JSON);
    done();

    REQ("{\"type\":\"ping\"", E_JSON);
    done();

    REQ("{\"type\":\"pi", E_JSON);
    done();

    REQ("{\"type\":\"ping\",", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":-", E_JSON);
    done();

    REQ("{\"type\":\"p\\u00", E_JSON);
    done();

    REQ("tru", E_JSON);
    done();

    /* trailing garbage */

    REQ("{\"type\":\"ping\"}x", E_JSON);
    done();

    REQ("{\"type\":\"ping\"}}", E_JSON);
    done();

    REQ("{\"type\":\"ping\"}{\"type\":\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\"} 1", E_JSON);
    done();

    REQ("{\"type\":\"ping\"}\n{}", E_JSON);
    done();

    /* not JSON, though JavaScript */

    REQ("{'type':'ping'}", E_JSON);
    done();

    REQ("{\"type\":'ping'}", E_JSON);
    done();

    REQ("{type:\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"a\":[1,]}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":NaN}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":Infinity}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":-Infinity}", E_JSON);
    done();

    REQ("NaN", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":0x10}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":012}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":+1}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":.5}", E_JSON);
    done();

    REQ("/* c */{\"type\":\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\"/* c */}", E_JSON);
    done();

    REQ("{\"type\":\"ping\"} // c", E_JSON);
    done();

    REQ("// c\n{\"type\":\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\"} # c", E_JSON);
    done();

    REQ("{\"type\":\"pi\\ng\"}", NULL);
    done();

    REQ("{\"type\":\"pi\ng\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\\x41\"}", E_JSON);
    done();

    REQ("{\"type\":\"\\u12\"}", E_JSON);
    done();

    /* duplicate keys, at the top, of the envelope, and deeper */

    REQ("{\"type\":\"ping\",\"type\":\"pong\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"type\":\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":1,\"id\":2}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"a\":1,\"a\":1}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"a\":[{\"b\":1,\"b\":2}]}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"t\\u0079pe\":\"pong\"}", E_JSON);
    done();

    /* NUL bytes in the buffer, the length counting them */

    REQ("{\"type\":\"ping\"}\0", E_JSON);
    done();

    REQ("\0{\"type\":\"ping\"}", E_JSON);
    done();

    REQ("{\"type\":\"pi\0ng\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\0\"id\":1}", E_JSON);
    done();

    /* and escaped: jansson takes none without JSON_ALLOW_NUL */

    REQ("{\"type\":\"a\\u0000b\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":\"\\u0000\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"body\":\"x\\u0000\"}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"k\\u0000\":1}", E_JSON);
    done();

    /* numbers out of range */

    REQ("{\"type\":\"ping\",\"id\":9223372036854775808}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":-9223372036854775809}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"id\":123456789012345678901234567890}",
        E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"n\":[99999999999999999999]}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"n\":1e400}", E_JSON);
    done();

    REQ("{\"type\":\"ping\",\"n\":-1e400}", E_JSON);
    done();

    /* not UTF-8 */

    REQ("{\"type\":\"\xff\"}", E_JSON);
    done();

    REQ("{\"type\":\"\xc0\xaf\"}", E_JSON);
    done();

    REQ("{\"type\":\"\xed\xa0\x80\"}", E_JSON);
    done();

    REQ("{\"type\":\"\xe2\x82\"}", E_JSON);
    done();

    REQ("{\"type\":\"\\ud800\"}", E_JSON);
    done();

    REQ("{\"type\":\"\\udc00\\ud800\"}", E_JSON);
    done();

    REQ("\xef\xbb\xbf{\"type\":\"ping\"}", E_JSON);
    done();
}


static void
test_depth(void)
{
    size_t     n;
    unsigned   i, arrays;
    unsigned   max[] = { 1, 2, 3, 8, DEPTH, 100, 1000 };

    for (arrays = 0; arrays < 2; arrays++) {
        for (i = 0; i < sizeof(max) / sizeof(max[0]); i++) {

            n = nested(buf, max[i], arrays);
            run(__LINE__, buf, n, max[i], NULL);
            done();

            n = nested(buf, max[i] + 1, arrays);
            run(__LINE__, buf, n, max[i], E_DEEP);
            done();

            n = nested(buf, max[i] + 1, arrays);
            run(__LINE__, buf, n, max[i] + 1, NULL);
            done();
        }
    }

    /* no depth at all is a limit nothing meets */

    run(__LINE__, S("{\"type\":\"ping\"}"), 0, E_DEEP);
    done();

    /* the deepest branch, not the sum of them */

    run(__LINE__, S("{\"type\":\"ping\",\"a\":[1],\"b\":{\"c\":[]},"
                    "\"d\":[{}],\"e\":[[],[],[]]}"), 3, NULL);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":[1],\"b\":[[[]]]}"), 3,
        E_DEEP);
    done();

    /* the depth check comes first: too deep and invalid is too deep */

    run(__LINE__, S("[[[[[["), 3, E_DEEP);
    done();

    run(__LINE__, S("[[["), 3, E_JSON);
    done();

    run(__LINE__, S("{\"type\":[[[[\"ping\"]]]]}"), 3, E_DEEP);
    done();

    /* brackets in strings and keys are not counted */

    run(__LINE__, S("{\"type\":\"[[[[{{{{\",\"a\":\"]]]]}}}}\"}"), 1, NULL);
    done();

    run(__LINE__, S("{\"[[[[\":1,\"{{{{\":2,\"type\":\"ping\"}"), 1, NULL);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\"[[[\"}"), 1, NULL);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\"[[[\\\"\",\"b\":\"[\"}"),
        1, NULL);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\\\\\"[[[\"}"), 1, NULL);
    done();

    /* an escaped backslash ends before the quote, which closes */

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\\\",\"b\":[1]}"), 1,
        E_DEEP);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\\\\\\\",\"b\":[1]}"), 1,
        E_DEEP);
    done();

    run(__LINE__, S("{\"type\":\"ping\",\"a\":\"\\\\\",\"b\":[1]}"), 2,
        NULL);
    done();

    /* an escaped solidus and a \u escape of a bracket are plain text */

    run(__LINE__, S("{\"type\":\"\\/[\\u005b\",\"a\":\"\\u005d]\"}"), 1,
        NULL);
    CHECK(type_is("/[["));
    done();

    /* the closers going below zero do not let the openers through */

    run(__LINE__, S("]]]]{\"type\":\"ping\",\"a\":[[1]]}"), 2, E_DEEP);
    done();

    /*
     * jansson's own limit still holds past ours; it counts the scalar
     * inside as a level too, so that containers around a value stop one
     * short of JSON_PARSER_MAX_DEPTH
     */

    n = nested(buf, JSON_PARSER_MAX_DEPTH, 1);
    run(__LINE__, buf, n, JSON_PARSER_MAX_DEPTH + 100, E_JSON);
    done();

    n = nested(buf, JSON_PARSER_MAX_DEPTH - 1, 1);
    run(__LINE__, buf, n, JSON_PARSER_MAX_DEPTH + 100, NULL);
    done();
}


#define DEPTH_OF(lit, max)                                                   \
    ngx_http_chat_request_json_depth((const u_char *) lit, sizeof(lit) - 1, max)


static void
test_json_depth(void)
{
    CHECK_EQ(ngx_http_chat_request_json_depth((const u_char *) "", 0, 10), 0);
    CHECK_EQ(DEPTH_OF("1", 10), 0);
    CHECK_EQ(DEPTH_OF("\"abc\"", 10), 0);
    CHECK_EQ(DEPTH_OF("{}", 10), 1);
    CHECK_EQ(DEPTH_OF("[]", 10), 1);
    CHECK_EQ(DEPTH_OF("[[]]", 10), 2);
    CHECK_EQ(DEPTH_OF("[][][]", 10), 1);
    CHECK_EQ(DEPTH_OF("[{}]", 10), 2);
    CHECK_EQ(DEPTH_OF("{\"a\":[1,{\"b\":[]}]}", 10), 4);
    CHECK_EQ(DEPTH_OF("[[][[]][]]", 10), 3);

    /* no matching of pairs: only the count */

    CHECK_EQ(DEPTH_OF("[}", 10), 1);
    CHECK_EQ(DEPTH_OF("[{]}[", 10), 2);

    /* unbalanced openers count, closers never go below zero */

    CHECK_EQ(DEPTH_OF("[[[", 10), 3);
    CHECK_EQ(DEPTH_OF("]", 10), 0);
    CHECK_EQ(DEPTH_OF("}}}}", 10), 0);
    CHECK_EQ(DEPTH_OF("]]]][", 10), 1);
    CHECK_EQ(DEPTH_OF("}}}{{", 10), 2);
    CHECK_EQ(DEPTH_OF("[]]]][[", 10), 2);
    CHECK_EQ(DEPTH_OF("]]]][", 0), 1);

    /* strings are skipped, escapes with them */

    CHECK_EQ(DEPTH_OF("\"[[[\"", 10), 0);
    CHECK_EQ(DEPTH_OF("[\"]]]\"]", 10), 1);
    CHECK_EQ(DEPTH_OF("[\"\\\"[[[\"]", 10), 1);
    CHECK_EQ(DEPTH_OF("[\"\\\\\"[]]", 10), 2);
    CHECK_EQ(DEPTH_OF("[\"\\\\\\\"[\"]", 10), 1);
    CHECK_EQ(DEPTH_OF("\"\\u005b\"", 10), 0);
    CHECK_EQ(DEPTH_OF("\"\"[\"\"[\"\"]\"\"]", 10), 2);

    /* an unterminated string runs to the end */

    CHECK_EQ(DEPTH_OF("[\"[[[", 10), 1);
    CHECK_EQ(DEPTH_OF("[\"\\", 10), 1);
    CHECK_EQ(DEPTH_OF("[\"\\\"[", 10), 1);

    /* a quote or a backslash as the last byte */

    CHECK_EQ(DEPTH_OF("[\"", 10), 1);
    CHECK_EQ(DEPTH_OF("\\[", 10), 1);

    /* only len bytes are read */

    CHECK_EQ(ngx_http_chat_request_json_depth((const u_char *) "[[[[", 2, 10),
             2);
    CHECK_EQ(ngx_http_chat_request_json_depth((const u_char *) "\"x\"[", 3, 10),
             0);
    CHECK_EQ(ngx_http_chat_request_json_depth((const u_char *) "[\0[", 3, 10),
             2);

    /* exactly max is returned as is; past it, it stops at max + 1 */

    CHECK_EQ(DEPTH_OF("[[[]]]", 3), 3);
    CHECK_EQ(DEPTH_OF("[[[[]]]]", 3), 4);
    CHECK_EQ(DEPTH_OF("[[[[[[[[[[", 3), 4);
    CHECK_EQ(DEPTH_OF("[[[[[[[[[[", 0), 1);
    CHECK_EQ(DEPTH_OF("[", 0), 1);
    CHECK_EQ(DEPTH_OF("1", 0), 0);
    CHECK_EQ(DEPTH_OF("[[]]", UINT_MAX), 2);

    /* past max the rest, here an unterminated string, is not read */

    CHECK_EQ(DEPTH_OF("[[[\"", 2), 3);
    CHECK_EQ(DEPTH_OF("[[[[[[[[[[", 9), 10);
}


static void
test_free(void)
{
    ngx_http_chat_request_t  r;

    /* a zeroed request, freed twice */

    memset(&r, 0, sizeof(ngx_http_chat_request_t));
    ngx_http_chat_request_free(&r);
    ngx_http_chat_request_free(&r);
    CHECK(r.root == NULL && r.type == NULL && r.id == NULL);

    /* a success leaves one reference, the request's own */

    REQ("{\"type\":\"ping\",\"id\":\"c1\"}", NULL);
    CHECK_EQ(req.root->refcount, 1);
    done();
    done();

    /* each failure, released; ASan's leak check sees the rest */

    REQ("{\"id\":\"c1\"}", E_TYPE_NONE);
    CHECK_EQ(req.root->refcount, 1);
    done();

    REQ("{\"type\":\"ping\",\"id\":[1,2,{\"a\":\"b\"}]}", E_ID_TYPE);
    done();

    REQ("[1,2,{\"a\":\"b\"}]", E_OBJECT);
    done();

    REQ("{\"type\":\"ping\",\"a\":[1,2,{\"a\":\"b\"}", E_JSON);
    done();

    run(__LINE__, S("{\"a\":[[[1]]]}"), 2, E_DEEP);
    done();

    /* a request parsed anew over one not freed would leak: not done */
}


static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static int
envelope_error(const char *e)
{
    return strcmp(e, E_OBJECT) == 0 || strcmp(e, E_ID_TYPE) == 0
           || strcmp(e, E_ID_LONG) == 0 || strcmp(e, E_TYPE_NONE) == 0
           || strcmp(e, E_TYPE_TYPE) == 0;
}


static void
test_corpus(void)
{
    int              rc;
    char            *dir, path[4096], **names, *name;
    FILE            *f;
    long             size;
    u_char          *data;
    size_t           i, n, nnames, nalloc;
    DIR             *d;
    unsigned         ny, nn, ni, ni_ok;
    exception_t     *x;
    struct dirent   *de;

    dir = getenv("CHAT_JSON_CORPUS");

    if (dir == NULL || dir[0] == '\0') {
        printf("request: CHAT_JSON_CORPUS is not set, "
               "the JSON corpus skipped\n");
        return;
    }

    d = opendir(dir);
    CHECK(d != NULL);

    if (d == NULL) {
        fprintf(stderr, "    %s: cannot open\n", dir);
        return;
    }

    names = NULL;
    nnames = 0;
    nalloc = 0;

    while ((de = readdir(d)) != NULL) {
        n = strlen(de->d_name);

        /* the documents; README.md is not one */

        if (de->d_name[0] == '.' || n < 5
            || strcmp(de->d_name + n - 5, ".json") != 0)
        {
            continue;
        }

        if (nnames == nalloc) {
            nalloc = nalloc ? nalloc * 2 : 512;
            names = realloc(names, nalloc * sizeof(char *));
            if (names == NULL) {
                abort();
            }
        }

        names[nnames] = strdup(de->d_name);
        if (names[nnames] == NULL) {
            abort();
        }

        nnames++;
    }

    closedir(d);

    if (nnames) {
        qsort(names, nnames, sizeof(char *), name_cmp);
    }

    ny = 0;
    nn = 0;
    ni = 0;
    ni_ok = 0;

    for (i = 0; i < nnames; i++) {
        name = names[i];

        snprintf(path, sizeof(path), "%s/%s", dir, name);

        f = fopen(path, "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0
            || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        {
            fprintf(stderr, "    %s: cannot read\n", path);
            CHECK(0);

            if (f != NULL) {
                fclose(f);
            }

            continue;
        }

        /* an exact-size copy again */

        data = malloc(size ? (size_t) size : 1);
        if (data == NULL) {
            abort();
        }

        if (fread(data, 1, (size_t) size, f) != (size_t) size) {
            abort();
        }

        fclose(f);

        memset(&req, 0xa5, sizeof(ngx_http_chat_request_t));
        err = NULL;

        rc = ngx_http_chat_request_parse(&req, data, (size_t) size, DEPTH,
                                         &err);

        free(data);

        /* whatever the file, the result keeps its promises */

        if (rc == 0) {
            CHECK(json_is_object(req.root) && req.type != NULL
                  && memchr(req.type, 0, req.type_len) == NULL);

        } else {
            CHECK(rc == -1 && err != NULL && req.type == NULL);
        }

        if (strncmp(name, "n_", 2) == 0) {
            nn++;

            /* refused as JSON, not later as a request */

            if (rc != -1 || envelope_error(err)) {
                fprintf(stderr, "    %s: an invalid text was taken\n",
                        name);
            }

            CHECK(rc == -1 && !envelope_error(err));

        } else if (strncmp(name, "y_", 2) == 0) {
            ny++;

            for (x = y_refused; x->name; x++) {
                if (strcmp(x->name, name) == 0) {
                    break;
                }
            }

            if (x->name) {
                x->seen++;

                if (rc != -1 || strcmp(err, E_JSON) != 0) {
                    fprintf(stderr, "    %s: not refused any more (%s)\n",
                            name, x->why);
                }

                CHECK(rc == -1 && strcmp(err, E_JSON) == 0);

            } else {
                if (rc != 0 && !envelope_error(err)) {
                    fprintf(stderr, "    %s: a valid text failed: %s\n",
                            name, err);
                }

                CHECK(rc == 0 || envelope_error(err));
            }

        } else if (strncmp(name, "i_", 2) == 0) {
            ni++;

            if (rc == 0 || envelope_error(err)) {
                ni_ok++;
            }

        } else {
            fprintf(stderr, "    %s: no y_, n_ or i_ prefix\n", name);
            CHECK(0);
        }

        ngx_http_chat_request_free(&req);
        free(name);
    }

    free(names);

    /* the corpus is there, and each exception is in it */

    CHECK(ny > 0);
    CHECK(nn > 0);
    CHECK(ni > 0);

    for (x = y_refused; x->name; x++) {
        if (x->seen != 1) {
            fprintf(stderr, "    %s: not in the corpus\n", x->name);
        }

        CHECK_EQ(x->seen, 1);
    }

    printf("request: JSON corpus: %u y_, %u n_, %u i_ (%u of them parsed "
           "as JSON)\n", ny, nn, ni, ni_ok);
}


int
main(void)
{
    test_valid();
    test_type();
    test_id();
    test_id_kept();
    test_not_object();
    test_invalid();
    test_depth();
    test_json_depth();
    test_free();
    test_corpus();

    UNIT_DONE("request");
}
