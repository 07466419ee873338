"""A real kube-apiserver + etcd on loopback for integration tests and demos (envtest-style).

No kubelet, no controller-manager, no scheduler: Deployments never get Pods, namespaces never finish
terminating, Helm ``--wait`` and hook Jobs hang. What *is* real: the API server itself -- OpenAPI
schema validation, CEL rules, RBAC, server-side printing, watches, TokenRequest.

The binaries (kube-apiserver, kubectl, etcd, helm; pinned versions) come from ``build.sh`` next to this
file, which builds them once from the Go module proxy into a cache outside the repository.

Library use (what ``fixtures.py`` does)::

    plane = ControlPlane(Path("/tmp/cp")).start()   # reuses a healthy plane already running there
    plane.kubectl("get", "--raw", "/readyz")
    plane.stop()

Command line (stdlib only, so any Python >= 3.11 runs it)::

    python tests/controlplane/controlplane.py start  --dir .tmp/control-plane   # prints shell exports
    python tests/controlplane/controlplane.py status --dir .tmp/control-plane   # exit 0 when healthy
    python tests/controlplane/controlplane.py stop   --dir .tmp/control-plane

``start`` leaves both processes running detached (own session, logs and pid files in DIR) and writes
``DIR/kubeconfig`` (contexts ``admin`` -- current, group ``system:masters`` -- and ``dev`` -- no groups) and
``DIR/env`` (``export KUBECONFIG=...``, ``export PATH=<bin dir>:$PATH``, Helm home dirs).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

__all__ = [
    "BUILD_SCRIPT",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "CommandError",
    "ControlPlane",
    "ControlPlaneError",
    "main",
    "resolve_bin_dir",
]

log = logging.getLogger("controlplane")

HERE: Final = Path(__file__).resolve().parent
BUILD_SCRIPT: Final = HERE / "build.sh"

DEFAULT_READY_TIMEOUT: Final = 180.0
DEFAULT_STOP_TIMEOUT: Final = 30.0
_POLL_INTERVAL: Final = 0.2
_PORT_ATTEMPTS: Final = 3
_LOG_TAIL_LINES: Final = 40

ETCD: Final = "etcd"
APISERVER: Final = "kube-apiserver"
KUBECTL: Final = "kubectl"
HELM: Final = "helm"
REQUIRED_BINARIES: Final = (ETCD, APISERVER, KUBECTL)
ALL_BINARIES: Final = (ETCD, APISERVER, KUBECTL, HELM)

ADMIN_USER: Final = "admin"
DEV_USER: Final = "dev"
SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started, reached or stopped. The message says which part."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm call failed; unlike CalledProcessError, ``str()`` includes its stderr and stdout."""

    def __str__(self) -> str:
        parts = [f"{shlex.join(str(a) for a in self.cmd)} exited with {self.returncode}"]
        for name, text in (("stderr", self.stderr), ("stdout", self.output)):
            if text:
                parts.append(f"--- {name} ---\n{_tail_text(str(text), _LOG_TAIL_LINES)}")
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# small helpers


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log file (reads at most the last 64 KiB), or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    body = _tail_text(data, lines)
    return f"--- last {lines} lines of {path} ---\n{body}" if body else f"({path} is empty)"


def _free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the bind-and-release race is retried by start())."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(_free_port())
    return sorted(ports)


def _write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner (tokens, keys, kubeconfig), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. Reaps it if it is our child; a zombie of another parent counts as dead."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # Field 3, after the parenthesised command name (which may itself contain spaces or parens).
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _same_process(pid: int, binary: str, marker: str) -> bool:
    """Guard against pid reuse: ``pid`` runs ``binary`` with an argument that mentions ``marker`` (DIR)."""
    argv = _cmdline(pid)
    if argv is None:
        return _pid_alive(pid)  # no procfs; best effort
    if not argv:
        return False  # zombie or kernel thread
    return Path(argv[0]).name == binary and any(marker in arg for arg in argv[1:])


def _ssl_context(ca_pem: str | None) -> ssl.SSLContext:
    if ca_pem is None:
        # Only for polling before the serving cert exists; clients get the CA in their kubeconfig.
        return ssl._create_unverified_context()  # noqa: S323
    return ssl.create_default_context(cadata=ca_pem)


def _http_get(url: str, *, token: str | None, ctx: ssl.SSLContext | None, timeout: float) -> tuple[int, str]:
    """GET ``url``; returns (status, body). Connection problems raise OSError (URLError is one)."""
    request = urllib.request.Request(url)  # noqa: S310 -- http(s) to loopback only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        with contextlib.closing(err):
            return err.code, err.read().decode("utf-8", errors="replace")


def _generate_rsa_key(path: Path) -> None:
    """A throw-away RSA key that signs ServiceAccount tokens (the stdlib cannot make one; openssl can)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError("openssl is not on PATH; it makes the ServiceAccount signing key")
    path.unlink(missing_ok=True)
    proc = subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl genpkey failed ({proc.returncode}): {proc.stderr.strip()}")
    path.chmod(0o600)


def resolve_bin_dir(*, build: bool = True) -> Path:
    """The directory with the pinned binaries; runs ``build.sh all`` first if one of them is missing.

    ``build.sh`` serialises concurrent builds with a lock, so two callers never compile twice. A cold build
    takes minutes: build ahead of a test run (``tests/controlplane/build.sh``) to keep it out of test time.
    """
    if not BUILD_SCRIPT.is_file():
        raise ControlPlaneError(f"build script not found: {BUILD_SCRIPT}")
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "path"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ControlPlaneError(f"{BUILD_SCRIPT} path failed ({proc.returncode}): {proc.stderr.strip()}")
    bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    missing = [name for name in ALL_BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing and build:
        log.warning("building missing binaries %s with %s (a cold build takes minutes)", missing, BUILD_SCRIPT)
        # stdout carries only the bin dir; build progress goes to our stderr.
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), "all"], stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise ControlPlaneError(
                f"{BUILD_SCRIPT} all failed with exit code {proc.returncode} "
                f"while building {', '.join(missing)}; see its output above"
            )
    return bin_dir


# --------------------------------------------------------------------------------------------------
# the control plane


class ControlPlane:
    """kube-apiserver + etcd on random loopback ports, with all state under one directory.

    ``start()`` is idempotent: a healthy plane already running in ``directory`` (started by this process,
    another test session, ``make`` or the CLI) is reused as is. ``stop()`` stops whatever runs there.

    With ``detach=False`` (the default for library use) the processes get a parent-death signal when
    started from the main thread, and an ``atexit`` hook stops them: a crashed or interrupted test session
    leaves no orphans. The CLI passes ``detach=True`` so the plane outlives the command.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        bin_dir: Path | str | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        detach: bool = False,
        node_address: str | None = None,
        service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
    ) -> None:
        self.dir: Path = Path(directory).resolve()
        # Node mode (tests/node): serve on an address Pods reach instead of loopback only.
        self.node_address = node_address
        self.service_cidr = service_cidr
        self._bin_dir: Path | None = Path(bin_dir).resolve() if bin_dir is not None else None
        self.ready_timeout = ready_timeout
        self.detach = detach
        self._state: dict[str, Any] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._atexit_registered = False

    # ---- paths -----------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def etcd_log(self) -> Path:
        return self.dir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.dir / "kube-apiserver.log"

    @property
    def cert_dir(self) -> Path:
        return self.dir / "certs"

    @property
    def ca_file(self) -> Path:
        """The apiserver's self-signed serving cert followed by its CA (usable as a CA bundle)."""
        return self.cert_dir / "apiserver.crt"

    @property
    def helm_home(self) -> Path:
        return self.dir / "helm"

    def _pid_file(self, component: str) -> Path:
        return self.dir / f"{component}.pid"

    # ---- state of a started plane ------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """Where the pinned binaries live (asks build.sh, without building, if not known yet)."""
        if self._bin_dir is None:
            state = self._load_state()
            self._bin_dir = Path(state["bin_dir"]) if state else resolve_bin_dir(build=False)
        return self._bin_dir

    def _require_state(self) -> dict[str, Any]:
        state = self._state or self._load_state()
        if state is None:
            raise ControlPlaneError(f"no control plane started in {self.dir} (run start() first)")
        return state

    @property
    def server(self) -> str:
        return str(self._require_state()["server"])

    @property
    def admin_token(self) -> str:
        return str(self._require_state()["admin_token"])

    @property
    def dev_token(self) -> str:
        return str(self._require_state()["dev_token"])

    @property
    def pids(self) -> dict[str, int]:
        state = self._require_state()
        return {ETCD: int(state["etcd"]["pid"]), APISERVER: int(state["apiserver"]["pid"])}

    def _load_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        self._state = state
        return state

    # ---- health ----------------------------------------------------------------------------------

    def _processes_alive(self, state: Mapping[str, Any]) -> dict[str, bool]:
        marker = str(self.dir)
        return {
            ETCD: _same_process(int(state["etcd"]["pid"]), ETCD, marker),
            APISERVER: _same_process(int(state["apiserver"]["pid"]), APISERVER, marker),
        }

    def _readyz(self, state: Mapping[str, Any], *, verify: bool, timeout: float = 5.0) -> tuple[int, str]:
        ca_pem = self.ca_file.read_text() if verify else None
        return _http_get(
            f"{state['server']}/readyz",
            token=str(state["admin_token"]),
            ctx=_ssl_context(ca_pem),
            timeout=timeout,
        )

    def is_healthy(self) -> bool:
        """Both processes run (and are ours) and ``/readyz`` answers ok over verified TLS."""
        return self.health_problem() is None

    def health_problem(self) -> str | None:
        """None when healthy, otherwise a one-line reason."""
        state = self._load_state()
        if state is None:
            return f"no control plane state in {self.state_file}"
        if state.get("node_address") != self.node_address:
            return f"started with node address {state.get('node_address')}, wanted {self.node_address}"
        dead = [name for name, alive in self._processes_alive(state).items() if not alive]
        if dead:
            return f"not running: {', '.join(dead)}"
        try:
            status, body = self._readyz(state, verify=True)
        except (OSError, ssl.SSLError) as exc:
            return f"{state['server']}/readyz unreachable: {exc}"
        if status != 200:
            return f"{state['server']}/readyz returned {status}: {body.strip()[:200]}"
        return None

    # ---- start -----------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start etcd + kube-apiserver in ``dir`` and wait until ``/readyz`` is ok; reuse a healthy plane."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.is_healthy():
                log.info("reusing the healthy control plane in %s (%s)", self.dir, self.server)
                self._bin_dir = Path(self._require_state()["bin_dir"])
                return self
            if self._load_state() is not None:
                log.info(
                    "control plane in %s is not healthy (%s); starting afresh",
                    self.dir,
                    self.health_problem(),
                )
            self._stop_locked(DEFAULT_STOP_TIMEOUT)
            if self._bin_dir is None:
                self._bin_dir = resolve_bin_dir(build=True)
            missing = [name for name in REQUIRED_BINARIES if not os.access(self._bin_dir / name, os.X_OK)]
            if missing:
                raise ControlPlaneError(
                    f"missing binaries in {self._bin_dir}: {', '.join(missing)} (run {BUILD_SCRIPT} all)"
                )
            started = time.monotonic()
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                try:
                    self._start_once(deadline=started + self.ready_timeout)
                except _PortInUseError as exc:
                    self._stop_locked(DEFAULT_STOP_TIMEOUT)
                    if attempt == _PORT_ATTEMPTS:
                        raise ControlPlaneError(f"no free ports after {attempt} attempts: {exc}") from exc
                    log.warning("port race (%s); retrying with new ports", exc)
                    continue
                except BaseException:
                    self._stop_locked(DEFAULT_STOP_TIMEOUT)  # never leave orphans behind
                    raise
                break
            elapsed = time.monotonic() - started
            state = self._require_state()
            state["ready_seconds"] = round(elapsed, 2)
            _write_private(self.state_file, json.dumps(state, indent=2))
            log.info("control plane ready in %.1f s at %s (dir %s)", elapsed, self.server, self.dir)
        return self

    def _start_once(self, *, deadline: float) -> None:
        bin_dir = self.bin_dir
        etcd_client, etcd_peer, api_port = _free_ports(3)
        server = f"https://{self.node_address or '127.0.0.1'}:{api_port}"
        etcd_url = f"http://127.0.0.1:{etcd_client}"

        # Fresh, throw-away state on every start.
        for sub in ("etcd-data", "certs"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        self.cert_dir.mkdir(mode=0o700)
        sa_key = self.dir / "sa.key"
        _generate_rsa_key(sa_key)
        admin_token, dev_token = secrets.token_hex(24), secrets.token_hex(24)
        tokens = self.dir / "tokens.csv"
        _write_private(
            tokens,
            f'{admin_token},{ADMIN_USER},uid-{ADMIN_USER},"system:masters"\n{dev_token},{DEV_USER},uid-{DEV_USER}\n',
        )

        state: dict[str, Any] = {
            "version": 1,
            "node_address": self.node_address,
            "bin_dir": str(bin_dir),
            "server": server,
            "admin_token": admin_token,
            "dev_token": dev_token,
            "etcd": {"pid": 0, "client_url": etcd_url, "peer_port": etcd_peer},
            "apiserver": {"pid": 0, "port": api_port},
        }
        self._state = state

        etcd_peer_url = f"http://127.0.0.1:{etcd_peer}"
        etcd_pid = self._spawn(
            ETCD,
            [
                str(bin_dir / ETCD),
                "--name=controlplane",
                f"--data-dir={self.dir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={etcd_peer_url}",
                f"--initial-advertise-peer-urls={etcd_peer_url}",
                f"--initial-cluster=controlplane={etcd_peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.etcd_log,
        )
        state["etcd"]["pid"] = etcd_pid
        self._save_state()
        self._wait_for(ETCD, deadline, lambda: self._etcd_healthy(etcd_url))

        if self.node_address is None:
            mode_flags = [
                "--bind-address=127.0.0.1",
                # No default route on this machine: without these two the apiserver refuses to start.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                # No ServiceAccount controller, hence no "default" SA that the plugin would demand.
                "--disable-admission-plugins=ServiceAccount",
            ]
        else:
            # Node mode: Pods reach the apiserver on the node address through the `kubernetes` Service, so
            # the endpoint reconciler keeps its endpoints; the ServiceAccount admission plugin mounts the
            # token an in-cluster client needs (kube-controller-manager creates the default SAs).
            mode_flags = [
                f"--bind-address={self.node_address}",
                f"--advertise-address={self.node_address}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        api_pid = self._spawn(
            APISERVER,
            [
                str(bin_dir / APISERVER),
                f"--etcd-servers={etcd_url}",
                f"--secure-port={api_port}",
                *mode_flags,
                f"--cert-dir={self.cert_dir}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allow-privileged=true",
                "--profiling=false",
            ],
            self.apiserver_log,
        )
        state["apiserver"]["pid"] = api_pid
        self._save_state()
        self._wait_for(APISERVER, deadline, lambda: self._apiserver_ready(state))
        # TLS as clients will see it: the kubeconfig trusts the CA from --cert-dir, not "insecure".
        try:
            status, body = self._readyz(state, verify=True)
        except (OSError, ssl.SSLError) as exc:
            raise ControlPlaneError(f"kube-apiserver is ready but TLS with {self.ca_file} fails: {exc}") from exc
        if status != 200:
            raise ControlPlaneError(f"{server}/readyz returned {status} after ready: {body[:200]}")
        self._write_kubeconfig(state)
        self._write_env_file()

    def _spawn(self, component: str, argv: Sequence[str], log_path: Path) -> int:
        use_pdeathsig = (
            not self.detach
            and threading.current_thread() is threading.main_thread()
            and shutil.which("setpriv") is not None
        )
        # The kernel signals the child when the thread that forked it exits -- hence main thread only.
        command = ["setpriv", "--pdeathsig", "TERM", "--", *argv] if use_pdeathsig else list(argv)
        with log_path.open("wb") as log_fh:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # Ctrl-C in a terminal does not reach them; stop() does
                close_fds=True,
            )
        self._procs[component] = proc
        self._pid_file(component).write_text(f"{proc.pid}\n")
        if not self.detach and not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        log.debug("started %s (pid %d): %s", component, proc.pid, shlex.join(command))
        return proc.pid

    def _save_state(self) -> None:
        if self._state is not None:
            _write_private(self.state_file, json.dumps(self._state, indent=2))

    def _etcd_healthy(self, etcd_url: str) -> bool:
        try:
            status, body = _http_get(f"{etcd_url}/health", token=None, ctx=None, timeout=2.0)
        except OSError:
            return False
        return status == 200 and '"health":"true"' in body.replace(" ", "")

    def _apiserver_ready(self, state: Mapping[str, Any]) -> bool:
        try:
            status, _ = self._readyz(state, verify=False, timeout=3.0)
        except (OSError, ssl.SSLError):
            return False
        return status == 200

    def _wait_for(self, component: str, deadline: float, ready: Callable[[], bool]) -> None:
        """Poll ``ready()`` until it is true; fail fast when a process exits, or at the deadline."""
        logs = {ETCD: self.etcd_log, APISERVER: self.apiserver_log}
        while True:
            for name, proc in self._procs.items():
                code = proc.poll()
                if code is not None:
                    tail = _tail(logs[name])
                    if "address already in use" in tail:
                        raise _PortInUseError(f"{name} could not bind its port")
                    raise ControlPlaneError(f"{name} exited with code {code} while starting\n{tail}")
            if ready():
                return
            if time.monotonic() >= deadline:
                detail = ""
                if component == APISERVER and self._state is not None:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        status, body = _http_get(
                            f"{self._state['server']}/readyz?verbose",
                            token=str(self._state["admin_token"]),
                            ctx=_ssl_context(None),
                            timeout=5.0,
                        )
                        failing = [line for line in body.splitlines() if "fail" in line.lower()]
                        detail = f"; /readyz returned {status}: {'; '.join(failing) or body[:300]}"
                tail = _tail(logs[component])
                raise ControlPlaneError(f"{component} not ready within {self.ready_timeout:.0f} s{detail}\n{tail}")
            time.sleep(_POLL_INTERVAL)

    # ---- files for clients -------------------------------------------------------------------------

    def _write_kubeconfig(self, state: Mapping[str, Any]) -> None:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": state["server"], "certificate-authority-data": ca_data},
                }
            ],
            "users": [
                {"name": ADMIN_USER, "user": {"token": state["admin_token"]}},
                {"name": DEV_USER, "user": {"token": state["dev_token"]}},
            ],
            "contexts": [
                {"name": ADMIN_USER, "context": {"cluster": "local", "user": ADMIN_USER}},
                {"name": DEV_USER, "context": {"cluster": "local", "user": DEV_USER}},
            ],
            "current-context": ADMIN_USER,
            "preferences": {},
        }
        _write_private(self.kubeconfig, json.dumps(config, indent=2) + "\n")

    def _helm_env(self) -> dict[str, str]:
        return {
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }

    def _write_env_file(self) -> None:
        lines = [
            f"export KUBECONFIG={shlex.quote(str(self.kubeconfig))}",
            f'export PATH={shlex.quote(str(self.bin_dir))}:"$PATH"',
            *(f"export {key}={shlex.quote(value)}" for key, value in self._helm_env().items()),
        ]
        self.env_file.write_text("\n".join(lines) + "\n")

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses: ``base`` (default os.environ) + KUBECONFIG, PATH, Helm homes."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), *filter(None, [env.get("PATH")])])
        env.update(self._helm_env())
        return env

    # ---- clients -----------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        as_user: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this plane (text mode, output captured).

        ``as_user``: ``"admin"`` or ``"dev"`` authenticate with that user's own token (kubeconfig context);
        any other name is impersonated by the admin (``--as=NAME``, e.g. ``system:serviceaccount:ns:sa``).
        Raises CommandError (with stderr in its message) on a non-zero exit when ``check`` is true.
        """
        flags = [f"--kubeconfig={self.kubeconfig}"]
        if as_user in (ADMIN_USER, DEV_USER):
            flags.append(f"--context={as_user}")
        elif as_user is not None:
            flags.append(f"--as={as_user}")
        return self._run([str(self.bin_dir / KUBECTL), *flags, *args], check=check, input=input, timeout=timeout)

    def helm(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this plane, with its cache/config/data homes under ``dir``.

        Remember: no controller-manager, so never ``--wait`` and prefer ``--no-hooks``.
        """
        helm = self.bin_dir / HELM
        if not os.access(helm, os.X_OK):
            raise ControlPlaneError(f"helm is not built in {self.bin_dir} (run {BUILD_SCRIPT} helm)")
        return self._run(
            [str(helm), f"--kubeconfig={self.kubeconfig}", *args], check=check, input=input, timeout=timeout
        )

    def _run(
        self, argv: list[str], *, check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, argv, output=proc.stdout, stderr=proc.stderr)
        return proc

    # ---- stop --------------------------------------------------------------------------------------

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM kube-apiserver, then etcd; SIGKILL after ``timeout`` s. Fine if they are gone."""
        if not self.dir.is_dir():
            return
        with self._lock():
            self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> None:
        marker = str(self.dir)
        for component in (APISERVER, ETCD):  # apiserver first: it needs etcd to shut down cleanly
            pid = self._known_pid(component)
            proc = self._procs.pop(component, None)
            if proc is not None:
                _terminate_child(component, proc, timeout)
            elif pid and _same_process(pid, component, marker):
                _terminate_pid(component, pid, timeout)
            self._pid_file(component).unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        self._state = None

    def _known_pid(self, component: str) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(self._pid_file(component).read_text().strip())
        state = self._state
        if state is not None:
            key = "etcd" if component == ETCD else "apiserver"
            return int(state[key]["pid"]) or None
        return None

    def _stop_at_exit(self) -> None:
        if self._procs:
            with contextlib.suppress(Exception):
                self.stop()

    @contextlib.contextmanager
    def _lock(self, timeout: float | None = None) -> Iterator[None]:
        """An exclusive lock on ``dir`` so two processes never start/stop the same plane at once."""
        wait = timeout if timeout is not None else self.ready_timeout + 2 * DEFAULT_STOP_TIMEOUT
        deadline = time.monotonic() + wait
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise ControlPlaneError(
                            f"{self.dir} is locked by another start/stop for more than {wait:.0f} s"
                        ) from exc
                    time.sleep(_POLL_INTERVAL)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ---- context manager ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ControlPlane(dir={str(self.dir)!r})"


class _PortInUseError(Exception):
    """A picked port was taken between picking and binding; start() retries with new ports."""


def _terminate_child(component: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", component, proc.pid, timeout)
        proc.kill()
        proc.wait(10)


def _terminate_pid(component: str, pid: int, timeout: float) -> None:
    """Stop a process that another process started (the CLI, make): we cannot wait() for it, so poll."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(_POLL_INTERVAL)
        if sig == signal.SIGTERM:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", component, pid, timeout)
    raise ControlPlaneError(f"{component} (pid {pid}) survived SIGKILL")


# --------------------------------------------------------------------------------------------------
# command line


def _cmd_start(args: argparse.Namespace, out: TextIO) -> int:
    plane = ControlPlane(args.dir, ready_timeout=args.timeout, detach=True).start()
    out.write(plane.env_file.read_text())
    return 0


def _cmd_stop(args: argparse.Namespace, out: TextIO) -> int:
    ControlPlane(args.dir).stop(timeout=args.timeout)
    return 0


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    plane = ControlPlane(args.dir)
    problem = plane.health_problem()
    if problem is not None:
        log.error("control plane in %s is not healthy: %s", plane.dir, problem)
        return 1
    out.write(
        json.dumps(
            {
                "dir": str(plane.dir),
                "server": plane.server,
                "kubeconfig": str(plane.kubeconfig),
                "pids": plane.pids,
            }
        )
        + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="controlplane.py", description="A local kube-apiserver + etcd for tests (envtest-style)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start (or reuse) a plane in DIR; prints shell exports on stdout")
    start.add_argument("--dir", required=True, type=Path)
    start.add_argument("--timeout", type=float, default=DEFAULT_READY_TIMEOUT, help="seconds to wait for /readyz")
    start.set_defaults(func=_cmd_start)
    stop = sub.add_parser("stop", help="stop the plane in DIR (fine if nothing runs)")
    stop.add_argument("--dir", required=True, type=Path)
    stop.add_argument("--timeout", type=float, default=DEFAULT_STOP_TIMEOUT, help="seconds before SIGKILL")
    stop.set_defaults(func=_cmd_stop)
    status = sub.add_parser("status", help="exit 0 if the plane in DIR is healthy")
    status.add_argument("--dir", required=True, type=Path)
    status.set_defaults(func=_cmd_status)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[controlplane] %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args, sys.stdout)
    except ControlPlaneError as exc:
        log.error("%s", exc)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
