"""Starts and stops the local stack: the KMS emulator, moto (Step Functions with its interpreter
on and the template's state machines created from their ASL files, the template's DynamoDB tables,
SSM), the handler binaries under `cargo lambda watch`, and the router that puts them all behind one
endpoint.

Run it with `make local` (or `python -m local.stack --help`); tests and the demo use `LocalStack`
as a context manager."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from local.stack import template as tpl
from local.stack.invoke_adapter import InvokeAdapter
from local.stack.processes import ManagedProcess, ProcessFailed, free_port, port_is_free
from local.stack.router import Router, RouterServer, Upstream
from local.stack.sfn_compat import name_unnamed_execution

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = REPO / "local" / ".run"
HOST = "127.0.0.1"
STACK_NAME = "kms-decommission"
DEFAULT_PORT = 4566
EMULATOR_READY = re.compile(r"kms-emulator listening on http://(?P<host>[^:/\s]+):(?P<port>\d+)")

# The contract's handler configuration, scaled down for local runs (real seconds).
LOCAL_HANDLER_CONFIG = {
    "KEY_DELETION_POLL_SECONDS": "1",
    "KEY_DELETION_OVERDUE_SECONDS": "120",
    "STORE_POLL_SECONDS": "1",
    # A CloudHSM store is checked (and reconnected) from 4 s before the earliest DeletionDate (AWS
    # default 6 h), and CloudTrail's DeleteKey events of a store's deleted keys are awaited 20 s.
    "STORE_CONNECTION_LEAD_SECONDS": "4",
    "KEY_MATERIAL_CHECK_SECONDS": "20",
    "CONNECT_TIMEOUT_SECONDS": "60",
    "DISCONNECT_TIMEOUT_SECONDS": "60",
    "DEADLINE_MARGIN_MS": "10000",
    "CANCEL_SETTLE_SECONDS": "5",
    # A quarantine day lasts as long as the emulator's day (1 s by default); CloudTrail (the
    # emulator) shows events at once, so the delivery margin is a second.
    "QUARANTINE_DAY_SECONDS": "1",
    "QUARANTINE_CHECK_SECONDS": "2",
    "CLOUDTRAIL_DELIVERY_MARGIN_SECONDS": "1",
    # Local runs quarantine only when their input asks (QuarantineDays): the stack's default of
    # 14 days would add 14 emulated days to every run of the tests and the demo.
    "DEFAULT_QUARANTINE_DAYS": "0",
    # The tag trigger looks for CloudTrail's record of a TagResource call for 5 s, once a second.
    "TAG_CALL_LOOKUP_SECONDS": "5",
    "TAG_CALL_LOOKUP_INTERVAL_SECONDS": "1",
}
# How long the emulator's CloudTrail keeps records, in emulated days (see LocalStack.start).
LOCAL_CLOUDTRAIL_RETENTION_DAYS = "36500"
# cargo lambda watch's line when a function process ends, e.g. at start for bad configuration.
FUNCTION_EXITED = re.compile(r"ERROR command exited")
# How long a function may take to answer its first invocation (cargo may compile it first).
WARM_UP_SECONDS = 600.0


class StackError(Exception):
    """The local stack could not be started."""


@dataclass
class StackConfig:
    """How to run the local stack."""

    port: int = DEFAULT_PORT
    day_seconds: float = 1.0  # the emulator's scaled day: a 7-day window lasts 7 s
    emulator_args: list[str] = field(default_factory=list)  # extra kms-emulator flags
    handler_env: dict[str, str] = field(default_factory=lambda: dict(LOCAL_HANDLER_CONFIG))
    build: bool = True  # cargo build the emulator and the handlers first
    reload: bool = False  # let cargo lambda watch rebuild handlers when sources change
    warm_up: bool = True  # start every handler once before the first execution needs it
    verbose: bool = False  # echo the child processes' output
    run_dir: Path = RUN_DIR


# How many lines of a failed build's output a StackError quotes.
BUILD_OUTPUT_LINES = 40


def say(message: str) -> None:
    """Progress output of the stack (stderr, so stdout stays for the caller's results)."""
    print(f"[local-stack] {message}", file=sys.stderr, flush=True)


def _run_showing_output(command: list[str]) -> tuple[int, list[str]]:
    """Run a command in the repository, passing its output (stderr merged) on to our stderr as it
    comes; return its exit code and its last BUILD_OUTPUT_LINES lines."""
    tail: collections.deque[str] = collections.deque(maxlen=BUILD_OUTPUT_LINES)
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None  # stdout=PIPE
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
    return process.returncode, list(tail)


def _tool(name: str) -> str:
    """A tool from the project's virtual environment, else from PATH."""
    venv_tool = Path(sys.prefix) / "bin" / name
    if venv_tool.exists():
        return str(venv_tool)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed: run `make tools` (it installs requirements-dev.txt into .venv)")
    return found


class LocalStack:
    """The running local stack. Use as a context manager, or call start() and stop()."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.router_server: RouterServer | None = None
        self.functions: dict[str, tpl.LocalFunction] = {}
        self.template: dict = {}
        self.state_machines: list[tpl.LocalStateMachine] = []
        self.tables: list[tpl.LocalTable] = []
        self.emulator_port = 0
        self.moto_port = 0
        self.watch_port = 0

    @property
    def endpoint(self) -> str:
        """The one AWS endpoint of the stack (`AWS_ENDPOINT_URL`)."""
        return f"http://{HOST}:{self.config.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for an AWS client (CLI, SDK) talking to the stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": tpl.LOCAL_REGION,
            "AWS_DEFAULT_REGION": tpl.LOCAL_REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Build, start every component, create the state machines; stop everything on failure."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        started = time.monotonic()
        config = self.config
        if not port_is_free(HOST, config.port):
            raise StackError(f"port {config.port} on {HOST} is in use: stop what runs there or set LOCAL_PORT")
        template = tpl.load_template(REPO / "template.yaml")
        self.template = template
        self.functions = tpl.functions(template, STACK_NAME)
        self.state_machines = tpl.state_machines(template, REPO, STACK_NAME)
        self.tables = tpl.tables(template, STACK_NAME)
        if not self.functions:
            raise StackError("template.yaml defines no AWS::Serverless::Function")
        config.run_dir.mkdir(parents=True, exist_ok=True)
        logs = config.run_dir / "logs"
        logs.mkdir(exist_ok=True)
        for old in logs.glob("*.log"):
            old.unlink()

        if config.build:
            self._build()

        self.emulator_port, self.moto_port, self.watch_port = free_port(), free_port(), free_port()
        echo = _echo if config.verbose else None
        emulator = ManagedProcess(
            "kms-emulator",
            [
                str(_target_dir() / "debug" / "kms-emulator"),
                "--port",
                str(self.emulator_port),
                "--day-seconds",
                _number(config.day_seconds),
                # Days are short here (1 s by default) but Step Functions' retry backoff is not:
                # CloudTrail's 90-day history would last 90 s, less than a step's retries under
                # faults, and a run would miss KMS's DeleteKey events. 100 years of emulated days.
                "--cloudtrail-retention-days",
                LOCAL_CLOUDTRAIL_RETENTION_DAYS,
                *config.emulator_args,
            ],
            logs / "kms-emulator.log",
            env=os.environ.copy(),
            cwd=REPO,
            echo=echo,
        )
        moto = ManagedProcess(
            "moto",
            [_tool("moto_server"), "-H", HOST, "-p", str(self.moto_port)],
            logs / "moto.log",
            # moto's interpreter calls Lambda at localhost:$MOTO_PORT: that is the router.
            env={**os.environ, "MOTO_PORT": str(config.port), **self.client_env()},
            cwd=REPO,
            echo=echo,
        )
        env_file = config.run_dir / "handlers.env"
        # The template's environment (resolved to local values), then the local scale-downs.
        handler_env = {
            **self.client_env(),
            **tpl.merged_environment(self.functions),
            **config.handler_env,
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
        }
        env_file.write_text("".join(f"{key}={value}\n" for key, value in handler_env.items()), encoding="utf-8")
        watch_command = [
            _tool("cargo-lambda"),
            "lambda",
            "watch",
            "-A",
            HOST,
            "-P",
            str(self.watch_port),
            "--env-file",
            str(env_file),
            "--concurrency",
            "4",
        ]
        if not config.reload:
            watch_command.append("--ignore-changes")
        watch = ManagedProcess(
            "cargo-lambda-watch",
            watch_command,
            logs / "cargo-lambda-watch.log",
            env={**os.environ, "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
            cwd=REPO,
            echo=echo,
        )
        for process in (emulator, moto, watch):
            self.processes.append(process)
            process.start()
        ready = emulator.wait_for_line(EMULATOR_READY, 60, "'kms-emulator listening on http://HOST:PORT'")
        if int(ready["port"]) != self.emulator_port:
            raise StackError(
                f"kms-emulator listens on {ready['port']}, not on the port it was given ({self.emulator_port})"
            )
        moto.wait_for_port(HOST, self.moto_port, 60)
        watch.wait_for_port(HOST, self.watch_port, 60)

        adapter = InvokeAdapter(
            HOST,
            self.watch_port,
            {f.binary: f.timeout_seconds for f in self.functions.values()},
            tpl.LOCAL_REGION,
            tpl.LOCAL_ACCOUNT,
        )
        moto = Upstream(HOST, self.moto_port)
        router = Router(
            kms=Upstream(HOST, self.emulator_port),
            lambda_invoke=adapter.handle,
            moto=lambda request: moto(name_unnamed_execution(request)),
        )
        self.router_server = RouterServer((HOST, config.port), router)
        self.router_server.start_in_thread()

        configure_moto(HOST, self.moto_port)
        self._create_state_machines()
        self._create_tables()  # before any handler runs: the steps write the ledger
        self._create_prerequisites()
        self._create_outputs_stack()
        if config.warm_up:
            self._warm_up(adapter, watch)
        say(f"ready in {time.monotonic() - started:.1f} s at {self.endpoint} (logs in {logs})")

    def _build(self) -> None:
        # Two builds, not one: building both packages together would unify their dependencies'
        # features and make `cargo run --bin` (what cargo lambda watch does) rebuild.
        for label, command in (
            ("handlers", ["cargo", "build", "-p", "kms-decommission", "--bins"]),
            ("kms-emulator", ["cargo", "build", "-p", "kms-emulator", "--bin", "kms-emulator"]),
        ):
            say(f"building {label}: {' '.join(command)}")
            started = time.monotonic()
            returncode, tail = _run_showing_output(command)
            if returncode != 0:
                # The error quotes cargo's own reason: test runners show an exception's message
                # even where they hide what a fixture printed.
                raise StackError(
                    f"building {label} failed ({' '.join(command)} exited {returncode}); its last output:\n"
                    + "\n".join(tail)
                )
            say(f"built {label} in {time.monotonic() - started:.1f} s")

    def _client(self, service: str) -> Any:
        """A boto3 client of `service` on the stack's endpoint."""
        import boto3  # in the venv; imported late so the router tests need no boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=tpl.LOCAL_REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def _create_state_machines(self) -> None:
        client = self._client("stepfunctions")
        for machine in self.state_machines:
            client.create_state_machine(
                name=machine.name,
                definition=machine.definition,
                roleArn=f"arn:aws:iam::{tpl.LOCAL_ACCOUNT}:role/{machine.name}-role",
                type="STANDARD",
            )
            say(f"state machine {machine.name} created from {machine.definition_path.relative_to(REPO)}: {machine.arn}")

    def _create_tables(self) -> None:
        """Create the template's DynamoDB tables in moto with the template's settings, then read
        back what moto holds and say it. moto 5.2.5 accepts and reports every setting the template
        uses (billing mode, DeletionProtectionEnabled, SSESpecification, point-in-time recovery
        through UpdateContinuousBackups); a setting moto did not keep is named in the `say` line as
        NOT APPLIED, never dropped silently. moto's SSE key is one moto makes in its own KMS (alias
        aws/dynamodb there), unknown to the KMS emulator behind the endpoint; tables are ACTIVE at once."""
        from botocore.exceptions import ClientError

        client = self._client("dynamodb")
        for table in self.tables:
            try:
                client.create_table(**create_table_request(table))
                if table.point_in_time_recovery:
                    client.update_continuous_backups(
                        TableName=table.name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
                    )
                described = client.describe_table(TableName=table.name)["Table"]
                backups = client.describe_continuous_backups(TableName=table.name)["ContinuousBackupsDescription"]
            except ClientError as err:
                raise StackError(f"moto refused table {table.name} ({table.logical_id}): {err}") from err
            pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"
            sse_status = (described.get("SSEDescription") or {}).get("Status")
            held = {
                "billing mode": (described.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED"),
                "deletion protection": bool(described.get("DeletionProtectionEnabled")),
                "encryption": sse_status in ("ENABLED", "ENABLING"),
                "point-in-time recovery": pitr,
            }
            wanted = {
                "billing mode": table.billing_mode,
                "deletion protection": table.deletion_protection,
                "encryption": table.sse_enabled,
                "point-in-time recovery": table.point_in_time_recovery,
            }
            not_applied = [f"{what} {wanted[what]}" for what in wanted if held[what] != wanted[what]]
            keys = ", ".join(f"{name} {kind}" for name, kind in table.key_schema)
            settings = "; ".join(
                str(value) if what == "billing mode" else f"{what} {'on' if value else 'off'}"
                for what, value in held.items()
            )
            missing = f"; NOT APPLIED by moto: {', '.join(not_applied)}" if not_applied else ""
            say(f"table {table.name} created ({table.logical_id}; {keys}; {settings}){missing}")

    def _create_prerequisites(self) -> None:
        """What the template expects to exist before deployment: the ticketing webhook's secret, a
        SecureString parameter in SSM (served by moto) named by `WebhookSecretParameterName`. Its
        local value is written to local/.run/webhook-secret for signing test requests."""
        parameter = tpl.parameter_default(self.template, "WebhookSecretParameterName")
        if parameter is None:
            return
        secret = secrets.token_hex(32)
        ssm = self._client("ssm")
        ssm.put_parameter(Name=parameter, Value=secret, Type="SecureString", Overwrite=True)
        secret_file = self.config.run_dir / "webhook-secret"
        secret_file.write_text(secret + "\n", encoding="utf-8")
        secret_file.chmod(0o600)
        shown = secret_file.relative_to(REPO) if secret_file.is_relative_to(REPO) else secret_file
        say(f"webhook secret stored in SSM parameter {parameter} (value in {shown})")

    def _create_outputs_stack(self) -> None:
        """A CloudFormation stack named STACK_NAME in moto whose Outputs are template.yaml's,
        resolved to the local values (tpl.outputs): the command line reads the state machines and
        the ledger from `DescribeStacks --stack-name`, locally as on AWS. Its one resource is a
        WaitConditionHandle, which creates nothing."""
        resolved = tpl.outputs(self.template, STACK_NAME)
        body = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "The local stack's outputs (template.yaml's, resolved to local values)",
            "Resources": {"LocalStack": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {name: {"Value": value} for name, value in resolved.items()},
        }
        self._client("cloudformation").create_stack(StackName=STACK_NAME, TemplateBody=json.dumps(body))
        say(f"stack {STACK_NAME} created in moto's CloudFormation with outputs {', '.join(sorted(resolved))}")

    def _warm_up(self, adapter: InvokeAdapter, watch: ManagedProcess) -> None:
        """Invoke every function once with an empty document, so `cargo lambda watch` starts its
        instance now rather than during the first execution (the first start may compile). Each
        handler must reject it as bad input without calling KMS; any answer from the handler
        (result or error) means it runs. A function that dies at start leaves the invocation
        hanging in cargo lambda watch: that is reported after WARM_UP_SECONDS with its log."""
        problems: list[str] = []

        def warm(function: tpl.LocalFunction) -> None:
            started = time.monotonic()
            answer = adapter.invoke(function.binary, b"{}", WARM_UP_SECONDS)
            error = None
            if answer.header("X-Amz-Function-Error"):
                try:
                    error = str(json.loads(answer.body).get("errorType"))
                except ValueError:
                    error = "an unreadable error"
            if answer.status != 200 or error == "Sandbox.Timedout":
                problems.append(
                    f"function {function.binary} did not answer its warm-up invocation "
                    f"(HTTP {answer.status}): {answer.body[:300]!r}"
                )
                return
            answered = f"error {error}" if error else "a result"
            elapsed = time.monotonic() - started
            say(f"function {function.binary} ready in {elapsed:.1f} s (warm-up answered with {answered})")

        threads = [threading.Thread(target=warm, args=(function,), daemon=True) for function in self.functions.values()]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if watch.has_printed(FUNCTION_EXITED):
                problems.append("a function exited while starting (its error is in the output below)")
                break
            time.sleep(0.2)
        if problems:
            raise StackError(
                "\n".join(problems)
                + "\ncargo lambda watch's output (a function that exits at start shows its error here):\n"
                + watch.tail(40)
            )

    def stop(self) -> None:
        """Stop the router and every process the stack started (in reverse order)."""
        if self.router_server is not None:
            self.router_server.shutdown()
            self.router_server.server_close()
            self.router_server = None
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def failed_process(self) -> ManagedProcess | None:
        """A component that exited while the stack runs, if any."""
        for process in self.processes:
            if not process.running():
                return process
        return None


def create_table_request(table: tpl.LocalTable) -> dict[str, Any]:
    """The CreateTable request of a template table (point-in-time recovery is a separate call)."""
    request: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": [{"AttributeName": name, "KeyType": kind} for name, kind in table.key_schema],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in table.attribute_definitions
        ],
        "BillingMode": table.billing_mode,
        "DeletionProtectionEnabled": table.deletion_protection,
    }
    if table.provisioned_throughput is not None:
        read, write = table.provisioned_throughput
        request["ProvisionedThroughput"] = {"ReadCapacityUnits": read, "WriteCapacityUnits": write}
    if table.sse_enabled:
        sse: dict[str, Any] = {"Enabled": True}
        if table.sse_type is not None:
            sse["SSEType"] = table.sse_type
        if table.sse_kms_key is not None:
            sse["KMSMasterKeyId"] = table.sse_kms_key
        request["SSESpecification"] = sse
    if table.tags:
        request["Tags"] = [{"Key": key, "Value": value} for key, value in table.tags]
    return request


def configure_moto(host: str, port: int) -> None:
    """Turn on moto's Step Functions interpreter (off by default: executions would do nothing)."""
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(
        f"http://{host}:{port}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as err:
        raise StackError(f"cannot turn on moto's Step Functions interpreter: {err}") from err


def _target_dir() -> Path:
    """Where cargo puts its builds: CARGO_TARGET_DIR when set (relative to the repository), else target/."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return REPO / configured if configured else REPO / "target"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _echo(name: str, line: str) -> None:
    print(f"  {name}| {line}", file=sys.stderr, flush=True)


def print_usage(stack: LocalStack) -> None:
    """Print the endpoint and example AWS CLI calls."""
    machine = stack.state_machines[0].arn if stack.state_machines else "<state machine arn>"
    table = stack.tables[0].name if stack.tables else "<ledger table>"
    store_partition = json.dumps({":pk": {"S": "STORE#<CustomKeyStoreId>"}})
    run_partition = json.dumps({":pk": {"S": "RUN#<executionArn>"}})
    env = " ".join(f"{k}={v}" for k, v in stack.client_env().items())
    example_input = json.dumps(
        {"CustomKeyStoreId": "<CustomKeyStoreId>", "ConfirmCustomKeyStoreName": "rehearsal", "PendingWindowInDays": 7}
    )
    print(
        f"""
Local stack ready: {stack.endpoint}   (KMS emulator, Step Functions, DynamoDB, SSM, Lambda Invoke)
State machines: {", ".join(m.arn for m in stack.state_machines)}
Tables: {", ".join(t.name for t in stack.tables) or "none"}

In another shell (README.md, "The local stack", has a complete walk-through):
  export {env}
  PATH=$PWD/.venv/bin:$PATH
  aws kms create-custom-key-store --custom-key-store-name rehearsal --cloud-hsm-cluster-id cluster-234567abcdefg \\
      --key-store-password kmsPswd123 --trust-anchor-certificate "local trust anchor"
  aws kms connect-custom-key-store --custom-key-store-id <CustomKeyStoreId>
  aws kms create-key --origin AWS_CLOUDHSM --custom-key-store-id <CustomKeyStoreId>
  aws stepfunctions start-execution --state-machine-arn {machine} \\
      --input '{example_input}'
  aws stepfunctions get-execution-history --execution-arn <executionArn>
  # the run ledger (docs/ledger.md): a store's lock and runs, then the keys one run changed
  aws dynamodb query --table-name {table} --key-condition-expression "pk = :pk" \\
      --expression-attribute-values '{store_partition}'
  aws dynamodb query --table-name {table} --key-condition-expression "pk = :pk" \\
      --expression-attribute-values '{run_partition}'
  curl -s {stack.endpoint}/_emulator/state        # the emulator's whole state (docs/emulator.md)

Stop with Ctrl-C (or SIGTERM): every process started here is stopped.
""",
        flush=True,
    )


class _Stop(Exception):
    """Raised by the SIGTERM handler to unwind into the stack's cleanup."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def parse_args(argv: list[str]) -> StackConfig:
    """The command line of `python -m local.stack`."""
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_PORT", DEFAULT_PORT)),
        help="endpoint port (default $LOCAL_PORT or 4566)",
    )
    parser.add_argument(
        "--day-seconds",
        type=float,
        default=60.0,
        help="how long an emulated day lasts, in seconds (default 60: a 7-day window lasts 7 min)",
    )
    parser.add_argument(
        "--emulator-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra kms-emulator flag, repeatable (e.g. --emulator-arg=--no-quotas)",
    )
    parser.add_argument("--no-build", action="store_true", help="do not cargo build first")
    parser.add_argument("--reload", action="store_true", help="rebuild handlers when their sources change")
    parser.add_argument("--verbose", action="store_true", help="echo every component's output")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    if args.day_seconds <= 0:
        parser.error("--day-seconds must be positive")
    return StackConfig(
        port=args.port,
        day_seconds=args.day_seconds,
        emulator_args=args.emulator_arg,
        build=not args.no_build,
        reload=args.reload,
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the stack until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="[local-stack] %(name)s: %(message)s")
    config = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    stack = LocalStack(config)
    try:
        stack.start()
        print_usage(stack)
        while True:
            failed = stack.failed_process()
            if failed is not None:
                say(f"{failed.name} exited with code {failed.exit_code()}:\n{failed.tail()}")
                return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        say("stopping")
        return 0
    except (StackError, ProcessFailed, tpl.TemplateError) as err:
        say(f"error: {err}")
        return 1
    finally:
        stack.stop()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
