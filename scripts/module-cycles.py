#!/usr/bin/env python3
"""Prints the import cycles between host modules (`crate::…` and `super::…` uses outside
`#[cfg(test)]`), one strongly connected component per line; exits 1 if there is any.

The host's modules are meant to stack in one direction (model <- store <- capabilities <-
runtime <- registry <- triggers/workflows <- admin <- server); this finds where they do not.
Usage: scripts/module-cycles.py [host/src]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "host", "src")
os.chdir(root)


def module_of(path):
    name = path[:-3]
    if name.endswith("/mod"):
        name = name[: -len("/mod")]
    return name.replace("/", "::")


def resolve(parts):
    """The longest existing module prefix of a `crate::a::b::…` path."""
    for n in range(len(parts), 0, -1):
        base = "/".join(parts[:n])
        if os.path.exists(base + ".rs") or os.path.exists(base + "/mod.rs"):
            return "::".join(parts[:n])
    return None


graph = {}
for dirpath, _, files in os.walk("."):
    for file in files:
        if not file.endswith(".rs"):
            continue
        path = os.path.join(dirpath, file)[2:]
        me = module_of(path)
        source = open(path).read()
        cut = source.find("#[cfg(test)]")
        if cut >= 0:
            source = source[:cut]
        deps = set()
        for chain in re.findall(r"crate((?:::[a-z_][a-z0-9_]*)+)", source):
            dep = resolve(chain.strip(":").split("::"))
            if dep:
                deps.add(dep)
        parent = me.rsplit("::", 1)[0] if "::" in me else ""
        for chain in re.findall(r"super((?:::[a-z_][a-z0-9_]*)+)", source):
            base = parent.split("::") if parent else []
            dep = resolve(base + chain.strip(":").split("::")) if base else resolve(chain.strip(":").split("::"))
            if dep:
                deps.add(dep)
        # A module depends on its own children by declaring them; that is not a cycle.
        graph[me] = {d for d in deps if d != me and not d.startswith(me + "::")}

# Fold submodules into their top-level module's node when both sides are in one file tree?
# No: report file-level modules, which is what one reads and moves.
sys.setrecursionlimit(10000)
index, low, stack, on_stack, components = {}, {}, [], set(), []
counter = [0]


def connect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
        if w not in graph:
            continue
        if w not in index:
            connect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1:
            components.append(sorted(component))


for v in sorted(graph):
    if v not in index:
        connect(v)
for component in components:
    print("cycle:", " ".join(component))
sys.exit(1 if components else 0)
