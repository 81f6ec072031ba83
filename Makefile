# ngx_http_chat_module
#
#   make                  the dynamic module against Debian's nginx-dev
#   make NGINX_SRC=DIR    the dynamic module against an nginx source tree
#   make static NGINX_SRC=DIR   an nginx binary with the module built in
#   make run / make stop  the demo: nginx + private PostgreSQL on :8080
#   make migrate DB=CONNINFO   bring a database up to date (sql/migrate.sh)
#   make test             every test (installs what it needs)
#   make test-asan        the same suite against nginx built with ASan+UBSan
#   make test-threads     the upload and sweep tests with chat_upload_threads
#   make screenshots      the browser tests, refreshing docs/screenshots/
#   make fuzz             each libFuzzer target for FUZZ_SECONDS
#   make bench            ours, nchan and Socket.IO under the same load;
#                         writes docs/benchmarks.md (BENCH_ARGS=--quick)
#   make deb              the Debian package libnginx-mod-http-chat in
#                         build/deb/ (docs/packaging.md)

SHELL        := /bin/bash
# no "Entering/Leaving directory" lines: the test summary stays the last
MAKEFLAGS    += --no-print-directory
PYTHON       := /usr/bin/python3
BUILD        := $(CURDIR)/build
MODULE_NAME  := ngx_http_chat_module

NGINX_DEV    := /usr/share/nginx/src
NGINX_SRC    ?=
FUZZ_SECONDS ?= 10
PYTEST_ARGS  ?=
BENCH_ARGS   ?=

CHAT_CFLAGS  := -g -O2 -Wall -Wextra -Wno-unused-parameter -Werror

SOURCES      := config ngx_http_chat_module.c $(wildcard src/*.c src/*.h)

ifeq ($(NGINX_SRC),)
# Debian's nginx-dev ships headers and configure only; configure runs in a
# private copy so that /usr/share/nginx/src stays untouched.
NGINX_TREE   := $(BUILD)/nginx-dev
NGINX_FLAGS   = $(shell bash -c '. $(NGINX_DEV)/conf_flags; \
                                 echo "$${NGX_CONF_FLAGS[@]}"')
MODULE       := $(BUILD)/$(MODULE_NAME).so
else
NGINX_TREE   := $(abspath $(NGINX_SRC))
NGINX_FLAGS  := --with-compat --with-http_ssl_module
MODULE       := $(BUILD)/upstream/$(MODULE_NAME).so
endif

NGINX_OBJS    = $(dir $(MODULE))objs

.PHONY: all module static deps web-deps run stop migrate test test-unit test-t \
        test-threads \
        test-asan fuzz bench screenshots deb clean FORCE

all: module

module: $(MODULE)

# The copy is made again, and so the module configured and built again,
# when the installed nginx-dev changes version: a module only fits the
# nginx it was built against (and make deb names that nginx's ABI).
$(BUILD)/nginx-dev.version: FORCE
	@mkdir -p $(BUILD)
	@v=$$(dpkg-query -W -f='$${Version}' nginx-dev 2>/dev/null); \
	    [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" > $@

$(BUILD)/nginx-dev/configure: $(BUILD)/nginx-dev.version
	rm -rf $(BUILD)/nginx-dev
	cp -a $(NGINX_DEV) $(BUILD)/nginx-dev
	touch $@

$(NGINX_OBJS)/Makefile: config $(if $(NGINX_SRC),,$(BUILD)/nginx-dev/configure)
	@test -n "$(NGINX_SRC)" -o -d $(NGINX_DEV) || { \
	    echo "nginx-dev is missing: apt-get install nginx-dev," \
	         "or make NGINX_SRC=/path/to/nginx"; exit 1; }
	cd $(NGINX_TREE) && \
	    $$( [ -x ./configure ] && echo ./configure || echo ./auto/configure ) \
	    $(NGINX_FLAGS) --builddir=$(NGINX_OBJS) \
	    --with-cc-opt="$(CHAT_CFLAGS)" \
	    --add-dynamic-module=$(CURDIR)

$(MODULE): $(NGINX_OBJS)/Makefile $(SOURCES)
	$(MAKE) -C $(NGINX_TREE) -f $(NGINX_OBJS)/Makefile modules
	@# a new inode: a running nginx maps the old file, and overwriting it
	@# in place would crash it
	cp $(NGINX_OBJS)/$(MODULE_NAME).so $@.tmp && mv -f $@.tmp $@

# nginx itself with the module compiled in (needs a full source tree)
static:
	@test -n "$(NGINX_SRC)" || { echo "usage: make static NGINX_SRC=DIR"; \
	                              exit 1; }
	cd $(NGINX_TREE) && \
	    $$( [ -x ./configure ] && echo ./configure || echo ./auto/configure ) \
	    --with-http_ssl_module --builddir=$(BUILD)/static \
	    --prefix=$(BUILD)/static/prefix \
	    --with-cc-opt="$(CHAT_CFLAGS)" --add-module=$(CURDIR)
	$(MAKE) -C $(NGINX_TREE) -f $(BUILD)/static/Makefile
	@echo "built $(BUILD)/static/nginx"

deps:
	@bash scripts/deps.sh

run: deps module
	@bash scripts/run.sh

stop:
	@bash scripts/stop.sh

# as the schema's owner, e.g. DB="host=127.0.0.1 dbname=app user=chat_owner"
migrate:
	@test -n "$(DB)" || { echo 'usage: make migrate DB="CONNINFO"' \
	    '(as the owner role, see docs/schema.md)'; exit 2; }
	@bash sql/migrate.sh "$(DB)"

# unit tests: pure C parsers, no nginx needed; UNIT_OUT keeps sanitizer
# builds (scripts/asan.sh) apart from the plain ones
UNIT_SRCS    := $(wildcard t/unit/test_*.c)
UNIT_OUT     ?= $(BUILD)/unit
UNIT_BINS    := $(patsubst t/unit/%.c,$(UNIT_OUT)/%,$(UNIT_SRCS))
UNIT_CC      ?= cc
UNIT_CFLAGS  ?= -g -O1 -Wall -Wextra -Werror
UNIT_LIBS    := -ljansson -lcrypto

$(UNIT_OUT)/%: t/unit/%.c t/unit/unit.h $(wildcard src/*.c src/*.h)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -Isrc -It/unit -o $@ $< \
	    src/ngx_http_chat_utf8.c src/ngx_http_chat_frame.c \
	    src/ngx_http_chat_jwt.c src/ngx_http_chat_request.c \
	    src/ngx_http_chat_route.c src/ngx_http_chat_message.c \
	    src/ngx_http_chat_sniff.c src/ngx_http_chat_base64url.c \
	    src/ngx_http_chat_ece.c src/ngx_http_chat_vapid.c \
	    src/ngx_http_chat_subscription.c $(UNIT_LIBS)

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do \
	    CHAT_TESTDATA=$(CURDIR)/t/data \
	    CHAT_JSON_CORPUS=$(CURDIR)/t/data/json \
	    $$t; done

test-t: module
	cd t && CHAT_MODULE=$(MODULE) $(PYTHON) -m pytest $(PYTEST_ARGS)

# the store's tests once more with its filesystem calls in nginx's
# default thread pool (t/test_upload_threads.py runs both ways anyway)
test-threads: module
	cd t && CHAT_UPLOAD_THREADS=default CHAT_MODULE=$(MODULE) \
	    $(PYTHON) -m pytest $(PYTEST_ARGS) test_uploads.py test_files.py \
	    test_review16.py test_review16f.py test_review16h.py

test: deps web-deps
	$(MAKE) module
	$(MAKE) bench/chatload
	$(MAKE) test-unit
	$(MAKE) test-t

# Node and the `ws` package for the tests of web/chat.js (t/test_chatjs.py);
# `http_ece`, the independent Web Push decryption (t/test_webpush_crypto.py);
# Debian's Chromium and playwright-core (which never downloads a browser)
# for the tests of the chat page (t/test_browser.py)
web-deps:
	@bash scripts/deps.sh chromium \
	    $$(command -v node >/dev/null || echo nodejs npm)
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
	    npm ci --no-audit --no-fund --loglevel=error

# the browser tests only, saving their screenshots into docs/screenshots/
# (committed: refreshed deliberately, not by every test run)
screenshots: deps web-deps
	$(MAKE) module
	cd t && CHAT_MODULE=$(MODULE) \
	    CHAT_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots \
	    $(PYTHON) -m pytest -q test_browser.py

test-asan: deps web-deps
	@bash scripts/asan.sh

fuzz: deps
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)

# the load generator: plain C, epoll, libcrypto for HMAC only
bench/chatload: bench/chatload.c
	$(CC) -O2 -g -Wall -Wextra -Werror -o $@ $< -lcrypto -lm

# nchan from Debian; Node from Debian unless one is installed already
bench: deps
	@bash scripts/deps.sh libnginx-mod-nchan \
	    $$(command -v node >/dev/null || echo nodejs npm)
	$(MAKE) module bench/chatload
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# The Debian package, from the module `make module` built: debian/rules
# runs in a copy under build/deb/ (dpkg-buildpackage writes its results
# into the parent directory, which must stay inside the repository).
DEB_DIR      := $(BUILD)/deb
DEB_SRC      := $(DEB_DIR)/ngx-http-chat

deb: deps
	@test -z "$(NGINX_SRC)" || { echo "make deb: Debian's nginx-dev only," \
	                                  "without NGINX_SRC"; exit 1; }
	$(MAKE) module
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)/build
	cp -a debian sql docs README.md LICENSE $(DEB_SRC)/
	cp -a $(MODULE) $(DEB_SRC)/build/
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b
	rm -rf $(DEB_SRC)
	@ls -1 $(DEB_DIR)/*.deb

clean:
	rm -rf $(BUILD) bench/chatload bench/.work
