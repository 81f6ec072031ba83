"""The Debian package (`make deb`, docs/packaging.md).

Its files and control fields are read from the .deb.  Then it is installed
on this machine with dpkg -i: Debian's nginx checks its stock
/etc/nginx/nginx.conf (which includes modules-enabled/*.conf, so the
package's link loads the module), a private nginx loads the installed
module through the same modules-enabled/ and serves /chat/status, and
dpkg -r, dpkg -i and dpkg -P walk the link through Debian's states before
the machine is left as it was.

The system nginx service is never started or reloaded: the install test
skips when it runs, since the package's nginx-reload trigger would reload
it.  The rest of the suite loads the module from build/ with its own
configurations, so the package being installed for a few seconds does not
change what they run."""

import glob
import io
import os
import subprocess
import tarfile
import tempfile
import time

import pytest

import chatlib
from conftest import NGINX, REPO, Nginx, base_dir, free_port, tail

PKG = "libnginx-mod-http-chat"
SYS_NGINX = "/usr/sbin/nginx"
SO = "/usr/lib/nginx/modules/ngx_http_chat_module.so"
AVAILABLE = "/usr/share/nginx/modules-available/mod-http-chat.conf"
ENABLED = "/etc/nginx/modules-enabled/50-mod-http-chat.conf"
SHARE = "/usr/share/ngx-http-chat"
DOC = "/usr/share/doc/" + PKG
LOAD = "load_module modules/ngx_http_chat_module.so;\n"

pytestmark = pytest.mark.skipif(
    NGINX != SYS_NGINX,
    reason="the package is for Debian's nginx; tested in the run with "
           "%s, not CHAT_NGINX=%s" % (SYS_NGINX, NGINX))


def run(*cmd, check=True):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if check and r.returncode != 0:
        pytest.fail("%s exited with %d:\n%s" % (" ".join(cmd), r.returncode,
                                               tail(r.stdout + r.stderr, 40)))
    return r


def dpkg(*args):
    """dpkg, waiting while somebody else's apt or dpkg holds the lock."""
    deadline = time.monotonic() + 120
    while True:
        r = run("dpkg", *args, check=False)
        if r.returncode == 0:
            return r
        if "lock" not in r.stderr or time.monotonic() > deadline:
            pytest.fail("dpkg %s failed:\n%s"
                        % (" ".join(args), tail(r.stdout + r.stderr, 40)))
        time.sleep(1)


def pkg_status():
    """dpkg's status of the package: "" when it is unknown or purged."""
    r = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG, check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def nginx_abi():
    """The nginx-abi-* the installed nginx provides."""
    provides = run("dpkg-query", "-W", "-f=${Provides}", "nginx").stdout
    abi = [p.strip() for p in provides.split(",")
           if p.strip().startswith("nginx-abi-")]
    assert len(abi) == 1, "dpkg -s nginx: Provides: %s" % provides
    return abi[0]


def system_nginx_running():
    try:
        with open("/run/nginx.pid") as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def deb():
    """make deb (the module is already built, so this is a few seconds)
    and the path of the package."""
    start = time.time()
    run("make", "-C", REPO, "deb")
    debs = glob.glob(os.path.join(REPO, "build", "deb", PKG + "_*.deb"))
    assert len(debs) == 1, debs
    outside = [p for p in glob.glob(os.path.join(os.path.dirname(REPO),
                                                 "*ngx-http-chat_*"))
               + glob.glob(os.path.join(os.path.dirname(REPO), PKG + "*"))
               if os.path.getmtime(p) >= start - 1]
    assert not outside, "make deb wrote outside the repository: %s" % outside
    return debs[0]


def deb_files(path):
    """{path without the leading ".": (TarInfo, bytes or None)}."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", path], check=True,
                          capture_output=True).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            body = tar.extractfile(m).read() if m.isfile() else None
            out[m.name[1:].rstrip("/") or "/"] = (m, body)
    return out


def test_files(deb):
    files = deb_files(deb)

    m, body = files[SO]
    assert m.isfile() and m.mode == 0o644
    assert body[:4] == b"\x7fELF"

    m, body = files[AVAILABLE]
    assert body.decode() == LOAD

    # the link in modules-enabled/ is made by postinst, never shipped
    assert not [p for p in files if p.startswith("/etc")]

    # the whole sql/ tree, byte for byte, executables kept executable
    sql = os.path.join(REPO, "sql")
    n = 0
    for d, _, names in os.walk(sql):
        for name in names:
            src = os.path.join(d, name)
            dst = SHARE + "/" + os.path.relpath(src, sql)
            assert dst in files, "%s is not in the package" % dst
            m, body = files[dst]
            with open(src, "rb") as f:
                assert body == f.read(), dst
            assert bool(m.mode & 0o111) == os.access(src, os.X_OK), dst
            n += 1
    assert n > 0
    shipped = [p for p, (m, _) in files.items()
               if p.startswith(SHARE + "/") and m.isfile()]
    assert len(shipped) == n, "files under %s that sql/ does not have" % SHARE

    # documentation; dh_compress gzips the larger files
    def doc(name):
        for p in (DOC + "/" + name, DOC + "/" + name + ".gz"):
            if p in files:
                return p
        pytest.fail("%s is not in the package" % name)

    for name in ["README.md"] + [os.path.basename(p) for p in
                                 glob.glob(os.path.join(REPO, "docs", "*.md"))]:
        doc(name)
    copyright = files[DOC + "/copyright"][1].decode()
    assert "License: BSD-2-Clause" in copyright
    with open(os.path.join(REPO, "LICENSE")) as f:
        license_text = f.read()
    for line in license_text.split("Redistribution", 1)[1].splitlines()[1:]:
        if line.strip():
            assert " " + line in copyright.splitlines(), line


def test_control(deb):
    def field(name):
        return run("dpkg-deb", "-f", deb, name).stdout.strip()

    assert field("Package") == PKG
    assert field("Architecture") == \
        run("dpkg", "--print-architecture").stdout.strip()
    assert field("Version") == run(
        "dpkg-parsechangelog", "-l", os.path.join(REPO, "debian", "changelog"),
        "-S", "Version").stdout.strip()
    assert field("Section") == "httpd"

    depends = [d.strip() for d in field("Depends").split(",")]
    names = [d.split()[0] for d in depends]
    # exactly the ABI of the installed nginx, unversioned as Debian's own
    # module packages have it: a new nginx ABI makes the package
    # uninstallable until it is rebuilt
    abi = nginx_abi()
    assert abi in depends
    assert [n for n in names if n.startswith("nginx-abi-")] == [abi]
    for lib in ("libpq5", "libjansson4", "libssl3"):
        assert lib in names, depends


CONF = """\
include /etc/nginx/modules-enabled/*.conf;
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log info;

events {{
    worker_connections 64;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    server {{
        listen 127.0.0.1:{port};
        location = /chat/status {{ chat_status; }}
    }}
}}
"""


def private_nginx(factory):
    """Debian's nginx with its own prefix, loading what modules-enabled/
    loads.  load_module's relative paths resolve against the prefix, so
    the prefix has Debian's modules -> /usr/lib/nginx/modules link."""
    prefix = tempfile.mkdtemp(prefix="deb-", dir=base_dir())
    os.chmod(prefix, 0o755)
    os.mkdir(os.path.join(prefix, "tmp"))
    os.symlink("/usr/lib/nginx/modules", os.path.join(prefix, "modules"))
    inst = Nginx(prefix, free_port(), None, factory.allow_log)
    with open(inst.conf_path, "w") as f:
        f.write(CONF.format(prefix=prefix, port=inst.port))
    factory.instances.append(inst)     # quit and log checks at teardown
    inst.start()
    return inst


def stock_nginx_t():
    """nginx -T with /etc/nginx/nginx.conf: the test and its dump."""
    r = run(SYS_NGINX, "-T")
    assert "test is successful" in r.stderr
    return r.stdout


def test_install_and_purge(deb, nginx):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if pkg_status():
        pytest.skip("%s is installed on this machine (%s); the test would "
                    "replace it" % (PKG, pkg_status()))
    if system_nginx_running():
        pytest.skip("the system nginx runs (/run/nginx.pid): installing "
                    "the package would reload it")

    try:
        dpkg("-i", deb)
        assert pkg_status() == "ii"
        assert os.readlink(ENABLED) == AVAILABLE
        assert os.path.isfile(SO)
        assert sorted(os.listdir(SHARE)) == \
            sorted(os.listdir(os.path.join(REPO, "sql")))

        # the stock configuration loads it through modules-enabled/
        dump = stock_nginx_t()
        assert "# configuration file %s:\n%s" % (ENABLED, LOAD) in dump

        n = private_nginx(nginx)
        r = chatlib.http(n, "GET", "/chat/status")
        assert r.status == 200
        assert b"\nchat_connections 0\n" in b"\n" + r.body
        workers = n.worker_pids()
        assert workers
        with open("/proc/%d/maps" % workers[0]) as f:
            assert SO in f.read()
        n.quit()

        # remove: the link is set aside, nginx still starts without it
        dpkg("-r", PKG)
        assert not os.path.lexists(ENABLED)
        assert os.path.islink(ENABLED + ".removed")
        assert not os.path.exists(SO)
        assert ENABLED not in stock_nginx_t()

        # installed again after a remove: the link comes back
        dpkg("-i", deb)
        assert os.readlink(ENABLED) == AVAILABLE
        assert not os.path.lexists(ENABLED + ".removed")

        # an administrator's disabling survives a reinstall or upgrade
        os.unlink(ENABLED)
        dpkg("-i", deb)
        assert not os.path.lexists(ENABLED)

        dpkg("-P", PKG)
        assert pkg_status() == ""
        for p in (ENABLED, ENABLED + ".removed", SO, AVAILABLE, SHARE, DOC):
            assert not os.path.lexists(p), p
    finally:
        if pkg_status():
            dpkg("-P", PKG)
