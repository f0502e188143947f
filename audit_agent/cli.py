"""Command line: argparse sub-commands wired to the pipeline; no logic beyond wiring.

Exit codes: 0 compliant (nothing at or above --fail-on), 1 findings at or above
--fail-on, 2 usage, configuration or input error, 3 audit incomplete (only with
--fail-on-incomplete).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from audit_agent import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3
SEVERITIES = ("info", "low", "medium", "high", "critical", "never")
LANGS = ("en", "zh-CN")
REPORT_FORMATS = (("html", "HTML report"), ("markdown", "Markdown report"), ("junit", "JUnit XML"),
                  ("sarif", "SARIF 2.1.0"))


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: left to find it, it imports shutil (and bz2 and lzma
    with it) for every parser, on every run, though only --help prints anything."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else terminal_columns() - 2)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80      # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):                                # no stdout at all, or not a tty
        return 80


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `command` (a sub-command's name) only that sub-command is built: a scan from
    cron need not build (~10 ms) the parsers of the eight commands it does not run."""
    parser = _Parser(prog="audit-agent",
                     description="Find hidden cryptocurrency-mining workloads and write audit reports.")
    parser.add_argument("--version", action="version", version=f"audit-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add in COMMANDS.items():
        if command is None or command == name:
            add(commands)
    return parser


def command_in(argv: list[str]) -> str | None:
    """The sub-command `argv` names, when it is one (it comes first: no global option takes a value)."""
    first = argv[0] if argv else ""
    return first if first in COMMANDS else None


def add_scan_command(commands: Any) -> None:
    scan = commands.add_parser("scan", help="scan this host (or a saved snapshot) and report")
    add_collect_options(scan)
    scan.add_argument("--snapshot", metavar="FILE", help="evaluate a saved snapshot instead of this host")
    add_evaluate_options(scan)
    add_report_outputs(scan)
    scan.add_argument("--fail-on", choices=SEVERITIES, default=None,
                      help="exit 1 when a counted finding is at or above this severity (default: high)")
    scan.add_argument("--fail-on-incomplete", action="store_true", help="exit 3 when the audit is incomplete")
    scan.add_argument("--filing-drafts", metavar="DIR",
                      help="write a pre-filled filing draft (YAML + en/zh-CN HTML) per unfiled research system here")
    scan.add_argument("-q", "--quiet", action="store_true", help="no terminal summary or progress (for cron)")
    add_sign_option(scan)
    add_event_outputs(scan)
    scan.set_defaults(handler=cmd_scan)


def add_collect_command(commands: Any) -> None:
    collect = commands.add_parser("collect", help="collect a snapshot of this host's raw evidence")
    add_collect_options(collect)
    collect.add_argument("--rules", metavar="DIR", help="rule pack (its signature strings drive the binary scan)")
    collect.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the snapshot JSON")
    collect.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    collect.add_argument("--keep-secrets", action="store_true",
                         help="keep pool passwords, tokens and URL credentials of other users' command lines "
                              "and files in the snapshot (redacted by default)")
    collect.set_defaults(handler=cmd_collect)


def add_report_command(commands: Any) -> None:
    report = commands.add_parser("report", help="re-render a saved JSON report without rescanning")
    report.add_argument("report", metavar="REPORT.json")
    report.add_argument("--config", metavar="FILE",
                        help="fill the institution's profile from this config (a report saved without one)")
    add_report_outputs(report, json_output=False)
    report.set_defaults(handler=cmd_report)


def add_filing_command(commands: Any) -> None:
    filing = commands.add_parser("filing", help="filings of research systems: draft them from a report")
    filing_commands = filing.add_subparsers(dest="filing_command", metavar="ACTION", required=True)
    draft = filing_commands.add_parser("draft", help="write a pre-filled filing per unfiled research system")
    draft.add_argument("report", metavar="REPORT.json")
    draft.add_argument("--out", required=True, metavar="DIR", help="where the drafts go (created if missing)")
    draft.set_defaults(handler=cmd_filing_draft)


def add_demo_command(commands: Any) -> None:
    demo = commands.add_parser("demo", help="render the reports of the demo snapshots in seeds/")
    demo.add_argument("--out", default="audit-agent-demo", metavar="DIR", help="output directory")
    demo.add_argument("--lang", choices=LANGS, default="en")
    demo.set_defaults(handler=cmd_demo)


def add_rules_command(commands: Any) -> None:
    rules = commands.add_parser("rules", help="list, validate or update rule packs")
    rule_commands = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    validate = rule_commands.add_parser("validate", help="validate a pack and run every rule's examples")
    validate.add_argument("path", nargs="?", help="pack directory or YAML file (default: the installed pack)")
    validate.add_argument("--tuning", metavar="DIR", help="also validate this rules.d overlay (default: "
                          "$AUDIT_AGENT_TUNING_DIR, else /etc/audit-agent/rules.d, when it exists)")
    validate.set_defaults(handler=cmd_rules_validate)
    listing = rule_commands.add_parser("list", help="list every rule id the engine can emit (pack and coded checks)")
    listing.add_argument("--rules", metavar="DIR")
    listing.add_argument("--lang", choices=LANGS, default="en")
    listing.set_defaults(handler=cmd_rules_list)
    show = rule_commands.add_parser("show", help="explain one rule: what it detects, its source, examples")
    show.add_argument("rule_id", metavar="ID")
    show.add_argument("--rules", metavar="DIR")
    show.add_argument("--lang", choices=LANGS, default="en")
    show.set_defaults(handler=cmd_rules_show)
    update = rule_commands.add_parser("update", help="verify a signed rule pack (URL or file) and install it")
    update.add_argument("source", nargs="?", metavar="URL_OR_FILE", help="the pack archive (.tar.gz)")
    update.add_argument("--url", help=argparse.SUPPRESS)          # older spelling of the source
    update.add_argument("--signature", metavar="URL_OR_FILE", help="its signature (default: SOURCE.sig)")
    update.add_argument("--key", metavar="FILE", help="pinned public key (default: $AUDIT_AGENT_UPDATE_KEY, "
                        "else /etc/audit-agent/update-key.pub)")
    update.add_argument("--sha256", help="also require this SHA-256 of the archive")
    update.add_argument("--rules-dir", metavar="DIR", help="where the active pack lives (default: state dir)")
    update.add_argument("--force", action="store_true",
                        help="install even below the pack's rule floor, past its version jump limit, or a held-back version")
    update.set_defaults(handler=cmd_rules_update)
    rollback = rule_commands.add_parser("rollback", help="go back to the previous rule pack")
    rollback.add_argument("--rules-dir", metavar="DIR", help="where the active pack lives (default: state dir)")
    rollback.set_defaults(handler=cmd_rules_rollback)
    keygen = rule_commands.add_parser("keygen", help="make the institution's pack signing key pair")
    keygen.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.key (secret) and PREFIX.pub")
    keygen.add_argument("--comment", default="", help="text after the public key (e.g. the institution)")
    keygen.set_defaults(handler=cmd_rules_keygen)
    sign = rule_commands.add_parser("sign", help="validate a pack directory, archive and sign it")
    sign.add_argument("pack", metavar="DIR_OR_ARCHIVE", help="a pack directory, or an existing .tar.gz to sign")
    sign.add_argument("--key", required=True, metavar="FILE", help="the secret key from `rules keygen`")
    sign.add_argument("-o", "--output", metavar="FILE", help="archive to write (default: NAME-VERSION.tar.gz)")
    sign.set_defaults(handler=cmd_rules_sign)


def add_watch_command(commands: Any) -> None:
    watch = commands.add_parser("watch", help="scan repeatedly and report changes")
    add_collect_options(watch)
    add_evaluate_options(watch)
    watch.add_argument("--interval", type=float, default=300.0, metavar="SECONDS")
    watch.add_argument("--once", action="store_true", help="run a single cycle (for timers)")
    watch.add_argument("--state", metavar="FILE", help="state file (default /var/lib/audit-agent/state.json)")
    watch.add_argument("--textfile-dir", metavar="DIR", help="write Prometheus textfile metrics here")
    watch.add_argument("--push", metavar="URL", help="POST each JSON report to this URL")
    watch.add_argument("--push-token-file", metavar="FILE",
                       help="bearer token for --push (must not be readable by other users)")
    watch.add_argument("--insecure", action="store_true",
                       help="allow sending the push token over plain http (it can be read on the wire)")
    watch.add_argument("--spool-dir", metavar="DIR", help="where undelivered reports wait")
    watch.add_argument("--max-spool", type=int, default=100, metavar="N",
                       help="keep at most N undelivered reports; the oldest is dropped (default 100)")
    watch.add_argument("--events", default="text", metavar="text|json|FILE",
                       help="print change events as one-line text or JSON lines; a FILE gets them as ECS JSON "
                            "lines (one per finding change and per verdict change)")
    watch.add_argument("--syslog", metavar="TARGET", help="also send each change as RFC 5424 syslog: unix:/dev/log "
                       "(or a socket path) or udp:127.0.0.1:PORT")
    watch.add_argument("--json", metavar="PATH", help="write the latest JSON report here")
    watch.add_argument("--html", metavar="DIR",
                       help="write the signable HTML report of each cycle here, named HOST-YYYY-MM-DD.html")
    watch.add_argument("--lang", choices=LANGS, default="en", help="language of the --html report")
    watch.add_argument("--full-every", type=int, default=10, metavar="N",
                       help="re-read every process in full every N cycles; between them only processes the "
                            "kernel reports as new or changed (default 10)")
    watch.add_argument("--slow-every", type=int, default=10, metavar="N",
                       help="run the hidden-process and persistence checks every N cycles (default 10)")
    watch.add_argument("-q", "--quiet", action="store_true")
    add_sign_option(watch)
    watch.set_defaults(handler=cmd_watch)


def add_fleet_command(commands: Any) -> None:
    fleet = commands.add_parser("fleet", help="merge many hosts' JSON reports into a fleet report")
    fleet.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE")
    fleet.add_argument("--html", metavar="PATH")
    fleet.add_argument("--json", metavar="PATH")
    fleet.add_argument("--lang", choices=LANGS, default="en")
    fleet.add_argument("--stale-days", type=float, default=31.0, help="hosts not audited within N days")
    fleet.add_argument("--keys", metavar="FILE_OR_DIR",
                       help="registered host keys (lines of `audit-agent keys show`); refuse reports that are "
                            "unsigned or not signed by their machine's key. Without it the reports are unverified")
    fleet.add_argument("--fail-on", choices=SEVERITIES, default=None,
                       help="exit 1 when a host has a counted finding at or above this severity (default: high)")
    fleet.add_argument("--fail-on-incomplete", action="store_true", help="exit 3 when a host's audit is incomplete")
    fleet.set_defaults(handler=cmd_fleet)


def add_keys_command(commands: Any) -> None:
    keys = commands.add_parser("keys", help="this host's report signing key (for fleet --keys)")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = key_commands.add_parser("init", help="make the key if there is none, and print its registration line")
    show = key_commands.add_parser("show", help="print the line that registers this host in the fleet's keys file")
    for sub in (init, show):
        sub.add_argument("--key", metavar="FILE", help="the key file (default: <state dir>/report-signing.key)")
        sub.add_argument("--etc-root", default="/etc", help=argparse.SUPPRESS)
    init.set_defaults(handler=cmd_keys_init)
    show.set_defaults(handler=cmd_keys_show)


COMMANDS: dict[str, Callable[[Any], None]] = {
    "scan": add_scan_command, "collect": add_collect_command, "report": add_report_command,
    "filing": add_filing_command, "demo": add_demo_command, "rules": add_rules_command, "watch": add_watch_command,
    "fleet": add_fleet_command, "keys": add_keys_command,
}


def add_sign_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sign", action="store_true",
                        help="sign the JSON report with this host's key (made on first use; see `keys show`)")


def add_collect_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=non_negative, default=5.0, metavar="SECONDS",
                        help="CPU/GPU sampling window (default 5)")
    parser.add_argument("--timeout", type=scan_seconds, default=600.0, metavar="SECONDS",
                        help="hard ceiling for collecting; what did not finish is reported as incomplete (default 600)")
    parser.add_argument("--call-timeout", type=scan_seconds, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--proc-root", default="/proc", help=argparse.SUPPRESS)
    parser.add_argument("--sys-root", default="/sys", help=argparse.SUPPRESS)
    parser.add_argument("--etc-root", default="/etc", help=argparse.SUPPRESS)
    # off only for bench/scan_cost.py, which measures the packing and memory checks' cost in one run
    parser.add_argument("--no-behaviour-checks", action="store_true", help=argparse.SUPPRESS)


def add_evaluate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="DIR", help="rule pack directory (default: the installed pack)")
    parser.add_argument("--config", metavar="FILE", help="YAML config: allowlist, thresholds, profile, filings")


def add_event_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", metavar="FILE", help="append one ECS JSON line per finding (for SIEMs)")
    parser.add_argument("--syslog", metavar="TARGET", help="send one RFC 5424 message per finding: unix:/dev/log "
                        "(or a socket path) or udp:127.0.0.1:PORT")


def add_report_outputs(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    if json_output:
        parser.add_argument("--json", metavar="PATH", help="write the JSON AuditReport")
    for name, label in REPORT_FORMATS:
        parser.add_argument(f"--{name}", metavar="PATH", help=f"write the {label}")
    parser.add_argument("--lang", choices=LANGS, default="en", help="report language")


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value > 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600")
    return value


def scan_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400")
    return value


# ---------------------------------------------------------------- commands


def cmd_scan(args: argparse.Namespace) -> int:
    from audit_agent.evaluate import exit_code
    from audit_agent.model import Severity
    from audit_agent.pipeline import load_inputs, run_scan

    if args.sign and not args.json:
        raise UsageError("--sign signs the JSON report: give --json PATH too")
    inputs = load_inputs(args.rules, args.config)
    fail_on = resolve_fail_on(args.fail_on, inputs.policy.fail_on_or(Severity.HIGH))
    signing = None
    if args.sign:
        from audit_agent.trust.hostkey import signing_identity
        signing = signing_identity(args.etc_root)            # a key problem is exit 2 before the scan
    if args.snapshot:
        from audit_agent.output import read_snapshot
        snapshot = read_snapshot(args.snapshot)
    else:
        with progress_display(args.quiet) as progress:
            snapshot = collect_with(args, inputs.rules, progress)
    if args.syslog:
        from audit_agent.export.syslog import parse_target
        parse_target(args.syslog)                   # a bad target is an error before the scan, not after
    report = run_scan(snapshot, inputs, fail_on)
    if signing:
        from audit_agent.trust.signature import sign_report
        report = sign_report(report, *signing)
    if args.filing_drafts:
        from audit_agent.filing.draft import write_drafts
        drafts = write_drafts(report, args.filing_drafts)       # before the reports: they link the drafts
        if not args.quiet:
            print(f"wrote {len(drafts)} filing draft file(s) to {args.filing_drafts}", file=sys.stderr)
    write_reports(report, args)
    export_events(report, args)
    if not args.quiet:
        print_summary(report, args)
    return exit_code(report, fail_on, args.fail_on_incomplete)


def cmd_collect(args: argparse.Namespace) -> int:
    from audit_agent.output import write_atomic
    from audit_agent.pipeline import load_rules
    from audit_agent.render.json_report import dumps

    rules = load_rules(args.rules)
    with progress_display(args.quiet) as progress:
        snapshot = collect_with(args, rules, progress)
    if not args.keep_secrets:
        from audit_agent.redact import redact_snapshot
        redact_snapshot(snapshot)
    write_atomic(args.output, dumps(snapshot.to_dict(), indent=1) + "\n")
    if not args.quiet:
        print(f"wrote {args.output}: {len(snapshot.processes)} processes, {len(snapshot.connections)} connections",
              file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from audit_agent.output import read_report

    report = read_report(args.report)
    if not any(getattr(args, name) for name, _ in REPORT_FORMATS):
        raise UsageError("nothing to write: give at least one of --html, --markdown, --junit, --sarif")
    if args.config:
        from audit_agent.policy import load_policy
        report.profile = {**report.profile, **load_policy(args.config).profile}
    write_reports(report, args)
    return EXIT_OK


def cmd_filing_draft(args: argparse.Namespace) -> int:
    from audit_agent.filing.draft import unfiled_systems, write_drafts
    from audit_agent.output import read_report

    report = read_report(args.report)
    if not unfiled_systems(report):
        print(f"{args.report}: no research system without a filing; nothing to draft", file=sys.stderr)
        return EXIT_OK
    for path in write_drafts(report, args.out):
        print(path)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from audit_agent.demo import run_demo
    for line in run_demo(Path(args.out), args.lang):
        print(line)
    return EXIT_OK


def cmd_rules_validate(args: argparse.Namespace) -> int:
    from audit_agent.rules.active import active_rules_path
    from audit_agent.rules.examples import check_examples
    from audit_agent.rules.loader import load_pack

    pack = load_pack(active_rules_path(args.path))
    problems = check_examples(pack)
    for problem in problems:
        print(problem, file=sys.stderr)
    examples = sum(len(r.examples_match) + len(r.examples_no_match) for r in pack.rules)
    print(f"{pack.name} {pack.version}: {len(pack.rules)} rules, {examples} examples, "
          f"{len(pack.yara_sources)} YARA file(s) compiled, {len(problems)} failing",
          file=sys.stderr if problems else sys.stdout)
    if problems:
        return EXIT_ERROR
    from audit_agent.pipeline import load_tuned_rules, tuning_dir
    from audit_agent.policy import Policy
    overlay = args.tuning or tuning_dir(Policy())
    if args.tuning and not Path(args.tuning).is_dir():
        raise UsageError(f"{args.tuning}: no such tuning folder")
    changes = load_tuned_rules(args.path, overlay).tuning.changes     # ConfigError (exit 2) with file:line
    if changes:
        print(f"tuning {overlay}: {len(changes)} change(s) valid")
        for change in changes:
            print(f"  {change.origin}: {change.action} {', '.join(change.rule_ids)} {change.detail}".rstrip())
    return EXIT_OK


def cmd_rules_list(args: argparse.Namespace) -> int:
    from audit_agent.rules.active import active_rules_path
    from audit_agent.rules.loader import load_pack
    from audit_agent.rules.explain import list_lines
    pack = load_pack(active_rules_path(args.rules))
    print("\n".join(list_lines(pack, args.lang)))
    if pack.families:
        print(f"\n{len(pack.families)} families (rules/families/*.yaml):")
    for family in pack.families:
        print(f"{family.id:<12} {family.category:<16} {family.coin:<6} {family.name}: {family_signals(family)}")
    return EXIT_OK


def cmd_rules_show(args: argparse.Namespace) -> int:
    from audit_agent.rules.active import active_rules_path
    from audit_agent.rules.explain import show_lines
    from audit_agent.rules.loader import load_pack
    lines = show_lines(load_pack(active_rules_path(args.rules)), args.rule_id, args.lang)
    if lines is None:
        raise UsageError(f"no rule {args.rule_id!r}: audit-agent rules list shows every rule id")
    print("\n".join(lines))
    return EXIT_OK


def family_signals(family) -> str:  # type: ignore[no-untyped-def]
    """What a family recognises, counted: `5 names, 3 cmdline, 2 ports, 1 config, 1 artefact, 4 pools`."""
    counts = [(len(family.names) + len(family.node_names), "names"), (len(family.cmdline), "cmdline"),
              (len(family.listen_ports) + len(family.connect_ports), "ports"), (len(family.env), "env"),
              (len(family.configs), "configs"), (len(family.artefacts), "artefacts"), (len(family.pools), "pools"),
              (len(family.wallets), "wallets")]
    return ", ".join(f"{n} {what}" for n, what in counts if n) or "nothing"


def cmd_rules_update(args: argparse.Namespace) -> int:
    from audit_agent.rules.update import update_pack
    source = args.source or args.url
    if not source:
        raise UsageError("rules update needs the pack archive: a URL or a file")
    print(update_pack(source, signature=args.signature, key=args.key, rules_dir=args.rules_dir,
                      sha256=args.sha256, force=args.force))
    return EXIT_OK


def cmd_rules_rollback(args: argparse.Namespace) -> int:
    from audit_agent.rules.update import rollback
    print(rollback(args.rules_dir))
    return EXIT_OK


def cmd_rules_keygen(args: argparse.Namespace) -> int:
    from audit_agent.rules.signing import generate_keys
    secret, public = generate_keys(Path(args.out), args.comment)
    print(f"secret key: {secret} (keep it off the hosts)\npublic key: {public} "
          "(pin it on every host as /etc/audit-agent/update-key.pub)")
    return EXIT_OK


def cmd_rules_sign(args: argparse.Namespace) -> int:
    from audit_agent.rules.signing import read_secret_key, sign
    from audit_agent.output import write_atomic
    from audit_agent.rules.update import build_archive, validate

    key = read_secret_key(args.key)
    source = Path(args.pack)
    if source.is_dir():
        pack = validate(source)                 # never sign a pack that would be refused
        data = build_archive(source)
        output = Path(args.output or f"{pack.name}-{pack.version}.tar.gz")
        write_atomic(output, data, mode=0o644)
    else:
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise UsageError(f"{source}: cannot read: {exc.strerror or exc}") from None
        output = source
    write_atomic(f"{output}.sig", sign(data, key), mode=0o644)
    print(f"signed {output} -> {output}.sig")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from audit_agent.watch import run_watch
    return run_watch(args)


def cmd_fleet(args: argparse.Namespace) -> int:
    from audit_agent.fleet import run_fleet
    return run_fleet(args)


def cmd_keys_init(args: argparse.Namespace) -> int:
    from audit_agent.trust.hostkey import default_key_path, load_or_create, machine_id, public_line
    path = Path(args.key) if args.key else default_key_path()
    machine = machine_id(args.etc_root)
    key, created = load_or_create(path)
    print(f"{'made' if created else 'already there'}: {path}; register this line in the fleet's keys file:",
          file=sys.stderr)
    print(public_line(key, machine, host_name()))
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    from audit_agent.trust.hostkey import default_key_path, load_key, machine_id, public_line
    path = Path(args.key) if args.key else default_key_path()
    print(public_line(load_key(path), machine_id(args.etc_root), host_name()))
    return EXIT_OK


def host_name() -> str:
    import socket
    return socket.gethostname()



# ---------------------------------------------------------------- helpers


def resolve_fail_on(flag: str | None, default):  # type: ignore[no-untyped-def]
    from audit_agent.model import Severity
    if flag == "never":
        return None
    return Severity(flag) if flag else default


def collect_with(args: argparse.Namespace, rules, progress):  # type: ignore[no-untyped-def]
    """Collect with the active pack's signature strings, YARA files and families driving the collectors."""
    from audit_agent.collect import CollectOptions, collect_snapshot
    options = CollectOptions(window=args.window, proc_root=args.proc_root, sys_root=args.sys_root,
                             etc_root=args.etc_root, signature_strings=rules.signature_strings(),
                             rules_fingerprint=rules.fingerprint,
                             yara_sources=rules.pack.yara_sources, progress=progress, families=rules.pack.families,
                             check_behaviour=not getattr(args, "no_behaviour_checks", False),
                             timeout=args.timeout, call_timeout=args.call_timeout)
    return collect_snapshot(options)


def write_reports(report, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from audit_agent.output import write_atomic
    from audit_agent.render import RenderOptions, render

    options = RenderOptions(lang=getattr(args, "lang", "en"))
    outputs = [("json", getattr(args, "json", None))] + [(name, getattr(args, name, None)) for name, _ in REPORT_FORMATS]
    rendered = [(path, render(fmt, report, options)) for fmt, path in outputs if path]   # render all, then write
    for path, data in rendered:
        write_atomic(path, data)


def export_events(report, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    """--events FILE and --syslog: one event per finding. A syslog receiver that is down is a warning: the
    report is written and the exit code still says what the audit found."""
    if not (args.events or args.syslog):
        return                      # nothing asked for: no events built, the exporter not imported
    from audit_agent.export.events import append_events, scan_events
    events = scan_events(report)
    if args.events:
        append_events(args.events, events)
    if args.syslog:
        from audit_agent.export.syslog import send
        try:
            send(args.syslog, events, report.host.hostname)
        except OSError as exc:
            print(f"audit-agent: warning: syslog {args.syslog}: {exc.strerror or exc}; events not sent", file=sys.stderr)


def print_summary(report, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    """The terminal summary in --lang, saying truthfully which reports this run wrote: Rich's tables on a
    terminal, plain lines (and no Rich import) when stdout is a file or a pipe."""
    from audit_agent.render.summary import Written, write_plain

    written = Written(json=getattr(args, "json", None) or "", html=getattr(args, "html", None) or "",
                      markdown=getattr(args, "markdown", None) or "")
    lang = getattr(args, "lang", "en") or "en"
    if not sys.stdout.isatty():
        write_plain(sys.stdout, report, lang, written)
        return
    from rich.console import Console

    from audit_agent.render.text import write
    color = "NO_COLOR" not in os.environ
    console = Console(color_system="standard" if color else None, no_color=not color, highlight=False,
                      emoji=False, markup=False)
    write(console, report, lang, written)


PATH_ARGS = ("json", "html", "markdown", "junit", "sarif", "snapshot", "output", "rules", "config", "state",
             "textfile_dir", "push_token_file", "spool_dir", "out", "report", "path", "rules_dir", "inputs",
             "signing_key", "keys")


def leave_working_directory(args: argparse.Namespace) -> None:
    """Make path arguments absolute, then chdir to /: the directory the agent was started in (often /tmp or
    a user's folder) must not be where it looks for anything, nor count as its own evidence."""
    for name in PATH_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value and "://" not in value:
            setattr(args, name, os.path.abspath(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.abspath(v) if isinstance(v, str) else v for v in value])
    os.chdir("/")


@contextmanager
def progress_display(quiet: bool) -> Iterator[Callable[[str, float], None] | None]:
    """A Rich progress bar on stderr while the window and slow checks run, only on a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, no_color="NO_COLOR" in os.environ, markup=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("collecting", total=1.0)

        def update(what: str, done: float) -> None:
            bar.update(task, description=what, completed=done)
        yield update


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)          # --version and --help end here, before YAML is imported
    from audit_agent.yamlfile import ConfigError
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        leave_working_directory(args)
        return int(args.handler(args))
    except (ConfigError, UsageError) as exc:
        print(f"audit-agent: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"audit-agent: error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("audit-agent: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:      # a broken install must not read as exit 1, "findings"
        print(f"audit-agent: error: missing dependency {exc.name or exc}: reinstall audit-agent "
              "(pip install audit-agent)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("AUDIT_AGENT_DEBUG"):
            raise
        print(f"audit-agent: internal error: {type(exc).__name__}: {str(exc)[:300]} "
              "(set AUDIT_AGENT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR
