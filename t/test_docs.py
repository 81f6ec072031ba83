"""The documentation stays true to the code.

docs/directives.md has an entry for every directive of the module's
command tables and for nothing else, with the contexts, the argument
shapes and the defaults that the source gives, and its examples pass
`nginx -t`.  The code of docs/integration.md marked
`<!-- docs-test: NAME -->` runs: the Node and Python token snippets sign
tokens that a real nginx accepts, the auth_request configuration
authenticates through a second nginx playing the application, and the
host SQL examples deliver live (and nothing when rolled back).
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from chatlib import http, http_upgrade, make_token, ws_connect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECTIVES_MD = os.path.join(REPO, "docs", "directives.md")
INTEGRATION_MD = os.path.join(REPO, "docs", "integration.md")
SOURCES = [os.path.join(REPO, "ngx_http_chat_module.c")] + \
    sorted(glob.glob(os.path.join(REPO, "src", "*.c")))

# the paths the snippets read their keys from
DOC_KEY_PATH = "/etc/app/chat.key"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------
# the C source

def split_top(text, sep=","):
    """text split at sep outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def c_without_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def source_commands():
    """{name: {"flags", "set", "offset", "file"}} of every ngx_command_t
    array in the module's C files."""
    commands = {}
    for path in SOURCES:
        text = c_without_comments(read(path))
        for table in re.findall(r"ngx_command_t\s+\w+\s*\[\s*\]\s*=\s*\{"
                                r"(.*?)ngx_null_command", text, re.S):
            for entry in re.findall(r"\{\s*(ngx_string\(\"[^\"]*\"\).*?)\}",
                                    table, re.S):
                fields = split_top(entry)
                name = re.match(r'ngx_string\("([^"]*)"\)', fields[0])[1]
                assert name not in commands, "%s defined twice" % name
                commands[name] = {
                    "flags": set(f.strip() for f in fields[1].split("|")),
                    "set": fields[2], "offset": " ".join(fields[4].split()),
                    "post": fields[5].lstrip("&").strip(),
                    "file": os.path.relpath(path, REPO)}
    return commands


def source_enum(name):
    """{value: word} of the ngx_conf_enum_t array called name."""
    for path in SOURCES:
        text = c_without_comments(read(path))
        m = re.search(r"ngx_conf_enum_t\s+%s\s*\[\s*\]\s*=\s*\{(.*?)"
                      r"ngx_null_string" % re.escape(name), text, re.S)
        if m:
            return {int(v): w for w, v in re.findall(
                r'ngx_string\("([^"]*)"\)\s*,\s*(\d+)', m[1])}
    raise AssertionError("no ngx_conf_enum_t %s" % name)


def source_variables():
    names = []
    for path in SOURCES:
        text = c_without_comments(read(path))
        for table in re.findall(r"ngx_http_variable_t\s+\w+\s*\[\s*\]\s*=\s*"
                                r"\{(.*?)ngx_http_null_variable", text, re.S):
            names += re.findall(r'ngx_string\("([^"]*)"\)', table)
    return names


def source_defaults():
    """{field: the C expression of its default} from the
    ngx_conf_merge_*value and ngx_conf_init_value calls."""
    out = {}
    for path in SOURCES:
        text = c_without_comments(read(path))
        for field, value in re.findall(
                r"ngx_conf_merge_(?:\w+?_)?value\(\s*conf->(\w+),"
                r"\s*prev->\w+,\s*(.*?)\);", text, re.S):
            out[field] = " ".join(value.split())
        for field, value in re.findall(
                r"ngx_conf_init_value\(\s*\w+->(\w+),\s*(.*?)\);", text,
                re.S):
            out[field] = value.strip()
    return out


CONTEXTS = [("NGX_HTTP_MAIN_CONF", "http"), ("NGX_HTTP_SRV_CONF", "server"),
            ("NGX_HTTP_LOC_CONF", "location")]
ARGS = {"NGX_CONF_NOARGS", "NGX_CONF_FLAG", "NGX_CONF_TAKE1",
        "NGX_CONF_TAKE2", "NGX_CONF_TAKE12", "NGX_CONF_1MORE"}


# --------------------------------------------------------------------------
# docs/directives.md

def doc_entries():
    """{name: {"syntax", "default", "context", "text"}} of the `### name`
    entries of docs/directives.md."""
    text = read(DIRECTIVES_MD)
    entries = {}
    parts = re.split(r"^### (\S+)\s*$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        body = re.split(r"^## ", body, flags=re.M)[0]
        pre = re.search(r"<pre>(.*?)</pre>", body, re.S)
        assert pre, "%s: no <pre> block with Syntax, Default, Context" % name
        lines = {}
        for line in pre[1].strip().splitlines():
            key, _, value = line.partition(":")
            lines[key.strip()] = re.sub(r"<[^>]+>", "", value).strip()
        assert set(lines) == {"Syntax", "Default", "Context"}, (name, lines)
        assert name not in entries, "%s documented twice" % name
        entries[name] = dict(syntax=lines["Syntax"],
                             default=lines["Default"],
                             context=lines["Context"], text=body)
    return entries


def syntax_shape(name, syntax):
    """(required, optional, more, flag) of a Syntax line."""
    assert syntax.startswith(name) and syntax.endswith(";"), syntax
    rest = syntax[len(name):-1].strip()
    if rest == "on | off":
        return 0, 0, False, True
    # "rate [burst=number] | off": the first form's shape
    rest = rest.split(" | ")[0]
    optional = len(re.findall(r"\[[^\]]*\]", rest))
    words = re.sub(r"\[[^\]]*\]", " ", rest).split()
    more = "..." in words
    required = len([w for w in words if w != "..."])
    return required, optional, more, False


def nginx_size(text):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert m, text
    scale = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    return int(m[1]) * scale[m[2].lower()]


def nginx_msec(text):
    if text == "0":
        return 0
    total = 0
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d)", text):
        total += int(num) * units[unit]
    assert re.fullmatch(r"((\d+)(ms|s|m|h|d))+", text), text
    return total


def c_number(expr):
    assert re.fullmatch(r"[\d\s*]+", expr), expr
    value = 1
    for factor in expr.split("*"):
        value *= int(factor)
    return value


def test_every_directive_has_an_entry_and_every_entry_is_a_directive():
    commands = source_commands()
    entries = doc_entries()
    assert len(commands) >= 30       # the parser found the table
    missing = sorted(set(commands) - set(entries))
    unknown = sorted(set(entries) - set(commands))
    assert not missing, "directives without an entry in docs/directives.md: " \
        "%s" % missing
    assert not unknown, "entries in docs/directives.md that are no " \
        "directive: %s" % unknown
    # the index at the top links every entry
    text = read(DIRECTIVES_MD)
    index = text.split("\n---\n", 1)[0]
    unlinked = [n for n in commands if "(#%s)" % n not in index]
    assert not unlinked, "not in the index: %s" % unlinked


def test_contexts_and_arguments_match_the_command_table():
    commands = source_commands()
    entries = doc_entries()
    for name, cmd in commands.items():
        doc = entries[name]
        context = ", ".join(c for flag, c in CONTEXTS if flag in cmd["flags"])
        assert doc["context"] == context, (name, doc["context"], context)

        args = cmd["flags"] & ARGS
        assert len(args) == 1, (name, cmd["flags"])
        required, optional, more, flag = syntax_shape(name, doc["syntax"])
        shape = {
            "NGX_CONF_NOARGS": (0, 0, False, False),
            "NGX_CONF_FLAG": (0, 0, False, True),
            "NGX_CONF_TAKE1": (1, 0, False, False),
            "NGX_CONF_TAKE2": (2, 0, False, False),
            "NGX_CONF_TAKE12": (1, 1, False, False),
        }.get(args.pop())
        if shape is None:            # NGX_CONF_1MORE
            assert required >= 1 and (optional or more) and not flag, \
                (name, doc["syntax"])
        else:
            assert (required, optional, more, flag) == shape, \
                (name, doc["syntax"])


def test_defaults_match_the_merge_functions():
    commands = source_commands()
    entries = doc_entries()
    defaults = source_defaults()
    checked = 0
    for name, cmd in commands.items():
        doc = entries[name]["default"]
        field = re.search(r"offsetof\(\w+,\s*(\w+)\)", cmd["offset"])
        slot = cmd["set"]
        if not slot.startswith("ngx_conf_set_") or field is None:
            if name in ("chat_upload_rate", "chat_upload_quota"):
                # the merge sets them: 30 files a minute, 1 GB a day
                src = read(os.path.join(REPO, "ngx_http_chat_module.c"))
                assert "UPLOAD].rate = 500;" in src
                assert "UPLOAD].burst = 30 * 1000;" in src
                assert "(ngx_uint_t) 1024 * 1024 * 1024 * 1000;" in src
                assert doc == {"chat_upload_rate":
                               "chat_upload_rate 30r/m burst=30;",
                               "chat_upload_quota":
                               "chat_upload_quota 1g;"}[name], doc
                continue
            if name == "chat_search_rate":
                # the merge sets it: 1r/s is 1000 per 1000 s, burst 20
                src = read(os.path.join(REPO, "ngx_http_chat_module.c"))
                assert "SEARCH].rate = 1000;" in src
                assert "SEARCH].burst = 20 * 1000;" in src
                assert doc == "chat_search_rate 1r/s burst=20;", doc
                continue
            # the directive's own handler: no value unless configured
            assert doc == "—", (name, doc)
            continue
        value = defaults.get(field[1])
        if slot == "ngx_conf_set_str_slot":
            assert value in (None, '""') and doc == "—", (name, doc, value)
            continue
        assert value is not None, "%s: no default in the source" % name
        assert doc.startswith(name + " ") and doc.endswith(";"), (name, doc)
        shown = doc[len(name):-1].strip()
        if slot == "ngx_conf_set_flag_slot":
            assert shown == {"0": "off", "1": "on"}[value], (name, doc, value)
        elif slot == "ngx_conf_set_num_slot":
            assert int(shown) == c_number(value), (name, doc, value)
        elif slot in ("ngx_conf_set_size_slot", "ngx_conf_set_off_slot"):
            assert nginx_size(shown) == c_number(value), (name, doc, value)
        elif slot == "ngx_conf_set_msec_slot":
            assert nginx_msec(shown) == c_number(value), (name, doc, value)
        elif slot == "ngx_conf_set_sec_slot":
            assert nginx_msec(shown) == c_number(value) * 1000, \
                (name, doc, value)
        elif slot == "ngx_conf_set_enum_slot":
            assert source_enum(cmd["post"])[c_number(value)] == shown, \
                (name, doc, value)
        else:
            pytest.fail("%s: a slot this test does not know: %s"
                        % (name, slot))
        checked += 1
    assert checked >= 12


def test_embedded_variables_are_documented():
    text = read(DIRECTIVES_MD)
    variables = source_variables()
    assert variables == ["chat_user"]
    for v in variables:
        assert '<a id="%s"></a>' % v in text and "`$%s`" % v in text, v


def nginx_blocks(text):
    return re.findall(r"```nginx\n(.*?)```", text, re.S)


@pytest.fixture
def doc_keys(tmp_path, doc_key):
    """The key files the examples name, made as integration.md says."""
    pem = tmp_path / "chat.pub.pem"
    key = tmp_path / "chat-signing.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out",
                    str(pem)], check=True, capture_output=True)
    secret = tmp_path / "chat-cluster.secret"
    secret.write_text(os.urandom(32).hex() + "\n")
    # the upload store: a directory the workers (nobody) may write
    store = tmp_path / "chat-uploads"
    store.mkdir()
    os.chown(store, 65534, 65534)
    return {"/var/lib/nginx/chat-uploads": str(store),
            "/etc/nginx/chat.key": doc_key,
            "/etc/nginx/chat.pub.pem": str(pem),
            "/etc/nginx/chat-cluster.secret": str(secret)}


def with_keys(text, keys):
    for doc_path, path in keys.items():
        text = text.replace(doc_path, path)
    return text


def test_every_example_passes_nginx_t(nginx, doc_keys):
    entries = doc_entries()
    tested = 0
    for name, entry in entries.items():
        blocks = nginx_blocks(entry["text"])
        assert blocks, "%s has no example" % name
        for block in blocks:
            block = with_keys(block, doc_keys)
            if "location" in block:
                locations, http = block, ""
            elif "location" in entry["context"]:
                locations, http = "location /example/ {\n%s\n}" % block, ""
            else:
                locations, http = "", block
            rc, out = nginx.check_config(locations, http=http)
            assert rc == 0 and "test is successful" in out, (name, block,
                                                              out)
            tested += 1
    assert tested >= len(entries)


def test_example_configuration_passes_nginx_t(tmp_path, doc_keys):
    from conftest import MODULE, NGINX, free_port
    text = read(DIRECTIVES_MD)
    example = text.split("## Example configuration", 1)[1]
    conf = nginx_blocks(example)[0]
    assert "load_module modules/ngx_http_chat_module.so;" in conf
    conf = conf.replace("load_module modules/ngx_http_chat_module.so;",
                        "load_module %s;" % MODULE if MODULE else "")
    assert "listen 443 ssl;" in conf
    conf = conf.replace("listen 443 ssl;", "listen 127.0.0.1:%d;"
                        % free_port())
    # no certificate here: the server is tested without TLS
    conf = re.sub(r"\n\s*ssl_certificate(_key)? [^;]*;", "", conf)
    assert "ssl" not in conf
    conf = with_keys(conf, doc_keys)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    (tmp_path / "logs").mkdir()
    r = subprocess.run([NGINX, "-t", "-p", str(tmp_path) + "/", "-c",
                        str(path), "-e", str(tmp_path / "logs/error.log")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------
# docs/integration.md: the marked code runs

def snippet(name):
    """The fenced block right after `<!-- docs-test: name ... -->`."""
    text = read(INTEGRATION_MD)
    m = re.search(r"<!-- docs-test: %s\b.*?-->\s*```\w*\n(.*?)```"
                  % re.escape(name), text, re.S)
    assert m, "no block marked docs-test: %s in docs/integration.md" % name
    return m[1]


@pytest.fixture
def doc_key(tmp_path):
    """A key made the way docs/integration.md says: openssl rand 64."""
    path = tmp_path / "chat.key"
    with open(path, "wb") as f:
        subprocess.run(["openssl", "rand", "64"], stdout=f, check=True)
    assert path.stat().st_size == 64
    return str(path)


def run_snippet(tmp_path, name, interpreter, suffix, key):
    code = snippet(name)
    assert DOC_KEY_PATH in code, "%s no longer reads %s" % (name,
                                                           DOC_KEY_PATH)
    path = tmp_path / (name + suffix)
    path.write_text(code.replace(DOC_KEY_PATH, key))
    r = subprocess.run([interpreter, str(path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), r.stdout
    return token


@pytest.mark.parametrize("name, interpreter, suffix", [
    ("node-token", "node", ".cjs"),
    ("python-token", sys.executable, ".py"),
])
def test_token_snippet_is_accepted_by_nginx(nginx, tmp_path, doc_key, name,
                                            interpreter, suffix):
    if shutil.which(interpreter) is None:
        pytest.fail("%s is not installed" % interpreter)
    token = run_snippet(tmp_path, name, interpreter, suffix, doc_key)
    n = nginx("location = /chat/ws { chat_websocket; }\n"
              "location /api/chat/ { chat_api; }",
              http="chat_jwt_key hs256 file=%s;" % doc_key)
    # as a browser sends it (the access_token argument) and as a header
    for token_in in ("query", "header"):
        with ws_connect(n, token, token_in=token_in) as c:
            assert c.welcome["user"] == {"id": "alice", "name": "Alice"}
    r = http(n, "GET", "/api/chat/users/me", token=token)
    assert (r.status, r.json()) == (200, {"user": {"id": "alice",
                                                   "name": "Alice"}})
    # and a token of another key is not
    r = http_upgrade(n.port, token=make_token(os.urandom(64), "alice"))
    assert r.status == 401


APP = """
    location = /chat/whoami {
        if ($cookie_session != "s3cret") {
            return 401;
        }
        add_header X-Chat-User alice;
        add_header X-Chat-Name "Alice A";
        return 204;
    }
"""


def test_auth_request_configuration(nginx):
    app = nginx(APP)                # plays the application
    locations = snippet("nginx-auth-request")
    assert "127.0.0.1:8000" in locations
    n = nginx(locations.replace("127.0.0.1:8000", "127.0.0.1:%d" % app.port))
    signed_in = {"Cookie": "session=s3cret"}
    with ws_connect(n, headers=signed_in) as c:
        assert c.welcome["user"] == {"id": "alice", "name": "Alice A"}
    r = http(n, "GET", "/api/chat/users/me", headers=signed_in)
    assert (r.status, r.json()) == (200, {"user": {"id": "alice",
                                                   "name": "Alice A"}})
    # no session: the application's 401 is the answer
    assert http_upgrade(n.port).status == 401
    assert http_upgrade(n.port, headers={"Cookie": "session=x"}).status \
        == 401
    assert http(n, "GET", "/api/chat/users/me").status == 401


ORDERS = ("CREATE TABLE public.orders (id bigint PRIMARY KEY, buyer_id text, "
          "seller_id text, conversation_id bigint)")


@pytest.fixture
def shop(nginx, postgres):
    """nginx with storage, and the shop's orders table of the example."""
    postgres.reset()
    postgres.query("TRUNCATE chat.outbox RESTART IDENTITY")
    postgres.query("DROP TABLE IF EXISTS public.orders")
    postgres.query(ORDERS)
    n = nginx("location = /chat/ws { chat_websocket; }",
              http='chat_postgres "%s" pool=2;' % postgres.dsn)
    yield n
    postgres.query("DROP TABLE IF EXISTS public.orders")


def seller(n):
    c = ws_connect(n, make_token(n.key, "u99"))
    # a storage round trip: the pool, and with it the outbox reader, is up
    c.ok("conversation.list")
    return c


def test_host_sql_example_is_atomic_and_live(shop, postgres):
    sql = snippet("sql-order")
    assert sql.rstrip().endswith("COMMIT;")
    with seller(shop) as u99:
        # rolled back: no order, no conversation, nothing delivered
        with postgres.connect() as conn:
            conn.execute(sql.replace("COMMIT;", "ROLLBACK;"))
        assert postgres.query("SELECT count(*) FROM public.orders") == [(0,)]
        assert postgres.query("SELECT count(*) FROM chat.conversations") \
            == [(0,)]
        with postgres.connect() as conn:
            conn.execute(sql)
        [(cid,)] = postgres.query("SELECT conversation_id FROM public.orders "
                                  "WHERE id = 1042")
        ev = u99.next_event("conversation.created", timeout=15)
        conv = ev["conversation"]
        assert (conv["id"], conv["kind"], conv["title"], conv["ref"],
                conv["metadata"]) == (cid, "group", "Order #1042",
                                      "order:1042", {"order_id": 1042})
        assert {(m["user_id"], m["role"]) for m in conv["members"]} == \
            {("u17", "owner"), ("u99", "member")}
        msg = u99.next_event("message.created", timeout=15)["message"]
        assert (msg["conversation_id"], msg["sender_id"], msg["body"],
                msg["system"]) == (cid, "shop", "Order #1042 was placed.",
                                   True)
        # the first event u99 saw was the committed one: the rolled back
        # transaction delivered nothing
        assert not [e for e in u99.events
                    if e.get("type") == "conversation.created"]


def test_host_sql_example_from_python(shop, postgres):
    code = snippet("python-order")
    with seller(shop) as u99:
        with postgres.connect() as conn:
            exec(code, {"conn": conn, "order_id": 1043, "buyer": "u17",
                        "seller": "u99"})
        conv = u99.next_event("conversation.created",
                              timeout=15)["conversation"]
        assert (conv["title"], conv["ref"], conv["metadata"]) == \
            ("Order #1043", "order:1043", {"order_id": 1043})
        assert postgres.query("SELECT conversation_id FROM public.orders "
                              "WHERE id = 1043") == [(conv["id"],)]
        msg = u99.next_event("message.created", timeout=15)["message"]
        assert (msg["body"], msg["system"]) == ("Order #1043 was placed.",
                                                True)
