"""The layering of the C files holds: docs/architecture.md's level table.

scripts/layering.py reads src/ and the level table: a file names only
files of lower levels (the way up is a function pointer set at init), no
files form a cycle, every exported name starts with its file's name, and
the table and src/ list the same files.  No nginx, no PostgreSQL: this
reads the sources.  The second half tests the parser itself on small
synthetic trees.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest


# Issue 14's restructuring is under way and today's tree still breaks the
# layering.  Set to False once the code is untied: from then on any
# violation fails the suite.
IN_PROGRESS = False

in_progress = pytest.mark.xfail(
    IN_PROGRESS, strict=False,
    reason="issue 14: the files are being untied (IN_PROGRESS in "
           "t/test_layering.py)")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "layering.py")

_spec = importlib.util.spec_from_file_location("layering", SCRIPT)
layering = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layering)


@pytest.fixture(scope="module")
def report():
    return layering.Report(REPO)


def listing(lines):
    return "\n" + "\n".join(lines)


# --------------------------------------------------------------------------
# the repository

def test_every_file_has_a_level(report):
    missing = [x for x in report.table if "has no level" in x]
    assert not missing, listing(missing)


@in_progress
def test_every_file_of_the_table_exists(report):
    extra = [x for x in report.table if "does not exist" in x]
    assert not extra, listing(extra)


def test_no_symbol_defined_twice(report):
    assert not report.model.duplicates, listing(report.lines_duplicates())


@in_progress
def test_names_go_down_only(report):
    assert not report.direction, listing(report.lines_direction())


@in_progress
def test_no_file_cycle(report):
    assert not report.cycles, listing(report.lines_cycles())


@in_progress
def test_names_follow_the_file(report):
    assert not report.naming, listing(report.lines_naming())


def test_the_path_of_a_message_names_real_functions():
    """docs/architecture.md's walk through the code stays true: every
    `name` it gives (ws_read for ngx_http_chat_ws_read) exists."""
    import glob
    import re

    doc = open(os.path.join(REPO, "docs", "architecture.md")).read()
    doc = doc[doc.index("## How a message travels"):]
    src = "".join(open(f).read() for f in
                  glob.glob(os.path.join(REPO, "src", "*.[ch]"))
                  + [os.path.join(REPO, "ngx_http_chat_module.c")])
    names = {n for n in re.findall(r"`([a-z0-9_]+)`", doc) if "_" in n}
    missing = sorted(n for n in names
                     if not re.search(r"\b(ngx_http_chat_)?%s\b" % n, src))
    assert len(names) > 40
    assert not missing, missing


def test_every_option_of_the_script_runs():
    for opt in ([], ["--graph"], ["--dot"], ["--types"]):
        r = subprocess.run([sys.executable, SCRIPT] + opt,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode in (0, 1), r.stderr
        assert r.stderr == ""


# --------------------------------------------------------------------------
# the parser, on synthetic trees: low (level 0) under high (level 1)

TABLE = """\
# Architecture

| level | file(s) | what it owns | what it may call |
|---|---|---|---|
| 0 base | low | the bottom | nothing |
| 1 top | high, peer | the top | low |
"""


def tree(tmp_path, files, table=TABLE):
    """A repository with these src/ files; its Report."""
    os.makedirs(str(tmp_path / "src"))
    os.makedirs(str(tmp_path / "docs"))
    (tmp_path / "docs" / "architecture.md").write_text(table)
    base = {
        "ngx_http_chat.h": "#define NGX_HTTP_CHAT_COMMON  1\n",
        "ngx_http_chat_low.c": "",
        "ngx_http_chat_high.c": "",
        "ngx_http_chat_peer.c": "",
    }
    base.update(files)
    for name, text in base.items():
        if text is None:
            continue
        (tmp_path / "src" / name).write_text(textwrap.dedent(text))
    return layering.Report(str(tmp_path))


HIGH = """
    void
    ngx_http_chat_high_run(void)
    {
        ngx_http_chat_low_go();
    }
    """

LOW = """
    void
    ngx_http_chat_low_go(void)
    {
    }
    """


def uses(r):
    return sorted((u.unit, u.name, u.owner) for u in r.model.uses)


def test_a_call_down_is_allowed(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_low.c": LOW})
    assert uses(r) == [("high", "ngx_http_chat_low_go", "low")]
    assert not r.failed()


def test_a_call_up_is_a_violation(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_low.c": LOW + """
    static void
    ngx_http_chat_low_back(void)
    {
        int  x;

        x = 1;
        ngx_http_chat_high_run();
    }
    """})
    assert r.lines_direction() == [
        "src/ngx_http_chat_low.c:13: low (level 0) uses "
        "ngx_http_chat_high_run of high (level 1)"]
    assert r.cycles == [["high", "low"]]
    assert r.failed()


def test_a_call_sideways_is_a_violation(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_peer.c": """
    void ngx_http_chat_peer_x(void) { ngx_http_chat_high_run(); }
    """})
    assert [(u.unit, u.owner, lc, lo) for u, lc, lo in r.direction] \
        == [("peer", "high", 1, 1)]


def test_a_comment_is_not_a_use(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_low.c": LOW + """
    /* the caller, ngx_http_chat_high_run(), ... */
    // ngx_http_chat_high_run() too
    /*
     * ngx_http_chat_high_run
     */
    """})
    assert ("low", "ngx_http_chat_high_run", "high") not in uses(r)
    assert not r.direction


def test_a_string_is_not_a_use(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_low.c": LOW + r"""
    static char  *name = "ngx_http_chat_high_run \" ngx_http_chat_high_run";
    static char   q = '"';
    static char  *s = "/* ngx_http_chat_high_run */";
    static char   e = '\'';
    """})
    assert not r.direction, r.lines_direction()


def test_a_static_function_is_not_exported(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH + """
    static ngx_int_t ngx_http_chat_other_name(void);

    static ngx_int_t
    ngx_http_chat_other_name(void)
    {
        return 0;
    }
    """, "ngx_http_chat_low.c": """
    static void ngx_http_chat_other_name(void) { }
    void ngx_http_chat_low_go(void) { ngx_http_chat_other_name(); }
    """})
    assert "ngx_http_chat_other_name" not in r.model.symbols
    assert not r.naming
    assert not r.direction


def test_an_exported_name_follows_its_file(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": """
    ngx_uint_t  ngx_http_chat_counter;
    ngx_uint_t  ngx_http_chat_high_count = 0;
    static ngx_uint_t  ngx_http_chat_private;
    ngx_int_t ngx_http_chat_high_table[] = { 1, 2 };

    ngx_int_t
    ngx_http_chat_run_it(ngx_int_t a,
        ngx_int_t b)
    {
        return a + b;
    }
    """})
    assert sorted((d.kind, d.name) for d in r.naming) == [
        ("function", "ngx_http_chat_run_it"),
        ("global", "ngx_http_chat_counter")]
    assert {"ngx_http_chat_high_count", "ngx_http_chat_high_table"} \
        <= set(r.model.symbols)


def test_a_call_through_a_pointer_names_nothing(tmp_path):
    # the way up: high hands low a function at init, low calls through it
    r = tree(tmp_path, {"ngx_http_chat_high.c": """
    static void
    ngx_http_chat_high_done(void *data)
    {
    }

    void
    ngx_http_chat_high_init(void)
    {
        ngx_http_chat_low_handler = ngx_http_chat_high_done;
        ngx_http_chat_low_set(ngx_http_chat_high_done);
    }
    """, "ngx_http_chat_low.c": """
    void  (*ngx_http_chat_low_handler)(void *data);

    void
    ngx_http_chat_low_set(void (*h)(void *data))
    {
        ngx_http_chat_low_handler = h;
    }

    void
    ngx_http_chat_low_fire(ngx_http_chat_low_t *t)
    {
        ngx_http_chat_low_handler(t);
        t->done(t);
    }
    """})
    assert uses(r) == [("high", "ngx_http_chat_low_handler", "low"),
                       ("high", "ngx_http_chat_low_set", "low")]
    assert not r.failed()


def test_taking_the_address_by_name_is_a_use(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.c": HIGH,
                        "ngx_http_chat_low.c": """
    void
    ngx_http_chat_low_go(void)
    {
        void  (*h)(void);

        h = ngx_http_chat_high_run;
        h();
    }
    """})
    assert [(u.line, u.name) for u, _, _ in r.direction] \
        == [(7, "ngx_http_chat_high_run")]


def test_a_macro_belongs_to_its_header(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_high.h": """
    #define NGX_HTTP_CHAT_HIGH_SIZE  64
    #define ngx_http_chat_high_max(a, b)                                 \\
        ((a) > (b) ? (a) : (b))
    #define ngx_http_chat_misnamed(a)  (a)

    static ngx_inline int
    ngx_http_chat_high_twice(int a)
    {
        return 2 * a;
    }

    void ngx_http_chat_low_go(void);
    """, "ngx_http_chat_low.c": """
    #include <ngx_http_chat_high.h>

    void
    ngx_http_chat_low_go(void)
    {
        int  a[NGX_HTTP_CHAT_HIGH_SIZE];

        a[0] = ngx_http_chat_high_max(1, 2) + NGX_HTTP_CHAT_COMMON;
        a[1] = ngx_http_chat_high_twice(a[0]);
    }
    """})
    assert [(u.name, u.owner) for u, _, _ in r.direction] == [
        ("NGX_HTTP_CHAT_HIGH_SIZE", "high"),
        ("ngx_http_chat_high_max", "high"),
        ("ngx_http_chat_high_twice", "high")]
    # a prototype in a header declares, it does not use
    assert ("high", "ngx_http_chat_low_go", "low") not in uses(r)
    assert [d.name for d in r.naming] == ["ngx_http_chat_misnamed"]


def test_the_umbrella_is_common(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat.h": """
    #define NGX_HTTP_CHAT_COMMON  1
    #define ngx_http_chat_anything(x)  (x)
    extern ngx_module_t  ngx_http_chat_module;
    void ngx_http_chat_high_run(void);
    """, "ngx_http_chat_high.c": HIGH, "ngx_http_chat_low.c": """
    void
    ngx_http_chat_low_go(void)
    {
        conf = get_conf(ngx_http_chat_module) + ngx_http_chat_anything(1);
    }
    """, "ngx_http_chat_module.c": """
    ngx_module_t  ngx_http_chat_module = { 0 };
    """}, TABLE + "| 2 module | module | the module | all |\n")
    assert uses(r) == [
        ("high", "ngx_http_chat_low_go", "low"),
        ("low", "ngx_http_chat_anything", "common"),
        ("low", "ngx_http_chat_module", "common")]
    assert not r.failed(), (r.lines_direction(), r.lines_naming())


def test_the_table_and_src_agree(tmp_path):
    r = tree(tmp_path, {"ngx_http_chat_stray.c": "",
                        "ngx_http_chat_peer.c": None})
    assert r.table == [
        "ngx_http_chat_stray.c has no level in the table",
        "peer is in the table but ngx_http_chat_peer.c does not exist"]


def test_the_level_table_parses(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text(TABLE.replace("| high, peer |", "| `high.c`, peer |"))
    assert layering.parse_levels(str(doc)) \
        == {"low": 0, "high": 1, "peer": 1}
    doc.write_text("# nothing\n")
    with pytest.raises(ValueError):
        layering.parse_levels(str(doc))


def test_the_target_patterns(tmp_path):
    # low is the transport with a handler table, high the protocol that
    # fills it in: high names low, low names nothing of high
    r = tree(tmp_path, {"ngx_http_chat_low.h": """
    typedef struct ngx_http_chat_low_conn_s  ngx_http_chat_low_conn_t;

    typedef struct {
        ngx_int_t  (*start)(ngx_http_chat_low_conn_t *c);
        void       (*message)(ngx_http_chat_low_conn_t *c, u_char *p,
                              size_t n);
    } ngx_http_chat_low_handler_t;

    struct ngx_http_chat_low_conn_s {
        ngx_http_chat_low_handler_t  *handler;
    };

    typedef void (*ngx_http_chat_low_deliver_pt)(void *data);

    #define NGX_HTTP_CHAT_LOW_STMT_SEND  0

    void ngx_http_chat_low_read(ngx_http_chat_low_conn_t *c);
    extern ngx_http_chat_low_deliver_pt  ngx_http_chat_low_deliver;
    """, "ngx_http_chat_low.c": """
    #include <ngx_http_chat_low.h>

    struct ngx_http_chat_low_state_s {
        int  n;
    };

    static struct {
        int  pending;
    } ngx_http_chat_low_local;

    ngx_http_chat_low_deliver_pt  ngx_http_chat_low_deliver;

    static struct {
        int  count;
    } ngx_http_chat_low_stats = { 0 };

    void
    ngx_http_chat_low_read(ngx_http_chat_low_conn_t *c)
    {
        c->handler->message(c, NULL, 0);
        ngx_http_chat_low_deliver(c);
        ngx_http_chat_low_local.pending++;
    }
    """, "ngx_http_chat_high.c": """
    #include <ngx_http_chat_low.h>

    static ngx_int_t ngx_http_chat_high_start(ngx_http_chat_low_conn_t *c);
    static void ngx_http_chat_high_message(ngx_http_chat_low_conn_t *c,
        u_char *p, size_t n);

    static const char  *ngx_http_chat_high_names[] = {
        [NGX_HTTP_CHAT_LOW_STMT_SEND] = "send",
    };

    ngx_http_chat_low_handler_t  ngx_http_chat_high_handler = {
        ngx_http_chat_high_start,
        ngx_http_chat_high_message
    };

    static ngx_int_t
    ngx_http_chat_high_start(ngx_http_chat_low_conn_t *c)
    {
        c->handler = &ngx_http_chat_high_handler;
        ngx_http_chat_low_deliver = NULL;
        return 0;
    }

    static void
    ngx_http_chat_high_message(ngx_http_chat_low_conn_t *c, u_char *p,
        size_t n)
    {
        ngx_http_chat_low_read(c);
    }
    """})
    assert not r.failed(), (r.lines_direction(), r.lines_naming())
    assert uses(r) == [
        ("high", "NGX_HTTP_CHAT_LOW_STMT_SEND", "low"),
        ("high", "ngx_http_chat_low_deliver", "low"),
        ("high", "ngx_http_chat_low_read", "low")]
    low = {d.name: d for d in r.model.symbols.values() if d.unit == "low"}
    assert sorted(low) == ["NGX_HTTP_CHAT_LOW_STMT_SEND",
                           "ngx_http_chat_low_deliver",
                           "ngx_http_chat_low_read"]
    assert r.model.symbols["ngx_http_chat_high_handler"].kind == "global"
    # --types: the header's types count as low's too, still downward
    t = layering.Report(str(tmp_path), types=True)
    assert not t.failed(), t.lines_direction()
    assert ("high", "ngx_http_chat_low_handler_t", "low") in uses(t)
    assert t.model.symbols["ngx_http_chat_low_deliver_pt"].kind == "type"
