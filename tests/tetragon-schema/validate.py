#!/usr/bin/env python3
"""Checks vigil's JSON events against Tetragon's schema, strictly.

Compiles Tetragon's .proto files (../shared/testdata/tetragon-api/ beside the repository, or
--api) with grpcio-tools' protoc into a descriptor set, once, then parses every JSON line of
the files given (or stdin) as protojson of `tetragon.GetEventsResponse` with unknown fields
refused. Before parsing, the additions vigil documents (vigil-additions.json, next to this
script) are removed from each event; anything else Tetragon's schema lacks is a failure.

A failing line is parsed again without the field protobuf refused, until it parses, so every
difference of the line is listed, not only the first. Prints each failing line with its event
kind and protobuf's messages, then the failures grouped by kind and reason, and exits 1 when
any line failed (2 when the tools or the schema are missing).

Needs the `grpcio-tools` and `protobuf` wheels on PYTHONPATH: `make test-deps` unpacks them
into target/tools/tetragon-schema-py/cpXY (used when PYTHONPATH does not provide them).
"""

import argparse
import collections
import json
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Differences listed per line at most; a line has a few dozen fields.
MAX_ROUNDS = 64


def setup_error(msg):
    """Exits with status 2: the check could not run."""
    print(msg, file=sys.stderr)
    sys.exit(2)


def import_protobuf():
    """Imports grpc_tools and protobuf, from PYTHONPATH or else from make test-deps' directory."""
    try:
        import grpc_tools.protoc  # noqa: F401
        import google.protobuf.json_format  # noqa: F401
    except ImportError:
        tag = "cp%d%d" % sys.version_info[:2]
        sys.path.insert(0, os.path.join(REPO, "target", "tools", "tetragon-schema-py", tag))
        for name in [m for m in sys.modules if m == "google" or m.startswith(("google.", "grpc_tools"))]:
            del sys.modules[name]
        try:
            import grpc_tools.protoc  # noqa: F401
            import google.protobuf.json_format  # noqa: F401
        except ImportError as e:
            setup_error(
                f"validate.py: cannot import grpcio-tools and protobuf ({e}): run make test-deps "
                f"(it unpacks them into target/tools/tetragon-schema-py/{tag}, for PYTHONPATH)"
            )


def compile_schema(api_dir):
    """The GetEventsResponse class, from Tetragon's protos compiled by grpcio-tools' protoc."""
    import grpc_tools
    from grpc_tools import protoc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    events = os.path.join(api_dir, "tetragon", "events.proto")
    if not os.path.isfile(events):
        setup_error(f"validate.py: no {events}: Tetragon's API protos are missing (--api)")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="tetragon-schema-") as tmp:
        out = os.path.join(tmp, "tetragon.desc")
        rc = protoc.main(
            [
                "protoc",
                f"--proto_path={api_dir}",
                f"--proto_path={well_known}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                "tetragon/events.proto",
            ]
        )
        if rc != 0:
            setup_error(f"validate.py: protoc failed ({rc}) on {events}")
        with open(out, "rb") as f:
            files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in files.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tetragon.GetEventsResponse"))


def load_additions(path):
    """[(path segments, path, reason)] from the additions file, checked."""
    with open(path) as f:
        doc = json.load(f)
    out = []
    for i, a in enumerate(doc["additions"]):
        p, reason = a.get("path"), a.get("reason")
        if not isinstance(p, str) or not p or not isinstance(reason, str) or not reason.strip():
            setup_error(f"validate.py: {path}: addition {i} needs a non-empty path and reason")
        segs = p.split(".")
        if segs[-1] == "*" or "" in segs:
            setup_error(f"validate.py: {path}: addition {p!r}: empty segment or final *")
        out.append((segs, p, reason))
    return out


def remove(node, segs):
    """Removes the fields at `segs` below `node` (lists crossed element by element, `*` any
    key, `a|b` either key); returns how many were removed."""
    if isinstance(node, list):
        return sum(remove(n, segs) for n in node)
    if not isinstance(node, dict):
        return 0
    head, rest = segs[0], segs[1:]
    keys = list(node) if head == "*" else [k for k in head.split("|") if k in node]
    if not rest:
        for k in keys:
            del node[k]
        return len(keys)
    return sum(remove(node[k], rest) for k in keys)


def kind_of(event, kinds):
    """The event key of `event`: one of `kinds` (Tetragon's and vigil's own)."""
    if not isinstance(event, dict):
        return "(not an object)"
    found = [k for k in event if k in kinds]
    return ",".join(found) if found else "(no event key)"


# protobuf's messages name the field at fault: `... at "GetEventsResponse.a.b[0]".` (unknown
# field: the message holding it) or `... at GetEventsResponse.a.b[0].c.` (a value).
UNKNOWN = re.compile(r'has no field named "([^"]+)" at "([^"]*)"')
AT = re.compile(r" at ([A-Za-z_][\w.\[\]]*?)\.?$")
STEP = re.compile(r"([^.\[\]]+)|\[(\d+|[^\]]*)\]")


def fault_path(msg):
    """The JSON path of the field a message blames, as keys and indexes, or None."""
    first = msg.splitlines()[0] if msg else ""
    m = UNKNOWN.search(first)
    if m:
        where, field = m.group(2), m.group(1)
        dotted = f"{where}.{field}" if where else field
    else:
        m = AT.search(first)
        if not m:
            return None
        dotted = m.group(1)
    steps = []
    for name, index in STEP.findall(dotted):
        steps.append(name if name else (int(index) if index.isdigit() else index))
    if steps and steps[0] == "GetEventsResponse":
        steps = steps[1:]
    return steps or None


def drop(event, steps):
    node = event
    for s in steps[:-1]:
        try:
            node = node[s]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del node[steps[-1]]
        return True
    except (KeyError, IndexError, TypeError):
        return False


def generic(msg):
    """A message with its array indexes removed, for grouping."""
    return re.sub(r"\[\d+\]", "[]", msg)


CHAIN = re.compile(r"Failed to parse (\w+) field: ")


def chain_paths(node, names, prefix):
    """Every path below `node` whose keys are `names` (list indexes crossed)."""
    if not names:
        return [prefix]
    if isinstance(node, list):
        return [p for i, n in enumerate(node) for p in chain_paths(n, names, prefix + [i])]
    if isinstance(node, dict) and names[0] in node:
        return chain_paths(node[names[0]], names[1:], prefix + [names[0]])
    return []


def explain(msg, event):
    """protobuf's message as one line naming the field, and the paths of the fields to drop
    before parsing again. Messages name the field with ` at <path>`, or else only with their
    chain of `Failed to parse <field> field:` (no event key, no indexes): then every field of
    the event along that chain is dropped."""
    first = msg.splitlines()[0] if msg else "(no message)"
    names = []
    while m := CHAIN.match(first):
        names.append(m.group(1))
        first = first[m.end():]
    first = first.rstrip(".")
    steps = fault_path(first)
    if steps:
        return first, [steps]
    if not names:
        return first, []
    paths = chain_paths(event, names, [])
    for key, body in event.items():
        paths += chain_paths(body, names, [key])
    return f"{'.'.join(names)}: {first}", paths


def order(path):
    """Sorts paths with indexes as numbers."""
    return [(0, s, "") if isinstance(s, int) else (1, 0, s) for s in path]


def check(event, cls, json_format):
    """protobuf's messages for `event` (empty when it parses), one per difference."""
    problems = []
    for _ in range(MAX_ROUNDS):
        try:
            json_format.Parse(json.dumps(event), cls(), ignore_unknown_fields=False)
            return problems
        except json_format.ParseError as e:
            msg = str(e)
        except Exception as e:  # noqa: BLE001 - any refusal is a failure
            msg = f"{type(e).__name__}: {e}"
        text, paths = explain(msg, event)
        problems.append(text)
        # Deepest first, so that dropping one does not move the indexes of the next.
        dropped = [drop(event, p) for p in sorted(paths, key=order, reverse=True)]
        if not any(dropped):
            return problems
    problems.append(f"(more than {MAX_ROUNDS} differences; stopped)")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="JSON-lines files (default: stdin)")
    ap.add_argument(
        "--api",
        default=os.environ.get("TETRAGON_API_DIR")
        or os.path.join(os.path.dirname(REPO), "shared", "testdata", "tetragon-api"),
        help="the directory holding tetragon/events.proto",
    )
    ap.add_argument("--additions", default=os.path.join(HERE, "vigil-additions.json"))
    ap.add_argument("--max-shown", type=int, default=20, help="failing lines printed (the summary counts all)")
    args = ap.parse_args()

    import_protobuf()
    from google.protobuf import json_format

    cls = compile_schema(os.path.abspath(args.api))
    additions = load_additions(args.additions)
    kinds = {f.name for f in cls.DESCRIPTOR.oneofs_by_name["event"].fields}
    kinds |= {segs[0] for segs, _, _ in additions if len(segs) == 1}

    total = 0
    per_kind = collections.Counter()
    failed_kind = collections.Counter()
    reasons = collections.Counter()
    removed = collections.Counter()
    shown = 0
    sources = [("<stdin>", sys.stdin)]
    if args.files:
        try:
            sources = [(f, open(f, encoding="utf-8", errors="replace")) for f in args.files]
        except OSError as e:
            setup_error(f"validate.py: {e}")
    for name, stream in sources:
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            total += 1
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                event, problems, kind = None, [f"not JSON: {e}"], "(not JSON)"
            if event is not None:
                kind = kind_of(event, kinds)
                for segs, path, _ in additions:
                    n = remove(event, segs) if isinstance(event, dict) else 0
                    if n:
                        removed[path] += n
                problems = check(event, cls, json_format)
                if kind == "(no event key)":
                    problems.insert(0, "no event key: an event has exactly one (process_exec, ...)")
            per_kind[kind] += 1
            if not problems:
                continue
            failed_kind[kind] += 1
            for p in problems:
                reasons[(kind, generic(p))] += 1
            if shown < args.max_shown:
                shown += 1
                print(f"FAIL {name}:{lineno} [{kind}]")
                for p in problems:
                    print(f"  {p}")
                print(f"  line: {line if len(line) <= 1500 else line[:1500] + '...'}")
    failed = sum(failed_kind.values())
    if failed > shown:
        print(f"({failed - shown} more failing lines not shown; --max-shown)")

    print(f"\nTetragon schema (GetEventsResponse, strict): {total} events, {failed} failed")
    for kind in sorted(per_kind):
        print(f"  {kind}: {per_kind[kind]} events, {failed_kind[kind]} failed")
    if reasons:
        print("differences (kind, protobuf's message, lines):")
        for (kind, msg), n in sorted(reasons.items(), key=lambda r: (r[0][0], -r[1], r[0][1])):
            print(f"  [{kind}] {n:6}x  {msg}")
    if removed:
        print("vigil's documented additions removed before parsing (vigil-additions.json):")
        for _, path, _ in additions:
            if removed[path]:
                print(f"  {path}: {removed[path]}")
    if total == 0:
        print("no events to check")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
