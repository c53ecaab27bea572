"""Run a measurement Job on a device over SSH (paramiko, extra ``remote``).

The device needs edgebench with the target's backends installed. The artifact,
the eval data and the job JSON are copied into a per-job directory, the same
worker used locally (``python -m edgebench.measure.worker``) runs there, and the
JobResult JSON comes back. Host keys are checked against known_hosts and an
unknown key is rejected; every remote argument is shell-quoted; a dropped
connection is retried, an authentication or host-key failure is not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgebench.components import Package
from edgebench.errors import EdgebenchError, require_module
from edgebench.executor.forked import crash_error
from edgebench.job import Job, JobResult, thread_env
from edgebench.measure.worker import stderr_tail
from edgebench.targets import SSHSpec, TargetSpec

log = logging.getLogger(__name__)

JOB_FILE, RESULT_FILE = "job.json", "result.json"
#: the remote shell's pid, which is also its process group's (sshd starts each command in a session of its own)
PID_FILE = "worker.pid"
PARAMIKO = Package("paramiko", "paramiko", "SSH remote targets", extra="remote")


class RemoteError(EdgebenchError):
    """The device cannot be used: unreachable, unknown host key, authentication refused."""


class _Dropped(Exception):
    """The connection failed in a way a reconnect may fix."""


def _import_paramiko() -> Any:
    paramiko = require_module("paramiko", "remote", "SSH targets")
    # paramiko's transport thread logs a failed handshake's traceback at ERROR before connect() raises; connect()
    # turns that exception into one line naming the host, so the traceback shows only with debug logging
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
    return paramiko


def _known_hosts_path(ssh: SSHSpec) -> Path:
    return Path(ssh.known_hosts or "~/.ssh/known_hosts").expanduser()


def connect(ssh: SSHSpec) -> Any:
    """An SSHClient connected to ``ssh.host`` with host-key checking against known_hosts (RejectPolicy).

    Raises RemoteError for an unknown or changed host key and for refused
    authentication, ``_Dropped`` for network failures worth retrying.
    """
    paramiko = _import_paramiko()
    client = paramiko.SSHClient()
    known_hosts = _known_hosts_path(ssh)
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = f"{ssh.user + '@' if ssh.user else ''}{ssh.host}:{ssh.port}"
    key_file = str(Path(ssh.key_file).expanduser()) if ssh.key_file else None
    if key_file:
        _check_key_file(paramiko, key_file)
    try:
        client.connect(
            ssh.host,
            port=ssh.port,
            username=ssh.user,
            key_filename=key_file,
            look_for_keys=key_file is None,
            allow_agent=key_file is None,
            timeout=ssh.connect_timeout_s,
            banner_timeout=ssh.connect_timeout_s,
            auth_timeout=ssh.connect_timeout_s,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RemoteError(
            f"host key of {where} does not match {known_hosts} (got {exc.key.get_name()}): the device was "
            f"reinstalled or someone is in between. Verify, then `ssh-keygen -R {_host_entry(ssh)} -f {known_hosts}`"
        ) from None
    except paramiko.PasswordRequiredException:  # an AuthenticationException: not the device's refusal
        client.close()
        raise RemoteError(
            f"ssh.key_file {key_file} is encrypted (it has a passphrase, which edgebench cannot ask for): use a key "
            "without one, or leave ssh.key_file unset to use the keys loaded in ssh-agent") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise RemoteError(
            f"authentication to {where} failed ({exc}); edgebench uses key auth: set ssh.key_file and add its "
            f".pub to the device's ~/.ssh/authorized_keys"
        ) from None
    except paramiko.SSHException as exc:
        transport = client.get_transport()  # before close() drops it: whether the server sent its banner
        client.close()
        if "known_hosts" in str(exc) and not known_hosts.is_file():
            raise RemoteError(
                f"unknown host key for {where}: ssh.known_hosts {known_hosts} does not exist. Point ssh.known_hosts at "
                "the file holding the board's host key (default ~/.ssh/known_hosts), or create it with the checked key"
            ) from None
        if "known_hosts" in str(exc):
            port = f"-p {ssh.port} " if ssh.port != 22 else ""
            raise RemoteError(
                f"unknown host key for {where}: it is not in {known_hosts}. Check the fingerprint, then add it: "
                f"ssh-keyscan {port}{shlex.quote(ssh.host)} >> {known_hosts}"
            ) from None
        if transport is not None and not transport.remote_version:
            raise _Dropped(f"{where} accepted the connection but sent no SSH banner within ssh.connect_timeout_s "
                           f"({ssh.connect_timeout_s:g} s): is the port an SSH server's?") from exc
        raise _Dropped(f"SSH handshake with {where} failed: {exc} (is an SSH server listening on that port?)") from exc
    except (OSError, EOFError) as exc:  # refused, unreachable, timed out, name not resolved
        client.close()
        # paramiko's NoValidConnectionsError reads "[Errno None] Unable to connect to port ...": its strerror is the text
        raise _Dropped(f"cannot connect to {where}: {exc.strerror or exc}") from exc
    return client


def _check_key_file(paramiko: Any, key_file: str) -> None:
    """RemoteError when ``key_file`` cannot be a private key: a directory, unreadable, or the public key (paramiko's
    "not a valid OPENSSH private key file" read as a server that is not SSH's)."""
    try:
        text = Path(key_file).read_text(errors="replace")
    except OSError as exc:
        raise RemoteError(f"ssh.key_file {key_file} cannot be read: {exc.strerror or exc}") from None
    try:
        paramiko.PublicBlob.from_string(text.strip())
    except ValueError:  # not a public key (what else is wrong with it, paramiko says while connecting)
        return
    raise RemoteError(f"ssh.key_file {key_file} is a public key: name its private key (without .pub)")


#: what the probe's python runs: the worker's import (its failure ends the script: its last line says why), then each
#: backend module's, whose failures it prints as one JSON line (one backend missing leaves the target's others usable)
_PROBE_SCRIPT = """import importlib, json, sys
import edgebench.measure.worker
print(%r, flush=True)
failed = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[module] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
print(json.dumps(failed), flush=True)
"""
_WORKER_IMPORTED = "edgebench worker imported"


def probe(ssh: SSHSpec, modules: Sequence[str] = (), import_limit_s: float | None = None
          ) -> tuple[str | None, dict[str, str]]:
    """Whether jobs can run on the device: (None, {}) when it accepts our key and host key and ``ssh.python``
    imports the worker and every one of ``modules`` (the target's backends' runtimes) within ``import_limit_s``
    (default 3 x the connect timeout, which also bounds the handshake); else why not, in one line (each failure
    mode names what to fix), and ``{module: why}`` for each of ``modules`` that does not import there."""
    try:
        client = connect(ssh)
    except (RemoteError, _Dropped) as exc:
        return str(exc), {}
    limit = ssh.connect_timeout_s * 3 if import_limit_s is None else import_limit_s
    try:
        # a host that takes the login and then runs no command (a ForceCommand that hangs): said as such, not as a
        # python lacking edgebench
        if _exec(client, "true", ssh.connect_timeout_s)[0] is None:
            return (f"{ssh.host} accepted the login but did not finish a trivial command (`true`) within "
                    f"ssh.connect_timeout_s ({ssh.connect_timeout_s:g} s): check the board's sshd_config "
                    "(ForceCommand) and its shell start-up files"), {}
        script = _PROBE_SCRIPT % _WORKER_IMPORTED
        check = " ".join([shlex.quote(ssh.python), "-c", shlex.quote(script), *map(shlex.quote, modules)])
        # a hung import is killed on the board (closing our channel leaves it running there, busy beside later jobs)
        command = f"if command -v timeout >/dev/null; then exec timeout -s KILL {limit:g} {check}; else exec {check}; fi"
        code, out, err = _exec(client, command, limit + 2)
    except _Dropped as exc:
        return str(exc), {}
    finally:
        client.close()
    if _WORKER_IMPORTED in out:
        return None, _modules_missing(out, code, modules, limit)
    said = (err or out).strip().splitlines()
    detail = said[-1].strip() if said else f"exit code {code}"  # the last line: the shell's or Python's reason
    if code in (-1, 124, 128 + signal.SIGKILL) and not said:  # killed by timeout (paramiko: -1 for a signal)
        detail = f"importing it did not finish in {limit:g} s and was killed"
    return (f"{ssh.python} on {ssh.host} cannot run edgebench's worker ({detail}); install edgebench there "
            "or set ssh.python to a python that has it"), {}


def _modules_missing(out: str, code: int | None, modules: Sequence[str], limit: float) -> dict[str, str]:
    """``{module: why}`` from the probe's output once the worker imported: its JSON line, or (the python died or
    was killed importing them) every module with how it ended."""
    last = out.strip().splitlines()[-1]
    if code == 0 and last.startswith("{"):
        return json.loads(last)
    how = (f"importing {', '.join(modules)} did not finish in {limit:g} s" if code in (-1, 124, 128 + signal.SIGKILL)
           else f"python ended with code {code} importing {', '.join(modules)}")
    return dict.fromkeys(modules, how)


def missing_module_reason(module: str, why: str, ssh: SSHSpec) -> str:
    """The line that makes a backend "not run" on a board whose python cannot import its runtime."""
    return (f"{ssh.python} on {ssh.host} cannot import {module} ({why}): install it there for that python, or set "
            "ssh.python to a python that has it")


def _host_entry(ssh: SSHSpec) -> str:
    return ssh.host if ssh.port == 22 else f"[{ssh.host}]:{ssh.port}"


def _exec(client: Any, command: str, timeout_s: float, hold_stdin: bool = False) -> tuple[int | None, str, str]:
    """Run ``command``; (exit code or None on timeout, stdout, stderr). With ``hold_stdin`` the command's stdin stays
    open until the connection closes, so the device can tell when this side is gone (its end of file)."""
    try:
        stdin, stdout, stderr = client.exec_command(command, timeout=timeout_s)
        if not hold_stdin:
            stdin.close()
        channel = stdout.channel
        deadline = time.monotonic() + timeout_s
        while not channel.exit_status_ready():
            if time.monotonic() > deadline:
                channel.close()
                return None, "", f"timed out after {timeout_s:g} s"
            time.sleep(0.05)
        return channel.recv_exit_status(), stdout.read().decode(errors="replace"), stderr.read().decode(
            errors="replace")
    except (OSError, EOFError, _import_paramiko().SSHException) as exc:  # socket.timeout is an OSError
        raise _Dropped(f"connection lost while running a command: {exc}") from exc


def _put(sftp: Any, local: Path, remote: str) -> None:
    """Copy a file, or a directory tree (e.g. an hls4ml project), to ``remote``."""
    if local.is_dir():
        with contextlib.suppress(OSError):  # exists from an interrupted attempt
            sftp.mkdir(remote)
        for child in sorted(local.iterdir()):
            _put(sftp, child, posixpath.join(remote, child.name))
    else:
        sftp.put(str(local), remote)


def remote_job(job: Job, files: Sequence[Path], remote_dir: str) -> Job:
    """``job`` with its artifact/eval/reference paths rewritten to their copies in ``remote_dir``."""
    mapping = {str(Path(f)): posixpath.join(remote_dir, Path(f).name) for f in files}
    mapping.update({str(Path(f).resolve()): v for f, v in zip(files, mapping.values(), strict=True)})
    names = [Path(f).name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"files to copy must have distinct names: {names}")
    updates = {}
    for field in ("artifact", "eval_data", "reference"):
        value = getattr(job, field)
        if value is None:
            continue
        key = str(Path(value))
        if key not in mapping and str(Path(value).resolve()) not in mapping:
            raise ValueError(f"job.{field} = {value} is not among the files to copy")
        updates[field] = mapping.get(key) or mapping[str(Path(value).resolve())]
    return job.model_copy(update=updates)


def _attempt(job: Job, ssh: SSHSpec, files: Sequence[Path]) -> JobResult:
    remote_dir = posixpath.join(ssh.workdir, job.job_id)
    client = connect(ssh)
    try:
        code, _, err = _exec(client, f"mkdir -p {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
        if code is None:  # the board, not the job, failed: lost like a dropped connection (retried, then not stored)
            raise _Dropped(f"{ssh.host} did not finish `mkdir` of the job's directory within 3 x ssh.connect_timeout_s "
                           f"({ssh.connect_timeout_s * 3:g} s)")
        if code != 0:
            raise RemoteError(f"cannot create {remote_dir} on {ssh.host}: {err.strip()}")
        try:
            sftp = client.open_sftp()
        except _import_paramiko().SSHException as exc:
            raise RemoteError(f"{ssh.host} refused SFTP ({exc}): enable `Subsystem sftp` in its sshd_config") from None
        sftp.get_channel().settimeout(ssh.command_timeout_s)  # a host that freezes mid-copy: a timeout, not a hang
        try:
            for f in files:
                _put(sftp, Path(f), posixpath.join(remote_dir, Path(f).name))
            with sftp.open(posixpath.join(remote_dir, JOB_FILE), "w") as fh:
                fh.write(remote_job(job, files, remote_dir).model_dump_json())
        except (OSError, EOFError) as exc:
            if not _connected(client, exc):
                raise _Dropped(f"copy to {ssh.host} failed: {exc}") from exc
            # the board answered and refused the file (its disk full, its workdir not writable): a failure of this
            # job, which retrying or a resumed run would meet again
            _exec(client, f"rm -rf {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
            return JobResult(job_id=job.job_id, status="failed",
                             error=f"copy to {ssh.host}:{remote_dir} failed: {exc or type(exc).__name__} (is the "
                                   "board's disk full, or its ssh.workdir not writable?)")

        # faulthandler: a worker dying of a signal leaves its Python frame on stderr, which the failure names
        env = {"PYTHONFAULTHANDLER": "1", **thread_env(job.threads), **ssh.env}
        worker = " ".join(["env", *[shlex.quote(f"{k}={v}") for k, v in env.items()], shlex.quote(ssh.python), "-m",
                           "edgebench.measure.worker", JOB_FILE, RESULT_FILE])
        code, out, err = _exec(client, _worker_command(remote_dir, worker, ssh.command_timeout_s), ssh.command_timeout_s,
                               hold_stdin=True)
        if code is None:
            killed = ("killed there, so the board's next job is not timed beside it" if _kill_and_clean(client, ssh, remote_dir)
                      else "the connection dropped before it could be killed: it may still run there")
            return JobResult(job_id=job.job_id, status="failed",
                             error=f"remote worker on {ssh.host} timed out after ssh.command_timeout_s "
                                   f"({ssh.command_timeout_s:g} s; {killed})")
        try:
            with sftp.open(posixpath.join(remote_dir, RESULT_FILE), "r") as fh:
                result = JobResult.model_validate_json(fh.read())
        except FileNotFoundError:
            how = (f"killed by {signal.Signals(code - 128).name}" if code > 128 and code - 128 in _SIGNALS
                   else f"exited with code {code}")
            return JobResult(job_id=job.job_id, status="failed",
                             error=crash_error(f"remote worker on {ssh.host} {how}", err or out),
                             error_detail=stderr_tail(err or out))
        except (OSError, EOFError) as exc:
            raise _Dropped(f"fetching the result from {ssh.host} failed: {exc}") from exc
        _exec(client, f"rm -rf {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
        return result
    finally:
        client.close()


_SIGNALS = {int(s) for s in signal.Signals}


def _connected(client: Any, exc: BaseException) -> bool:
    """Whether an SFTP error came from a board still connected (it refused the write) rather than from the
    connection (closed, timed out)."""
    transport = client.get_transport()
    return (transport is not None and transport.is_active() and not isinstance(exc, EOFError | TimeoutError)
            and not isinstance(exc, _import_paramiko().SSHException))


def _worker_command(remote_dir: str, worker: str, timeout_s: float) -> str:
    """The device's shell command that runs ``worker`` in ``remote_dir`` and leaves nothing running once this side
    is gone: a driver killed with its Ray node left the worker running on the board, timed beside the next job.

    The worker runs as the shell's child, so the shell's status says which signal ended it (paramiko drops SSH's
    exit-signal; the shell's own notice of it, which names this command, goes to /dev/null, not the worker's
    stderr), and the shell's pid (sshd makes it a session leader) names the process group to kill. A watcher
    reads the channel's stdin: its end of file comes when the connection closes (or sshd releases a finished
    session), and it kills the group. A connection that vanishes without closing is cut by ``timeout`` on the board
    ``_REMOTE_GRACE_S`` after the command timeout (where coreutils' timeout is installed).
    """
    limit = f"{timeout_s + _REMOTE_GRACE_S:g}"
    # --foreground keeps the worker in the shell's process group (else timeout makes a group of its own); a board
    # whose timeout lacks it (busybox) runs the worker without
    guarded = (f"if timeout --foreground 1 true 2>/dev/null; then exec timeout --foreground -s KILL {limit} {worker}; "
               f"else exec {worker}; fi")
    return (f"cd {shlex.quote(remote_dir)} && echo $$ > {PID_FILE} || exit 1; exec 3<&0; "
            "{ cat <&3 >/dev/null 2>&1; kill -KILL -- -$$; } >/dev/null 2>&1 & "
            f"( {guarded} ) 3<&- </dev/null & wait $! 2>/dev/null")


#: how long after the command timeout the board kills a worker this side lost track of
_REMOTE_GRACE_S = 30.0


def _kill_and_clean(client: Any, ssh: SSHSpec, remote_dir: str) -> bool:
    """Kill a timed-out worker's whole process group on the device and remove its directory; False when the
    connection dropped meanwhile (both are left to the device)."""
    pid_file = shlex.quote(posixpath.join(remote_dir, PID_FILE))
    try:
        code, _, _ = _exec(client, f"p=$(cat {pid_file}); kill -KILL -- -$p 2>/dev/null || {{ pkill -KILL -P $p; "
                                   f"kill -KILL $p; }}; rm -rf {shlex.quote(remote_dir)}", ssh.connect_timeout_s * 3)
    except _Dropped:
        return False
    return code is not None


def run_job_remote(job: Job, target: TargetSpec, files: Sequence[Path]) -> JobResult:
    """Run ``job`` on ``target``'s device; ``files`` are the local artifact/eval/reference paths the job names.

    Unreachable hosts, dropped connections and a board that does not finish creating the job's directory or the
    copy are retried ``ssh.retries`` times, then become a failed result
    marked ``unreachable`` (not stored: the run stays open); host-key and authentication problems raise
    RemoteError at once because retrying cannot fix them.
    """
    if target.ssh is None:
        raise ValueError(f"target {target.name} has no ssh block")
    ssh = target.ssh
    if missing := [str(f) for f in files if not Path(f).is_file()]:  # not the connection's fault: no retry, no resume
        return JobResult(job_id=job.job_id, status="failed", error=f"cannot copy to {ssh.host}: no file {missing[0]} here")
    last = ""
    for attempt in range(ssh.retries + 1):
        try:
            result = _attempt(job, ssh, files)
            # the executor's placement names the driving host: the result names the board it measured on
            return result.model_copy(update={"details": {**result.details, "board": f"{ssh.host}:{ssh.port}"}})
        except _Dropped as exc:
            last = str(exc)
            log.warning("attempt %d/%d on %s: %s", attempt + 1, ssh.retries + 1, ssh.host, exc)
            if attempt < ssh.retries:
                time.sleep(min(2.0**attempt, 10.0))
    return JobResult(job_id=job.job_id, status="failed", error=f"{last} (after {ssh.retries + 1} attempts)",
                     unreachable=True)
