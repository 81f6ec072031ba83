#!/usr/bin/env python3
"""Checks the layering of the module's C files against docs/architecture.md.

Reads src/*.c, src/*.h (and ngx_http_chat_module.c, wherever it lives) of
the repository this script is in, with comments, string and character
literals taken out, and finds who defines and who uses every identifier
that starts with ngx_http_chat_ or NGX_HTTP_CHAT_:

  - a non-static function or global variable of ngx_http_chat_<file>.c
    belongs to <file>;
  - a macro or a static inline function of ngx_http_chat_<file>.h belongs
    to <file> (a .c file and its own header are one unit);
  - the umbrella ngx_http_chat.h is "common", below every level, and so is
    ngx_http_chat_module, the ngx_module_t every file looks its
    configuration up with.

A use is an identifier naming such a symbol in another unit; declarations
(prototypes, extern) are not uses.  Calling through a function pointer
names nothing, so that is the way up; taking the address of a higher
file's function by name still is a use.

Checks (each failure is printed; the exit status is 1 if there is any):

  direction  a file uses symbols of strictly lower levels only;
  cycle      no strongly connected component of more than one file;
  naming     an exported function or global of ngx_http_chat_<file>.c is
             named ngx_http_chat_<file>_*; a macro or inline of
             ngx_http_chat_<file>.h is ngx_http_chat_<file>_* or an
             upper-case NGX_HTTP_CHAT_* constant;
  table      every .c file has a level in the table and every file of the
             table exists.

The level table is the markdown table of docs/architecture.md whose header
names the columns "level" and "file(s)".

Usage: scripts/layering.py [--graph | --dot] [--types] [--root DIR]
"""

import argparse
import bisect
import os
import re
import sys


PREFIX = "ngx_http_chat_"
UPREFIX = "NGX_HTTP_CHAT_"
UMBRELLA = "ngx_http_chat.h"
MODULE_FILE = "ngx_http_chat_module.c"
COMMON = "common"
COMMON_LEVEL = -1
# the module's ngx_module_t: every file needs it to find its configuration
COMMON_SYMBOLS = {"ngx_http_chat_module": "module"}

# comments, then string and character literals (with escapes); newlines
# inside them are kept so that line numbers stay right
LITERAL_RE = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"'
                        r"|'(?:\\.|[^'\\\n])*'", re.S)
PP_RE = re.compile(r'^[ \t]*#(?:[^\n]*\\\n)*[^\n]*', re.M)
DEFINE_RE = re.compile(r'#\s*define\s+(\w+)')
IDENT_RE = re.compile(r'[A-Za-z_]\w*')
SYMBOL_RE = re.compile(r'\b(?:ngx_http_chat_|NGX_HTTP_CHAT_)\w*')
PUNCT_RE = re.compile(r'[{};]')
KEYWORDS = {"static", "extern", "const", "volatile", "inline", "ngx_inline",
            "struct", "union", "enum", "typedef", "unsigned", "signed",
            "register", "void", "char", "int", "long", "short", "double",
            "float"}


FP_RE = re.compile(r'\(\s*\*\s*(\w+)\s*\)')


def without_body(decl):
    """decl with the braces of a struct, union or enum body blanked."""
    b, e = decl.find("{"), decl.rfind("}")
    if b < 0 or e < b:
        return decl
    return decl[:b] + " " * (e + 1 - b) + decl[e + 1:]


def blank(m):
    return re.sub(r'[^\n]', ' ', m.group(0))


def strip_literals(text):
    """text with comments and literals turned into spaces."""
    return LITERAL_RE.sub(blank, text)


class Symbol(object):
    __slots__ = ("name", "unit", "kind", "path", "line", "static")

    def __init__(self, name, unit, kind, path, line, static):
        self.name = name
        self.unit = unit
        self.kind = kind          # function, inline, global, macro, type
        self.path = path
        self.line = line
        self.static = static


class Use(object):
    __slots__ = ("path", "line", "unit", "name", "owner")

    def __init__(self, path, line, unit, name, owner):
        self.path = path
        self.line = line
        self.unit = unit
        self.name = name
        self.owner = owner


class Source(object):
    """One C file: its text without literals, its definitions."""

    def __init__(self, path, rel, unit, header):
        self.path = path
        self.rel = rel
        self.unit = unit
        self.header = header
        with open(path, encoding="utf-8", errors="replace") as f:
            self.text = strip_literals(f.read())
        self.lines = [0] + [m.end() for m in re.finditer(r'\n', self.text)]
        self.defs = []            # Symbol
        self.decl_at = set()      # offsets of names being declared
        self.locals = set()       # static names: they shadow others
        self.uses_text = self.text
        self.parse()

    def line_of(self, offset):
        return bisect.bisect_right(self.lines, offset)

    def add(self, name, kind, offset, static):
        self.decl_at.add(offset)
        if static and not self.header:
            self.locals.add(name)
        self.defs.append(Symbol(name, self.unit, kind, self.rel,
                                self.line_of(offset), static))

    def parse(self):
        code = list(self.text)
        uses = list(self.text)
        for m in PP_RE.finditer(self.text):
            d = DEFINE_RE.match(m.group(0).lstrip())
            if d:
                self.add(d.group(1), "macro", m.start() + m.group(0).find(
                    d.group(1), m.group(0).find("define")), False)
            elif re.match(r'\s*#\s*include\b', m.group(0)):
                # an include names a file, not a symbol
                for i in range(m.start(), m.end()):
                    if uses[i] != "\n":
                        uses[i] = " "
            for i in range(m.start(), m.end()):
                if code[i] != "\n":
                    code[i] = " "
        self.uses_text = "".join(uses)
        self.toplevel("".join(code))

    def toplevel(self, code):
        """Splits the file-scope code into declarations and definitions."""
        depth, start, body = 0, 0, False
        for m in PUNCT_RE.finditer(code):
            ch, pos = m.group(0), m.start()
            if ch == "{":
                if depth == 0:
                    head = code[start:pos].rstrip()
                    if head.endswith(")") and "=" not in head:
                        self.function(head, start)
                        body = True
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and body:
                    body = False
                    start = pos + 1
            elif ch == ";" and depth == 0:
                self.declaration(code[start:pos], start)
                start = pos + 1

    def function(self, head, offset):
        paren = head.find("(")
        names = list(IDENT_RE.finditer(head, 0, paren))
        if not names:
            return
        name = names[-1]
        static = re.search(r'\bstatic\b', head) is not None
        inline = static and re.search(r'\b(?:ngx_)?inline\b', head)
        self.add(name.group(0), "inline" if inline else "function",
                 offset + name.start(), static)

    def declaration(self, decl, offset):
        static = re.search(r'\bstatic\b', decl) is not None
        if re.match(r'\s*typedef\b', decl):
            self.typedef(decl, offset)
            return
        # tags and enum constants of a struct, union or enum definition
        tag = re.match(r'\s*(?:struct|union|enum)\s+(\w+)\s*\{', decl)
        if tag:
            self.add(tag.group(1), "type", offset + tag.start(1), False)
        if re.search(r'\benum\b', decl):
            self.enum_constants(decl, offset)
        outer = decl
        eq = decl.find("=")
        if eq < 0 or eq > decl.find("{"):
            # declarators follow the closing brace of an aggregate type;
            # an initializer's braces follow "="
            outer = without_body(decl)
        if re.search(r'\bextern\b', outer):
            kind = None
        else:
            kind = "global"
        eq = outer.find("=")
        head = outer if eq < 0 else outer[:eq]
        paren = head.find("(")
        fp = FP_RE.search(head)
        if fp and fp.start() == paren:
            # a pointer to a function: a variable
            if kind is None:
                self.decl_at.add(offset + fp.start(1))
            else:
                self.add(fp.group(1), kind, offset + fp.start(1), static)
            return
        if paren >= 0:
            # a prototype: its name is declared, not used
            names = list(IDENT_RE.finditer(head, 0, paren))
            if names:
                n = names[-1]
                self.decl_at.add(offset + n.start())
                if static:
                    self.locals.add(n.group(0))
            return
        for part in self.declarators(head):
            start, name = part
            if kind is None:
                self.decl_at.add(offset + start)
            else:
                self.add(name, kind, offset + start, static)

    @staticmethod
    def declarators(head):
        """(offset, name) of each declarator of a declaration head."""
        out, pos = [], 0
        for piece in head.split(","):
            # the last identifier outside [...] is the declarator; the
            # first piece has a type before it
            cut = piece.find("[")
            idents = list(IDENT_RE.finditer(piece, 0,
                                            cut if cut >= 0 else len(piece)))
            tag = len(idents) >= 2 \
                and idents[-2].group(0) in ("struct", "union", "enum")
            if idents and idents[-1].group(0) not in KEYWORDS and not tag \
               and (len(idents) >= 2 or out):
                out.append((pos + idents[-1].start(), idents[-1].group(0)))
            pos += len(piece) + 1
        return out

    def typedef(self, decl, offset):
        outer = without_body(decl)
        fp = FP_RE.search(outer)
        if fp and "{" not in decl:
            self.add(fp.group(1), "type", offset + fp.start(1), False)
            return
        tag = re.match(r'\s*typedef\s+(?:struct|union|enum)\s+(\w+)', decl)
        if tag and "{" in decl:
            self.add(tag.group(1), "type", offset + tag.start(1), False)
        elif tag:
            # typedef struct x_s x_t: the tag is named, not defined here
            self.decl_at.add(offset + tag.start(1))
        if re.search(r'\benum\b', decl):
            self.enum_constants(decl, offset)
        tail = decl.rfind("}")
        names = list(IDENT_RE.finditer(outer, tail + 1 if tail >= 0 else 0))
        if names:
            n = names[-1]
            self.add(n.group(0), "type", offset + n.start(), False)

    def enum_constants(self, decl, offset):
        b, e = decl.find("{"), decl.rfind("}")
        if b < 0 or e < b:
            return
        for m in re.finditer(r'(?:^|,)\s*(\w+)', decl[b + 1:e]):
            self.add(m.group(1), "type", offset + b + 1 + m.start(1), False)


def unit_of(name):
    """The file a source belongs to: ngx_http_chat_ws.c -> ws."""
    if name == UMBRELLA:
        return COMMON
    m = re.match(r'ngx_http_chat_(\w+)\.[ch]$', name)
    return m.group(1) if m else None


def load(root):
    """Sources of the repository at root."""
    paths = []
    src = os.path.join(root, "src")
    for name in sorted(os.listdir(src)) if os.path.isdir(src) else []:
        if name.endswith(".c") or name.endswith(".h"):
            paths.append(os.path.join(src, name))
    top = os.path.join(root, MODULE_FILE)
    if os.path.exists(top):
        paths.append(top)
    sources = []
    for p in paths:
        name = os.path.basename(p)
        unit = unit_of(name)
        if unit is None:
            continue
        sources.append(Source(p, os.path.relpath(p, root), unit,
                              name.endswith(".h")))
    return sources


class Model(object):
    """Who defines and who uses what."""

    def __init__(self, sources, types=False):
        self.sources = sources
        self.symbols = {}
        self.duplicates = []
        self.uses = []
        self.types = types
        for s in sources:
            for d in s.defs:
                if not self.owned(s, d):
                    continue
                old = self.symbols.get(d.name)
                if old is not None and old.unit != d.unit:
                    self.duplicates.append((old, d))
                    continue
                self.symbols.setdefault(d.name, d)
        for name in COMMON_SYMBOLS:
            d = self.symbols.get(name)
            if d is not None:
                self.symbols[name] = Symbol(name, COMMON, d.kind, d.path,
                                            d.line, d.static)
        for s in sources:
            self.scan(s)

    def owned(self, src, d):
        """Whether a definition is visible to other files."""
        if not (d.name.startswith(PREFIX) or d.name.startswith(UPREFIX)):
            return False
        if src.header:
            if d.kind in ("macro", "inline"):
                return True
            return d.kind == "type" and self.types
        return d.kind in ("function", "global") and not d.static

    def scan(self, s):
        text = s.uses_text
        for m in SYMBOL_RE.finditer(text):
            name = m.group(0)
            sym = self.symbols.get(name)
            if sym is None or sym.unit == s.unit:
                continue
            if COMMON_SYMBOLS.get(name) == s.unit:
                continue          # the module file defines it
            if m.start() in s.decl_at or name in s.locals:
                continue
            before = text[max(0, m.start() - 2):m.start()]
            if before.endswith(".") or before == "->":
                continue
            self.uses.append(Use(s.rel, s.line_of(m.start()), s.unit, name,
                                 sym.unit))

    def units(self):
        return sorted({s.unit for s in self.sources})

    def c_units(self):
        return sorted({s.unit for s in self.sources if not s.header})

    def edges(self):
        """{(caller, owner): number of uses}"""
        out = {}
        for u in self.uses:
            out[(u.unit, u.owner)] = out.get((u.unit, u.owner), 0) + 1
        return out


# ---------------------------------------------------------------------------
# the level table

def cells(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def parse_levels(doc):
    """{file: level} from the level table of a markdown document."""
    with open(doc, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        head = [c.lower() for c in cells(line)]
        lcol = [j for j, c in enumerate(head) if c.startswith("level")]
        fcol = [j for j, c in enumerate(head) if c.startswith("file")]
        if not lcol or not fcol:
            continue
        levels = {}
        for row in lines[i + 2:]:
            if not row.lstrip().startswith("|"):
                break
            c = cells(row)
            m = re.match(r'\s*(\d+)', c[lcol[0]])
            if not m:
                raise ValueError("%s: no level number in %r" % (doc, row))
            for f in c[fcol[0]].split(","):
                f = f.replace("`", "").strip()
                f = re.sub(r'^(?:src/)?ngx_http_chat_', '', f)
                f = re.sub(r'\.c$', '', f)
                if not re.match(r'^[a-z0-9_]+$', f):
                    raise ValueError("%s: bad file name %r in %r"
                                     % (doc, f, row))
                if f in levels:
                    raise ValueError("%s: %s has two levels" % (doc, f))
                levels[f] = int(m.group(1))
        return levels
    raise ValueError("%s: no table with columns level and file(s)" % doc)


# ---------------------------------------------------------------------------
# the checks

def direction(model, levels):
    out = []
    for u in model.uses:
        if u.owner == COMMON:
            continue
        lc = COMMON_LEVEL if u.unit == COMMON else levels.get(u.unit)
        lo = levels.get(u.owner)
        if lc is None or lo is None:
            continue          # reported by the table check
        if lo >= lc:
            out.append((u, lc, lo))
    return out


def cycles(model):
    """Strongly connected components of more than one unit (Tarjan)."""
    graph = {}
    for (a, b) in model.edges():
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        # iterative, so that no recursion limit is in the way
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def naming(model):
    out = []
    for s in model.sources:
        if s.unit == COMMON:
            continue
        own = PREFIX + s.unit
        for d in s.defs:
            if not (d.name.startswith(PREFIX) or d.name.startswith(UPREFIX)):
                continue
            if d.name == own or d.name.startswith(own + "_"):
                continue
            if s.header:
                if d.kind == "macro" and d.name.startswith(UPREFIX):
                    continue
                if d.kind not in ("macro", "inline"):
                    continue
            elif d.kind not in ("function", "global") or d.static:
                continue
            out.append(d)
    return out


def table(model, levels):
    out = []
    for u in model.c_units():
        if u != COMMON and u not in levels:
            out.append("%s.c has no level in the table" % (PREFIX + u))
    for u in model.units():
        if u != COMMON and u not in levels and u not in model.c_units():
            out.append("%s.h has no level in the table" % (PREFIX + u))
    for f in sorted(levels):
        if f not in model.c_units():
            out.append("%s is in the table but %s.c does not exist"
                       % (f, PREFIX + f))
    return out


class Report(object):
    def __init__(self, root, doc=None, types=False):
        self.root = root
        self.doc = doc or os.path.join(root, "docs", "architecture.md")
        self.model = Model(load(root), types)
        self.levels = parse_levels(self.doc)
        self.direction = direction(self.model, self.levels)
        self.cycles = cycles(self.model)
        self.naming = naming(self.model)
        self.table = table(self.model, self.levels)

    def failed(self):
        return bool(self.direction or self.cycles or self.naming
                    or self.table or self.model.duplicates)

    def level(self, unit):
        if unit == COMMON:
            return COMMON_LEVEL
        return self.levels.get(unit)

    def lines_direction(self):
        return ["%s:%d: %s (level %d) uses %s of %s (level %d)"
                % (u.path, u.line, u.unit, lc, u.name, u.owner, lo)
                for u, lc, lo in self.direction]

    def lines_naming(self):
        return ["%s:%d: %s %s is not named %s%s_*"
                % (d.path, d.line, d.kind, d.name, PREFIX, d.unit)
                for d in self.naming]

    def lines_cycles(self):
        return ["cycle of %d files: %s" % (len(c), ", ".join(c))
                for c in self.cycles]

    def lines_duplicates(self):
        return ["%s:%d: %s is also defined in %s:%d"
                % (b.path, b.line, b.name, a.path, a.line)
                for a, b in self.model.duplicates]


def main(argv=None):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(
        description="Check the layering of src/ against docs/architecture.md")
    ap.add_argument("--root", default=here, help="the repository")
    ap.add_argument("--doc", help="the level table (docs/architecture.md)")
    ap.add_argument("--graph", action="store_true",
                    help="print the file graph: edges with use counts")
    ap.add_argument("--dot", action="store_true",
                    help="print the file graph for Graphviz")
    ap.add_argument("--types", action="store_true",
                    help="count types and enum constants of per-file "
                         "headers as symbols too")
    args = ap.parse_args(argv)

    r = Report(args.root, args.doc, args.types)
    edges = r.model.edges()
    bad = {(u.unit, u.owner) for u, _, _ in r.direction}

    if args.graph:
        for (a, b), n in sorted(edges.items(),
                                key=lambda e: (r.level(e[0][0]) or 0,
                                               e[0][0], e[0][1])):
            la, lb = r.level(a), r.level(b)
            print("%-10s %3s -> %-10s %3s  %4d%s"
                  % (a, la, b, lb, n, "  UP" if (a, b) in bad else ""))
        return 0

    if args.dot:
        print("digraph layering {")
        print("    rankdir=BT; node [shape=box];")
        ranks = {}
        for u in r.model.units():
            ranks.setdefault(r.level(u), []).append(u)
        for lv in sorted(ranks, key=lambda x: -99 if x is None else x):
            print("    { rank=same; %s }  /* level %s */"
                  % ("; ".join('"%s"' % u for u in ranks[lv]), lv))
        for (a, b), n in sorted(edges.items()):
            if b == COMMON and (a, b) not in bad:
                continue          # every file uses it: noise in a drawing
            attr = ' color=red' if (a, b) in bad else ''
            print('    "%s" -> "%s" [label=%d%s];' % (a, b, n, attr))
        print("}")
        return 0

    out = []
    if r.table:
        out.append("table:")
        out.extend("  " + x for x in r.table)
    if r.model.duplicates:
        out.append("defined twice:")
        out.extend("  " + x for x in r.lines_duplicates())
    if r.direction:
        out.append("direction: %d uses of a file at the same or a higher "
                   "level" % len(r.direction))
        out.extend("  " + x for x in r.lines_direction())
        by = {}
        refs = set()
        for u, _, _ in r.direction:
            by[u.unit] = by.get(u.unit, 0) + 1
            refs.add((u.unit, u.name))
        out.append("  by caller: " + ", ".join(
            "%s %d" % (k, by[k]) for k in sorted(by, key=lambda k: -by[k])))
        out.append("  distinct (caller, symbol) references: %d" % len(refs))
    if r.cycles:
        out.append("cycles:")
        out.extend("  " + x for x in r.lines_cycles())
    if r.naming:
        out.append("naming: %d" % len(r.naming))
        out.extend("  " + x for x in r.lines_naming())
    if out:
        print("\n".join(out))
        return 1
    print("layering: %d files, %d cross-file edges, no violation"
          % (len(r.model.c_units()), len(edges)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
