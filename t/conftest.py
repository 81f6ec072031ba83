"""Fixtures in the style of NGINX Unit's tests: a real nginx with the
module per test, a real PostgreSQL per session, and after every test a
check that nginx exits promptly on QUIT and logged no alert, crit, emerg or
sanitizer report.  chat_env (and env, chat) is the chat tests' one
harness, chatlib.ChatEnv, configured per test module by its CHAT_ENV.

Environment:
  CHAT_NGINX   the nginx binary (default /usr/sbin/nginx)
  CHAT_MODULE  the module's .so (default ../build/ngx_http_chat_module.so);
               empty: the binary has the module built in
  CHAT_DEBUG   set: error_log at debug level
  CHAT_KEEP    set: keep the temporary directories even when all passed
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chatlib  # noqa: E402  (after the path tweak)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = os.environ.get("CHAT_NGINX", "/usr/sbin/nginx")
MODULE = os.environ.get("CHAT_MODULE",
                        os.path.join(REPO, "build",
                                     "ngx_http_chat_module.so"))

# Lines that fail a test wherever they appear in nginx's logs.
BAD_LOG = re.compile(r"\[alert\]|\[crit\]|\[emerg\]|AddressSanitizer|"
                     r"LeakSanitizer|runtime error:")

_base_dir = None


def base_dir():
    """The session's scratch directory.  Not pytest's tmp_path: that is
    mode 700 under /tmp/pytest-of-root, and nginx workers (nobody) and
    PostgreSQL (postgres) must reach files below it."""
    global _base_dir
    if _base_dir is None:
        _base_dir = tempfile.mkdtemp(prefix="chat-t-")
        os.chmod(_base_dir, 0o755)
    return _base_dir


def pytest_sessionfinish(session, exitstatus):
    if _pg is not None:
        _pg.stop()
    if _base_dir is None:
        return
    if exitstatus == 0 and not os.environ.get("CHAT_KEEP"):
        shutil.rmtree(_base_dir, ignore_errors=True)
    else:
        print("\ntest directories kept in %s" % _base_dir)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, n=30):
    return "\n".join(text.splitlines()[-n:])


def bad_log_lines(text, allow=()):
    """Lines of text that must fail a test (with a few lines of context
    after sanitizer reports), minus those matching an allow regex."""
    allow = [re.compile(a) for a in allow]
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not BAD_LOG.search(line):
            continue
        if any(a.search(line) for a in allow):
            continue
        if "Sanitizer" in line or "runtime error:" in line:
            out.extend(lines[i:i + 25])
        else:
            out.append(line)
    return out


def children(pid):
    """Pids of the direct children of pid."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # the command may contain spaces and parentheses: split after it
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d))
    return kids


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# nginx

CONF = """\
{load_module}
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log {level};
{main}

events {{
    worker_connections 4096;
    {events}
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    {jwt_key}
{http}

    server {{
        listen 127.0.0.1:{port}{reuseport};
        server_name localhost;

{locations}
    }}
}}
"""


class Nginx:
    """One running nginx: the master is our child, in the foreground."""

    def __init__(self, prefix, port, key, allow_log):
        self.prefix = prefix
        self.port = port
        self.key = key
        self.allow_log = allow_log      # shared with the factory and test
        self.proc = None
        self.workers = 1

    @property
    def pid(self):
        return self.proc.pid

    @property
    def conf_path(self):
        return os.path.join(self.prefix, "nginx.conf")

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def ws_url(self, path="/chat/ws"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def error_log(self):
        return read_text(os.path.join(self.prefix, "error.log"))

    def stderr_log(self):
        return read_text(os.path.join(self.prefix, "stderr.log"))

    def logs(self):
        return self.error_log() + "\n" + self.stderr_log()

    def write_conf(self, locations, http="", workers=1, main="", events=""):
        self.conf_args = dict(locations=locations, http=http,
                              workers=workers, main=main, events=events)
        self.workers = workers
        key_line = "" if "chat_jwt_key" in http else \
            "chat_jwt_key hs256 file=%s/jwt.key;" % self.prefix
        text = CONF.format(
            load_module="load_module %s;" % MODULE if MODULE else "",
            workers=workers, prefix=self.prefix,
            level="debug" if os.environ.get("CHAT_DEBUG") else "info",
            main=main, events=events, jwt_key=key_line, http=http,
            port=self.port, locations=locations,
            # several workers: the kernel spreads connections over them
            reuseport=" reuseport" if str(workers) != "1" else "")
        with open(self.conf_path, "w") as f:
            f.write(text)

    def start(self):
        # -e: nginx opens its default error log before reading the
        # configuration; a binary built with --prefix would try
        # <prefix>/logs/error.log.
        with open(os.path.join(self.prefix, "stderr.log"), "ab") as err:
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.prefix + "/", "-c", self.conf_path,
                 "-e", os.path.join(self.prefix, "error.log")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                self.allow_log = [r"."]     # the logs are in the failure
                pytest.fail("nginx exited at start:\n%s\n%s"
                            % (tail(self.stderr_log()),
                               tail(self.error_log())))
            if port_open(self.port) and self._workers_ready(set()):
                return
            time.sleep(0.05)
        pytest.fail("nginx does not accept connections on port %d after "
                    "10 s:\n%s" % (self.port, tail(self.logs())))

    def worker_pids(self):
        """The current (not shutting down) worker processes."""
        return [p for p in children(self.pid)
                if cmdline(p) == "nginx: worker process"]

    def _workers_ready(self, old):
        """All workers are new: none of old is still a plain worker (it
        has exited or says "is shutting down")."""
        now = set(self.worker_pids())
        return len(now - old) >= self.workers and not now & old

    def reload(self, locations=None, timeout=10, **conf):
        """HUP and wait until new workers run and the port answers.  Given
        locations or other configuration keywords (http, workers, main,
        events), the configuration is rewritten first, the rest kept."""
        if locations is not None:
            conf["locations"] = locations
        if conf:
            self.write_conf(**dict(self.conf_args, **conf))
        old = set(self.worker_pids())
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._workers_ready(old) and port_open(self.port):
                return
            time.sleep(0.05)
        pytest.fail("no new workers %s s after HUP:\n%s"
                    % (timeout, tail(self.logs())))

    def wait_log(self, regex, timeout=5):
        """Waits until the error log has a line matching regex; returns
        the match."""
        deadline = time.monotonic() + timeout
        pat = re.compile(regex)
        while True:
            m = pat.search(self.error_log())
            if m:
                return m
            if time.monotonic() > deadline:
                pytest.fail("no log line matches %r after %s s:\n%s"
                            % (regex, timeout, tail(self.error_log())))
            time.sleep(0.05)

    def quit(self, timeout=10):
        """QUIT, as a graceful shutdown; fails the test if the master is
        still there after timeout seconds."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        workers = children(proc.pid)
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for p in [proc.pid] + workers:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            pytest.fail("nginx did not exit promptly on QUIT (%s s):\n%s"
                        % (timeout, tail(self.logs())))

    def kill(self):
        """SIGKILL for the master and its workers (teardown after a
        failure; tests use quit())."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        for p in [proc.pid] + children(proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def check_logs(self):
        bad = bad_log_lines(self.error_log(), self.allow_log) + \
            bad_log_lines(self.stderr_log(), self.allow_log)
        if bad:
            pytest.fail("nginx logged:\n" + "\n".join(bad), pytrace=False)


class NginxFactory:
    """The `nginx` fixture: nginx(locations, http="", workers=1, main="",
    events="") starts an instance.  allow_log: regexes of log lines the
    test provokes on purpose (also @pytest.mark.allow_log(...))."""

    def __init__(self, name, allow_log):
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
        self.allow_log = allow_log
        self.instances = []

    def _prefix(self):
        """A fresh prefix with tmp/ and a random 32-byte jwt.key."""
        prefix = tempfile.mkdtemp(prefix=self.name + "-", dir=base_dir())
        os.chmod(prefix, 0o755)
        os.mkdir(os.path.join(prefix, "tmp"))
        key = os.urandom(32)
        fd = os.open(os.path.join(prefix, "jwt.key"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return prefix, key

    def _check_module(self):
        if MODULE and not os.path.exists(MODULE):
            pytest.fail("%s is missing: make module (or set CHAT_MODULE)"
                        % MODULE, pytrace=False)

    def __call__(self, locations, http="", workers=1, main="", events=""):
        self._check_module()
        prefix, key = self._prefix()
        inst = Nginx(prefix, free_port(), key, self.allow_log)
        inst.write_conf(locations, http, workers, main, events)
        self.instances.append(inst)
        inst.start()
        return inst

    def check_config(self, locations, http="", main="", events="",
                     workers=1):
        """Runs nginx -t on such a configuration: (returncode, output)."""
        self._check_module()
        prefix, key = self._prefix()
        inst = Nginx(prefix, free_port(), key, [])
        inst.write_conf(locations, http, workers, main, events)
        r = subprocess.run(
            [NGINX, "-t", "-p", prefix + "/", "-c", inst.conf_path,
             "-e", os.path.join(prefix, "error.log")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


@pytest.fixture
def nginx(request):
    allow = []
    for m in request.node.iter_markers("allow_log"):
        allow.extend(m.args)
    factory = NginxFactory(request.node.name, allow)
    yield factory

    failures = []
    for inst in factory.instances:
        try:
            inst.quit()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    for inst in factory.instances:
        try:
            inst.check_logs()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


# --------------------------------------------------------------------------
# PostgreSQL

class Postgres:
    """A private PostgreSQL 15 cluster, started by scripts/pg.sh (which
    also creates database chat, its roles, and migrates it).

    dsn is nginx's: the runtime role chat_nginx, which may call the API
    functions and nothing else.  connect() and query() are the tests' own,
    as the superuser.  CHAT_PG_FROM (a directory of an earlier release's
    SQL files, e.g. t/data/release-0011) builds the database with those
    first: the whole suite then runs on an upgraded database."""

    def __init__(self, directory):
        self.dir = directory
        self.socket_dir = os.path.join(directory, "socket")
        self.dsn = "host=%s dbname=chat user=chat_nginx" % self.socket_dir
        self.admin_dsn = "host=%s dbname=chat user=postgres" % self.socket_dir
        self.running = False

    def _pg_sh(self, cmd):
        env = dict(os.environ, CHAT_PG_FSYNC="off")
        if env.get("CHAT_PG_FROM"):
            env["CHAT_PG_FROM"] = os.path.join(REPO, env["CHAT_PG_FROM"])
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"),
                            cmd, self.dir], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.fail("scripts/pg.sh %s failed:\n%s%s"
                        % (cmd, r.stdout, r.stderr), pytrace=False)

    def start(self):
        self._pg_sh("up")
        self.running = True

    def stop(self):
        if self.running:
            self.running = False
            self._pg_sh("stop")

    def connect(self, **kw):
        import psycopg
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.admin_dsn, **kw)

    def query(self, sql, params=None):
        """All rows of one statement (none for statements without)."""
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def reset(self):
        """Empties every table of schema chat but the migration ledger."""
        tables = [r[0] for r in self.query(
            "SELECT quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname = 'chat' AND tablename <> 'schema_migrations'")]
        if tables:
            self.query("TRUNCATE %s RESTART IDENTITY CASCADE"
                       % ", ".join("chat." + t for t in tables))


_pg = None


@pytest.fixture(scope="session")
def postgres():
    global _pg
    pg = Postgres(os.path.join(base_dir(), "pg"))
    pg.start()
    assert pg.query("SELECT 1") == [(1,)]
    _pg = pg
    yield pg
    pg.stop()


@pytest.fixture(autouse=True)
def _postgres_back_up():
    """A fault test may stop PostgreSQL: start it again for the next."""
    yield
    if _pg is not None and not _pg.running:
        _pg.start()


# --------------------------------------------------------------------------
# the chat harness: one chatlib.ChatEnv per test

@pytest.fixture
def chat_env(request, nginx, postgres):
    """A chatlib.ChatEnv on an emptied database, not started yet.  Its
    options (locations, http, workers, timeout, ...): the test module's
    CHAT_ENV dict, updated by an indirect parameter of a test
    (@pytest.mark.parametrize("chat_env", [{...}], indirect=True))."""
    opts = dict(getattr(request.module, "CHAT_ENV", {}))
    opts.update(getattr(request, "param", {}))
    postgres.reset()
    e = chatlib.ChatEnv(nginx, postgres, **opts)
    yield e
    e.close()


@pytest.fixture
def env(chat_env):
    """chat_env for a test that starts it with directives of its own."""
    return chat_env


@pytest.fixture
def chat(chat_env):
    """chat_env started with its module's options."""
    return chat_env.start()


# --------------------------------------------------------------------------
# small conveniences

@pytest.fixture
def token(nginx):
    """token(sub, **kw): an HS256 token for the last nginx started."""
    def make(sub, **kw):
        assert nginx.instances, "start nginx first"
        return chatlib.make_token(nginx.instances[-1].key, sub, **kw)
    return make
