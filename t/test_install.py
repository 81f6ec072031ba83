"""README.md's install path, word for word: the ```sh blocks of its section
"Adding it to an existing nginx", in order, run as one bash script against
a server that already runs Debian's nginx and PostgreSQL 15, then a chat
through the result.

The server is private, rooted in a temporary directory ROOT, and the
system is never touched:

- ROOT/etc/nginx is a copy of the stock /etc/nginx tree of the `nginx`
  package; in the copy only, its absolute paths (/etc/nginx, /run/nginx.pid,
  /var/log/nginx, the default site's port 80) are rooted in ROOT too;
- the prefix is ROOT/usr/share/nginx/, whose `modules` points to
  ../../lib/nginx/modules as Debian's does;
- Debian's own /usr/sbin/nginx runs it (-p and -c), as the site that already
  runs; its workers are www-data, as nginx.conf says;
- a PostgreSQL 15 cluster in ROOT/pg with Debian's stock pg_hba.conf (peer
  on the socket, scram-sha-256 on 127.0.0.1) and the database `app`.

The README's commands name the system's paths; SUBSTITUTIONS is the short
list of what is rewritten to point into ROOT, each of which must match, and
the script must name no other system path before it runs.  Everything else
runs verbatim.  ROOT is kept when the test fails (and with CHAT_KEEP).
"""

import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from chatlib import http, make_token, ws_connect
from conftest import (MODULE, REPO, bad_log_lines, base_dir, children,
                      cmdline, free_port, port_open, read_text, tail)

NGINX = "/usr/sbin/nginx"       # Debian's own, whatever CHAT_NGINX says
PGBIN = "/usr/lib/postgresql/15/bin"
SECTION = "## Adding it to an existing nginx"
BUILT = os.path.join(REPO, "build", "ngx_http_chat_module.so")

# Debian's stock pg_hba.conf of a bookworm cluster
PG_HBA = """\
local   all             postgres                                peer
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""

# what the script may still name outside ROOT once substituted
ALLOWED_PATHS = ("/usr/sbin/nginx", "/dev/null")
SYSTEM_PATH = re.compile(r"(?<![\w.-])/(etc|usr|var|run|lib|opt|srv|home|"
                         r"root|boot)(/[^\s'\";|&)]*)?")


def readme_blocks():
    """The ```sh blocks of the README's install section, in order."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    start = text.find("\n" + SECTION + "\n")
    assert start >= 0, "README.md has no section %r" % SECTION
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    blocks = re.findall(r"^```sh\n(.*?)^```[ \t]*$", section, re.M | re.S)
    assert blocks, "no ```sh block in README.md's %r" % SECTION
    return blocks


def tree_digest(top):
    """Names, modes, link targets and contents under top (the system's
    /etc/nginx: it must be the same after the test)."""
    h = hashlib.sha256()
    if not os.path.lexists(top):
        return "absent"
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(("%s %o\n" % (p, st.st_mode)).encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def subn_once(pattern, repl, text, what, flags=0):
    new, n = re.subn(pattern, lambda m: repl, text, flags=flags)
    assert n, "%s: %r matches nothing" % (what, pattern)
    return new


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return set(int(u) for u in line.split()[1:])
    return set()


class Server:
    """The private server: nginx tree, prefix, logs and cluster under
    root."""

    def __init__(self, root):
        self.root = root
        self.etc = root + "/etc/nginx"
        self.conf = self.etc + "/nginx.conf"
        self.prefix = root + "/usr/share/nginx"
        self.modules = root + "/usr/lib/nginx/modules"
        self.logs = root + "/var/log/nginx"
        self.port = free_port()
        self.pg_port = free_port()
        while self.pg_port == self.port:
            self.pg_port = free_port()
        self.pg_data = root + "/pg/data"
        self.pg_socket = root + "/pg/socket"
        self.pg_log = root + "/pg/log"
        self.proc = None
        self.pg_running = False
        self.passed = False

    # --- nginx -------------------------------------------------------------

    def nginx_cmd(self):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf]

    def make_nginx(self):
        root = self.root
        shutil.copytree("/etc/nginx", self.etc, symlinks=True)
        # sites-enabled/default -> /etc/nginx/sites-available/default: the
        # copy's links point into the copy, and none leaves it; a link out
        # of /etc/nginx (another Debian module's modules-enabled/50-mod-*.conf
        # -> /usr/share/nginx/modules-available/) becomes a copy of its file,
        # so the server still loads the modules the host already has
        for dirpath, dirnames, filenames in os.walk(self.etc):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    continue
                target = os.readlink(p)
                if target.startswith("/etc/nginx/"):
                    os.unlink(p)
                    os.symlink(root + target, p)
                elif os.path.isfile(p):
                    real = os.path.realpath(p)
                    os.unlink(p)
                    shutil.copyfile(real, p)
                assert os.path.realpath(p).startswith(root + "/"), \
                    "%s leaves the copy" % p

        # the stock layout, or this is not the server the README means
        for p in ("nginx.conf", "conf.d", "modules-available",
                  "modules-enabled", "snippets", "sites-enabled/default"):
            assert os.path.exists(os.path.join(self.etc, p)), \
                "/etc/nginx/%s is missing: not Debian's stock layout" % p
        with open(self.conf) as f:
            text = f.read()
        for line in ("user www-data;",
                     "include /etc/nginx/modules-enabled/*.conf;",
                     "include /etc/nginx/conf.d/*.conf;",
                     "include /etc/nginx/sites-enabled/*;"):
            assert line in text, "/etc/nginx/nginx.conf lacks %r" % line

        # absolute paths of the copy, rooted in root
        for dirpath, dirnames, filenames in os.walk(self.etc):
            for name in filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    continue
                with open(p, encoding="utf-8", errors="surrogateescape") as f:
                    text = orig = f.read()
                text = text.replace("/etc/nginx/", root + "/etc/nginx/")
                text = text.replace("/var/log/nginx/", self.logs + "/")
                text = text.replace("/run/nginx.pid", root + "/run/nginx.pid")
                if text != orig:
                    with open(p, "w", encoding="utf-8",
                              errors="surrogateescape") as f:
                        f.write(text)

        with open(self.conf) as f:
            text = f.read()
        assert root + "/run/nginx.pid" in text
        assert self.logs + "/error.log" in text
        # the temporary directories built into Debian's binary
        # (/var/lib/nginx/body, ...) would be made and chowned at start
        temp = "".join("\t%s_temp_path %s/var/lib/nginx/%s;\n" % (k, root, d)
                       for k, d in (("client_body", "body"),
                                    ("proxy", "proxy"),
                                    ("fastcgi", "fastcgi"),
                                    ("uwsgi", "uwsgi"), ("scgi", "scgi")))
        text = subn_once(r"^http \{\n", "http {\n" + temp, text,
                         "nginx.conf's http block", re.M)
        with open(self.conf, "w") as f:
            f.write(text)

        # the default site listens on a free port of 127.0.0.1
        site = os.path.realpath(self.etc + "/sites-enabled/default")
        with open(site) as f:
            text = f.read()
        text = subn_once(r"^[ \t]*listen 80 default_server;",
                         "\tlisten 127.0.0.1:%d default_server;" % self.port,
                         text, "the default site's listen", re.M)
        text = subn_once(r"^[ \t]*listen \[::\]:80 default_server;\n", "",
                         text, "the default site's IPv6 listen", re.M)
        with open(site, "w") as f:
            f.write(text)

        # Debian: /usr/share/nginx/modules -> ../../lib/nginx/modules, a
        # directory that only modules' packages make
        os.makedirs(self.prefix)
        os.symlink("../../lib/nginx/modules", self.prefix + "/modules")
        os.makedirs(os.path.dirname(self.modules))
        if os.path.isdir("/usr/lib/nginx/modules"):
            os.makedirs(self.modules)
            # the modules the host has already (Debian's nchan, say), as
            # links: the server runs with them, as the real one does
            for name in os.listdir("/usr/lib/nginx/modules"):
                if name == "ngx_http_chat_module.so":
                    continue    # ours is what the README installs
                os.symlink(os.path.join("/usr/lib/nginx/modules", name),
                           os.path.join(self.modules, name))
        for d in (self.logs, root + "/run", root + "/var/lib/nginx"):
            os.makedirs(d)

    def start_nginx(self):
        """As the site that already runs: in the foreground (our child),
        otherwise as configured."""
        with open(self.root + "/nginx.stderr", "ab") as err:
            self.proc = subprocess.Popen(
                self.nginx_cmd() + ["-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the stock nginx does not start:\n%s\n%s"
                            % (tail(read_text(self.root + "/nginx.stderr")),
                               tail(self.error_log())))
            time.sleep(0.05)

    def worker_pids(self):
        return [p for p in children(self.proc.pid)
                if cmdline(p) == "nginx: worker process"]

    def error_log(self):
        return read_text(self.logs + "/error.log")

    def quit_nginx(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        workers = children(proc.pid)
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            for p in [proc.pid] + workers:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            pytest.fail("nginx did not exit on QUIT:\n%s"
                        % tail(self.error_log()))

    # --- PostgreSQL --------------------------------------------------------

    def make_postgres(self):
        for d in (os.path.dirname(self.pg_data), self.pg_data,
                  self.pg_socket):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, "postgres", "postgres")
        os.chmod(self.pg_data, 0o700)
        self.as_postgres([PGBIN + "/initdb", "-D", self.pg_data,
                          "-U", "postgres", "--auth-local=peer",
                          "--auth-host=scram-sha-256", "-E", "UTF8",
                          "--locale=C.UTF-8", "--no-instructions",
                          "--no-sync"])
        with open(self.pg_data + "/pg_hba.conf", "w") as f:
            f.write(PG_HBA)
        with open(self.pg_data + "/postgresql.conf", "a") as f:
            f.write("listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "password_encryption = scram-sha-256\n"
                    "fsync = off\n" % (self.pg_port, self.pg_socket))
        self.as_postgres([PGBIN + "/pg_ctl", "-D", self.pg_data, "-l",
                          self.pg_log, "-w", "-t", "60", "start"])
        self.pg_running = True
        self.psql("postgres", "CREATE DATABASE app")

    def as_postgres(self, argv):
        r = subprocess.run(["runuser", "-u", "postgres", "--"] + argv,
                           cwd="/", capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail("%s failed:\n%s%s\n%s"
                        % (" ".join(argv), r.stdout, r.stderr,
                           tail(read_text(self.pg_log))))
        return r.stdout

    def psql(self, db, sql):
        """Rows of one statement, as the superuser through the socket
        (peer: the OS user postgres)."""
        out = self.as_postgres([PGBIN + "/psql", "-X", "-q", "-v",
                                "ON_ERROR_STOP=1", "-h", self.pg_socket,
                                "-p", str(self.pg_port), "-d", db,
                                "-tA", "-c", sql])
        return [line.split("|") for line in out.splitlines() if line]

    def stop_postgres(self):
        if self.pg_running:
            self.pg_running = False
            self.as_postgres([PGBIN + "/pg_ctl", "-D", self.pg_data, "-w",
                              "-t", "60", "-m", "fast", "stop"])

    # --- the README ------------------------------------------------------

    def substitutions(self):
        """(what, pattern, replacement): the README's commands as they
        would run on this server, in this order."""
        nginx = " ".join(self.nginx_cmd()) + " "
        return [
            ("the nginx configuration", r"/etc/nginx(?=/)",
             self.etc),
            ("the modules directory", r"/usr/lib/nginx/modules(?=/|\s|$)",
             self.modules),
            ("nginx's logs", r"/var/log/nginx(?=/)", self.logs),
            # sudo may be missing; the cluster is not the default one
            ("the superuser's psql", r"\bsudo -u postgres psql\b",
             "runuser -u postgres -- psql -h %s -p %d"
             % (self.pg_socket, self.pg_port)),
            ("the TCP conninfo", r"\bhost=127\.0\.0\.1\b",
             "host=127.0.0.1 port=%d" % self.pg_port),
            # the running nginx is this one
            ("the nginx commands", r"^nginx ", nginx),
        ]

    def script(self):
        text = "\n".join(readme_blocks())
        for what, pattern, repl in self.substitutions():
            text = subn_once(pattern, repl, text, what, re.M)
        # a command the list does not redirect would act on the system
        rest = text.replace(self.root, "ROOT")
        for path in ALLOWED_PATHS:
            rest = rest.replace(path, "")
        m = SYSTEM_PATH.search(rest)
        assert not m, ("README's commands name %r, which the test does not "
                       "redirect: add it to the substitutions" % m.group(0))
        assert not re.search(r"\b(systemctl|service)\s", rest), \
            "README's commands would act on the system's services"
        return "set -euo pipefail\n" + text

    def run_script(self, text):
        path = self.root + "/install.sh"
        with open(path, "w") as f:
            f.write(text)
        # a root shell on the server: none of make's or libpq's settings of
        # the test run
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MAKE", "MFLAGS", "PG", "NGINX_"))}
        r = subprocess.run(["bash", path], cwd=REPO, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail("the README's steps failed (exit %d)\n"
                        "--- script:\n%s\n--- output:\n%s\n"
                        "--- nginx error log:\n%s"
                        % (r.returncode, text, r.stdout,
                           tail(self.error_log())), pytrace=False)
        return r.stdout


@pytest.fixture
def server():
    if not MODULE:
        pytest.skip("CHAT_MODULE is empty: this nginx has the module built "
                    "in (the ASan run); the install path needs Debian's "
                    "nginx and the dynamic module")
    for p in (NGINX, PGBIN + "/initdb", "/etc/nginx/nginx.conf"):
        if not os.path.exists(p):
            pytest.fail("%s is missing: make deps" % p, pytrace=False)

    system = (tree_digest("/etc/nginx"), tree_digest("/usr/lib/nginx"))
    root = tempfile.mkdtemp(prefix="install-", dir=base_dir())
    os.chmod(root, 0o755)
    s = Server(root)
    try:
        yield s
    finally:
        try:
            s.quit_nginx()
        finally:
            s.stop_postgres()
        assert (tree_digest("/etc/nginx"),
                tree_digest("/usr/lib/nginx")) == system, \
            "the system's /etc/nginx or /usr/lib/nginx changed"
        if s.passed and not os.environ.get("CHAT_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("\ninstall test directory kept in %s" % root)


def wait_for(what, cond, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("%s: not after %s s" % (what, timeout))
        time.sleep(0.05)


def test_readme_install_path(server):
    s = server
    www = pwd.getpwnam("www-data").pw_uid

    # --- a server that already runs nginx and PostgreSQL ------------------
    s.make_nginx()
    s.make_postgres()
    s.start_nginx()
    r = http(s.port, "GET", "/")
    assert r.status == 200 and b"Welcome to nginx!" in r.body, r
    assert http(s.port, "GET", "/chat/status").status == 404
    master = s.proc.pid
    old_workers = set(s.worker_pids())
    assert old_workers

    # --- the README's steps -----------------------------------------------
    script = s.script()
    out = s.run_script(script)

    # the reload: new workers of the same master, with the module
    def reloaded():
        now = set(s.worker_pids())
        return (now and not now & old_workers and
                http(s.port, "GET", "/chat/status").status == 200 and now)
    workers = wait_for("nginx -s reload", reloaded)
    assert s.proc.poll() is None and s.proc.pid == master

    so = s.modules + "/ngx_http_chat_module.so"
    with open(so, "rb") as a, open(BUILT, "rb") as b:
        assert a.read() == b.read(), "the installed module is not build/'s"
    for pid in workers:
        with open("/proc/%d/maps" % pid) as f:
            assert so in f.read(), "worker %d has not loaded %s" % (pid, so)
        assert uid_of(pid) == {www}, "worker %d is not www-data" % pid

    # the secrets: root's alone
    for name in ("chat.key", "chat-postgres.conf"):
        st = os.stat(s.etc + "/" + name)
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), name
    # the site is still enabled through its link, the include in the file
    assert os.path.islink(s.etc + "/sites-enabled/default")
    assert "include snippets/chat.conf;" in read_text(
        s.etc + "/sites-available/default")

    # --- a chat through it -------------------------------------------------
    with open(s.etc + "/chat.key", "rb") as f:
        key = f.read()
    alice = make_token(key, "alice", name="Alice")
    bob = make_token(key, "bob", name="Bob")

    # bob as a browser would: the token in the query string
    with ws_connect(s.port, alice) as a, \
            ws_connect(s.port, bob, token_in="query") as b:
        conv = a.ok("conversation.create", kind="direct",
                    user_id="bob")["conversation"]
        cid = conv["id"]
        assert b.next_event("conversation.created")["conversation"]["id"] \
            == cid
        sent = a.ok("message.send", conversation_id=cid, body="hello, bob",
                    client_msg_id="install-1")["message"]
        got = b.next_event("message.created")["message"]
        assert got == sent and got["body"] == "hello, bob" and \
            got["sender_id"] == "alice"

        r = http(s.port, "GET", "/api/chat/conversations", token=bob)
        assert r.status == 200, r
        convs = {c["id"]: c for c in r.json()["conversations"]}
        assert convs[cid]["last_message"]["body"] == "hello, bob"
        assert http(s.port, "GET", "/api/chat/users/me").status == 401

        status = http(s.port, "GET", "/chat/status")
        assert status.status == 200
        assert re.search(rb"^chat_connections(\{[^}]*\})? [1-9]",
                         status.body, re.M), status.body[:2000]

        # nothing runs as a superuser: the module's sessions are chat_nginx
        sessions = s.psql("app", "SELECT usename, client_addr FROM "
                          "pg_stat_activity WHERE datname = 'app' AND "
                          "backend_type = 'client backend' AND "
                          "pid <> pg_backend_pid()")
        assert sessions and all(r == ["chat_nginx", "127.0.0.1"]
                                for r in sessions), sessions
        assert s.psql("app", "SELECT rolsuper, rolcreaterole, rolcreatedb "
                      "FROM pg_roles WHERE rolname IN "
                      "('chat_nginx', 'chat_owner')") == [["f", "f", "f"]] * 2

    # the WebSockets are logged when they close, without their tokens
    def logged():
        text = read_text(s.logs + "/access.log")
        return re.search(r'^127\.0\.0\.1 bob \[[^]]+\] "GET /chat/ws" 101 ',
                         text, re.M) and text
    log = wait_for("bob's WebSocket in the access log", logged, 10)
    assert "access_token" not in log and bob not in log, log

    bad = bad_log_lines(s.error_log())
    assert not bad, "nginx logged:\n" + "\n".join(bad)

    print("\n--- the script run:\n%s\n--- its output:\n%s" % (script, out))
    s.passed = True
