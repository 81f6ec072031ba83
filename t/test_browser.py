"""The chat page (web/index.html, app.js, app.css) in a real browser,
against real nginx and PostgreSQL: node's test runner runs
web/browser-test/ (node:test and playwright-core from web/node_modules,
driving Debian's Chromium; `make test` installs both).

nginx serves the page from web/ and the module's WebSocket, REST routes
and development tokens beside it, as the demo (`make run`:
nginx.conf.example with demo/nginx-demo.conf) does.
The Node tests sign users in through the page itself.

Environment (optional):
  CHROMIUM             the browser (default /usr/bin/chromium)
  CHAT_SCREENSHOT_DIR  where the tests save their screenshots (default
                       build/screenshots; `make screenshots` refreshes
                       docs/screenshots)
"""

import os
import shutil
import subprocess

import pytest

from test_uploads import make_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "web")
NODE = os.environ.get("CHAT_NODE") or shutil.which("node") or "/usr/bin/node"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# The fixture's http block knows no MIME types: the page's ES modules need
# a JavaScript type (browsers refuse a module served as octet-stream).
TYPES = """
    types {
        text/html               html;
        text/css                css;
        application/javascript  js mjs;
        application/json        json;
        image/svg+xml           svg;
        image/png               png;
    }
"""

# Uploads and downloads as in the demo; a small upload limit, so that a
# test can go over it without a large body
LOCATIONS = """
    location = /chat/ws { chat_websocket; }
    location /api/chat/ {
        chat_api;
        chat_upload_path %(store)s;
        chat_upload_max_size 1m;
    }
    location /_chat_files/ { chat_files; alias %(store)s/; }
    location = /chat/dev/token { chat_dev_token; }
    location / {
        root %(web)s;
        index index.html;
    }
"""

# node --test's arguments: the whole directory, or CHAT_BROWSER_TESTS
# (paths under web/, separated by spaces) to run a few files only
TESTS = os.environ.get("CHAT_BROWSER_TESTS", "browser-test/").split()


def test_browser(nginx, postgres):
    if not os.path.exists(NODE):
        pytest.fail("node is missing (set CHAT_NODE)", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s is missing: apt-get install chromium, or set CHROMIUM "
                    "(make test installs it)" % CHROMIUM, pytrace=False)
    if not os.path.isdir(os.path.join(WEB, "node_modules", "playwright-core")):
        pytest.fail("web/node_modules/playwright-core is missing: run `npm ci` "
                    "in web/ (make test does)", pytrace=False)
    if not os.path.exists(os.path.join(WEB, "app.js")):
        pytest.fail("web/app.js is missing: the chat page is not there",
                    pytrace=False)
    postgres.reset()
    ng = nginx(LOCATIONS % dict(web=WEB, store=make_store()),
               http=TYPES + 'chat_zone chat 8m;\n'
                            # links beside uploads (attachments.test.mjs)
                            'chat_attachment_hosts cdn.example.com;\n'
                            'chat_postgres "%s" pool=4;' % postgres.dsn)
    shots = os.environ.get("CHAT_SCREENSHOT_DIR") or \
        os.path.join(REPO, "build", "screenshots")
    env = dict(os.environ,
               CHAT_BROWSER_BASE=ng.url("/"),
               CHROMIUM=CHROMIUM,
               CHAT_SCREENSHOT_DIR=shots,
               PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    try:
        r = subprocess.run([NODE, "--test", "--test-reporter=spec",
                            *TESTS],
                           cwd=WEB, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail("node --test still running after 600 s:\n%s%s"
                    % (e.stdout or "", e.stderr or ""), pytrace=False)
    print(r.stdout)
    if r.returncode != 0:
        pytest.fail("node --test web/browser-test/ exited with %d:\n%s%s"
                    % (r.returncode, r.stdout, r.stderr), pytrace=False)
