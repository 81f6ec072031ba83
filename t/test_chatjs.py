"""The JavaScript client, web/chat.js, against real nginx and PostgreSQL:
node's test runner runs web/test/ (node:test, the `ws` package from
web/node_modules: `npm ci` in web/ first, which make test does).

The Node tests mint their own HS256 tokens with the key file of this
nginx, and may reload it (SIGHUP to the master) to see every client get
1001 and come back.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import base_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "web")
NODE = os.environ.get("CHAT_NODE") or shutil.which("node") or "/usr/bin/node"

LOCATIONS = """
    location = /chat/ws { chat_websocket; }
    location = /chat/ws-short { chat_websocket; chat_jwt_leeway 0; }
    location /api/chat/ { chat_api; chat_upload_path %(store)s; }
    location /_chat_files/ { chat_files; alias %(store)s/; }
"""


def test_chat_js(nginx, postgres):
    if not os.path.isdir(os.path.join(WEB, "node_modules", "ws")):
        pytest.fail("web/node_modules/ws is missing: run `npm ci` in web/ "
                    "(make test does)", pytrace=False)
    if not os.path.exists(NODE):
        pytest.fail("node is missing (set CHAT_NODE)", pytrace=False)
    postgres.reset()
    # the upload store (web/test/upload.test.mjs), the workers' (nobody)
    store = tempfile.mkdtemp(prefix="store-", dir=base_dir())
    os.chown(store, 65534, 65534)
    ng = nginx(LOCATIONS % dict(store=store), http='chat_zone chat 8m;\n'
                               'chat_postgres "%s" pool=2;' % postgres.dsn)
    env = dict(os.environ,
               CHAT_JS_PORT=str(ng.port),
               CHAT_JS_KEY_FILE=os.path.join(ng.prefix, "jwt.key"),
               CHAT_JS_NGINX_PID=str(ng.pid),
               CHAT_JS_UPLOAD_PATH=store)
    try:
        r = subprocess.run([NODE, "--test", "--test-reporter=spec", "test/"],
                           cwd=WEB, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail("node --test still running after 600 s:\n%s%s"
                    % (e.stdout or "", e.stderr or ""), pytrace=False)
    if r.returncode != 0:
        pytest.fail("node --test web/test/ exited with %d:\n%s%s"
                    % (r.returncode, r.stdout, r.stderr), pytrace=False)
