"""`centrale` command line.

Exit codes: 0 ok, 1 runtime failure (database unreachable, schema too old), 2 invalid
config or usage, 3 migration with unsupported constructs (see `centrale migrate`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from pathlib import Path

from centrale.limits import open_files_needed, raise_open_files_limit
from config import ConfigError, load_config_with_sources
from core.logging import setup_logging
from core.settings import Settings

DEFAULT_PID_FILE = "var/centrale.pid"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "migrate":
        from config.importers.cli import migrate_main

        return migrate_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="centrale", description="Centrale contact-center server")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a node: web, ACD, IVR, voice and digital channels")
    run.add_argument("--config", help="config directory (default $CENTRALE_CONFIG or "
                     "examples/demo)")
    run.add_argument("--host", help="override server.web.host")
    run.add_argument("--port", type=int, help="override server.web.port")
    run.add_argument("--pid-file", default=None, help=f"default {DEFAULT_PID_FILE}")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check-config", help="validate a config directory")
    chk.add_argument("directory")
    chk.set_defaults(func=cmd_check_config)

    rel = sub.add_parser("reload", help="tell the running node to reload its config (SIGHUP)")
    rel.add_argument("--pid-file", default=DEFAULT_PID_FILE)
    rel.set_defaults(func=cmd_reload)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "current", "check"])
    db.add_argument("--config", help="config directory")
    db.set_defaults(func=cmd_db)

    merge = sub.add_parser("merge", help="merge customer SOURCE into TARGET (reversible)")
    merge.add_argument("source")
    merge.add_argument("target")
    merge.add_argument("--actor", default=os.environ.get("USER", "cli"))
    merge.add_argument("--reason")
    merge.add_argument("--config")
    merge.set_defaults(func=cmd_merge)

    unmerge = sub.add_parser("unmerge", help="undo a merge by its id")
    unmerge.add_argument("merge_id")
    unmerge.add_argument("--actor", default=os.environ.get("USER", "cli"))
    unmerge.add_argument("--config")
    unmerge.set_defaults(func=cmd_unmerge)

    demo = sub.add_parser("demo", help="the demo site: `centrale demo seed` adds customers "
                          "with a history (demo configs only)")
    demo.add_argument("action", choices=["seed", "guide"],
                      help="seed: customers with a history (once); guide: what to open")
    demo.add_argument("--config", help="config directory (must enable server.demo)")
    demo.add_argument("--host", help="as given to `centrale run` (for the guide's URLs)")
    demo.add_argument("--port", type=int, help="as given to `centrale run`")
    demo.add_argument("--pid-file", help=argparse.SUPPRESS)  # run-demo passes run's args
    demo.set_defaults(func=cmd_demo)

    hp = sub.add_parser("hash-password", help="print an argon2 hash for users.password_hash")
    hp.set_defaults(func=cmd_hash_password)

    sub.add_parser("migrate", help="import an Avaya or Mitel export (centrale migrate -h)")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(config_dir=getattr(args, "config", None),
                             pid_file=getattr(args, "pid_file", None))


def _load(settings: Settings):  # type: ignore[no-untyped-def]
    try:
        return load_config_with_sources(settings.config_dir)
    except ConfigError as exc:
        print(f"invalid config in {settings.config_dir}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        print(f"{len(exc.issues)} problem(s); nothing was started.", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.pid_file is None:
        settings = Settings(**{**settings.__dict__, "pid_file": DEFAULT_PID_FILE})
    loaded = _load(settings)
    if loaded is None:
        return 2
    if args.host or args.port is not None:
        web_cfg = loaded.config.server.web.model_copy(update={
            k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
        server = loaded.config.server.model_copy(update={"web": web_cfg})
        loaded = type(loaded)(loaded.config.model_copy(update={"server": server}),
                              loaded.sources, loaded.directory)
    refusal = _demo_exposed_by_the_command_line(args, loaded)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    setup_logging(loaded.config.server.log_level, settings.log_format)
    _gil_switch_interval()
    sip = loaded.config.server.sip
    raise_open_files_limit(open_files_needed(sip.enabled, sip.tcp_max_connections))
    from centrale.node import serve

    return asyncio.run(serve(settings, loaded))


# How long the event loop may keep the GIL when a database thread wants it (issue 21).
GIL_SWITCH_MS = 0.5


def _gil_switch_interval() -> None:
    """Every SQLite statement runs on an aiosqlite thread and comes back to the event
    loop: the thread needs the GIL twice per statement. CPython lets the thread holding
    the GIL keep it for `sys.getswitchinterval()` (5 ms) before handing it over, so on
    a busy node each round trip waited up to 5 ms while the loop ran on — a call's
    identification (7 statements) took a second at 100 calls/s with the loop 45 % idle
    (py-spy, docs/performance.md). 0.5 ms bounds that wait; the loop is the only thread
    that wants the CPU for long, so the extra switches cost little.
    `CENTRALE_GIL_SWITCH_MS` overrides it (5 is CPython's default)."""
    raw = os.environ.get("CENTRALE_GIL_SWITCH_MS")
    try:
        ms = float(raw) if raw else GIL_SWITCH_MS
    except ValueError:
        print(f"CENTRALE_GIL_SWITCH_MS={raw!r} is not a number; using {GIL_SWITCH_MS}",
              file=sys.stderr)
        ms = GIL_SWITCH_MS
    if ms > 0:
        sys.setswitchinterval(ms / 1000)


def _demo_exposed_by_the_command_line(args: argparse.Namespace, loaded) -> str | None:  # type: ignore[no-untyped-def]
    """The config check refuses the demo on a config that looks like production;
    `--host` can expose the node too (docker's `--host 0.0.0.0`): the same rule."""
    from config.validate import demo_refusals, looks_like_production

    if not loaded.config.server.demo.enabled or not args.host:
        return None
    reason = looks_like_production(loaded.config)
    if reason is None:
        return None
    reasons = demo_refusals(loaded.config, production_reason=f"--host {args.host}: {reason}")
    if not reasons:
        return None
    file, line = loaded.sources.find(("server", "demo", "enabled"))
    return (f"{file}:{line}: server.demo.enabled: {reasons[0]} (or CENTRALE_DEMO=false "
            "with the demo config); nothing was started.")


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_config_with_sources(args.directory)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) in {args.directory}", file=sys.stderr)
        return 2
    c = loaded.config
    print(f"{args.directory}: ok — {len(c.queues)} queues, {len(c.agents)} agents, "
          f"{len(c.flows)} flows, {len(c.numbers)} numbers, {len(c.users)} users")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    try:
        pid = int(Path(args.pid_file).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except FileNotFoundError:
        print(f"no pid file at {args.pid_file}: is centrale running here?", file=sys.stderr)
        return 1
    except (ValueError, ProcessLookupError):
        print(f"stale pid file {args.pid_file}: no such process", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to {pid}; the node keeps its config if the new one is invalid "
          "(see its log)")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from centrale.container import database_url
    from centrale.schema import SchemaError, check_schema, current_revision, upgrade
    from core.db import Database, redact_url

    settings = _settings(args)
    loaded = _load(settings)
    if loaded is None:
        return 2
    url = database_url(settings, loaded)
    if args.action == "upgrade":
        try:
            upgrade(url)
        except Exception as exc:
            print(f"upgrade failed on {redact_url(url)}: {exc}", file=sys.stderr)
            return 1
        print(f"{redact_url(url)}: schema at head")
        return 0

    async def inspect() -> int:
        db = Database(url)
        try:
            if args.action == "current":
                print(await current_revision(db) or "empty")
                return 0
            await check_schema(db)
            print("schema is current")
            return 0
        except SchemaError as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            await db.dispose()

    return asyncio.run(inspect())


def _with_container(args: argparse.Namespace, work) -> int:  # type: ignore[no-untyped-def]
    from cases import CaseError
    from centrale.container import Container
    from centrale.schema import SchemaError, check_schema

    settings = _settings(args)
    loaded = _load(settings)
    if loaded is None:
        return 2

    async def go() -> int:
        c = Container.build(settings, loaded)
        try:
            await check_schema(c.db)
            await c.bus.start()
            await work(c)
            return 0
        except (SchemaError, CaseError) as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            await c.bus.stop()
            await c.db.dispose()

    return asyncio.run(go())


def cmd_merge(args: argparse.Namespace) -> int:
    async def work(c) -> None:  # type: ignore[no-untyped-def]
        record = await c.merger.merge(args.source, args.target, actor=args.actor,
                                      reason=args.reason)
        print(f"merged {args.source} into {args.target}: merge id {record.id} "
              f"({len(record.moved_identity_ids)} identities, {len(record.moved_case_ids)} "
              f"cases moved); undo with `centrale unmerge {record.id}`")

    return _with_container(args, work)


def cmd_unmerge(args: argparse.Namespace) -> int:
    async def work(c) -> None:  # type: ignore[no-untyped-def]
        record = await c.merger.unmerge(args.merge_id, actor=args.actor)
        print(f"undid merge {record.id}: {record.source_customer_id} is separate again")

    return _with_container(args, work)


def cmd_demo(args: argparse.Namespace) -> int:
    """`centrale demo seed`: once per database (a second run writes nothing); refused
    unless the config enables the demo, so a production database never gets made-up
    customers."""
    from centrale.container import Container
    from centrale.node import prepare_database
    from centrale.schema import SchemaError
    from web.demo.seed import SeedRefused, seed_demo

    settings = _settings(args)
    loaded = _load(settings)
    if loaded is None:
        return 2
    if not loaded.config.server.demo.enabled:
        print(f"{settings.config_dir}: the config does not enable the demo "
              f"(server.demo.enabled); `centrale demo {args.action}` only runs on a demo "
              "config", file=sys.stderr)
        return 2
    if args.action == "guide":
        from web.demo.guide import guide

        web_cfg = loaded.config.server.web
        print(guide(loaded.config, host=args.host or web_cfg.host,
                    port=args.port if args.port is not None else web_cfg.port))
        return 0

    async def go() -> int:
        c = Container.build(settings, loaded)
        try:
            await prepare_database(c.db)
            await c.bus.start()
            result = await seed_demo(c.config, c.db, c.bus, c.clock)
        except SchemaError as exc:
            print(exc, file=sys.stderr)
            return 1
        except SeedRefused as exc:
            print(exc, file=sys.stderr)
            return 2
        finally:
            await c.bus.stop()
            await c.db.dispose()
        if result.created:
            print(f"demo seeded: {result.customers} customers, {result.cases} cases, "
                  f"{result.entries} timeline entries, {result.wallboard_points} wallboard "
                  "chart points")
        else:
            print("demo already seeded: nothing written")
        return 0

    return asyncio.run(go())


def cmd_hash_password(args: argparse.Namespace) -> int:
    from argon2 import PasswordHasher

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 2
    print(PasswordHasher().hash(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
