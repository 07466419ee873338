"""A real single-node Kubernetes cluster on this machine, for the chart's Pods (tests/node, the demo).

What runs (everything pinned and built by the project, nothing pulled):

* the control plane of ``tests/controlplane`` in *node mode* (kube-apiserver on the node address, the
  endpoint reconciler and the ServiceAccount admission plugin on) + etcd on loopback;
* kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables mode) and CoreDNS, built from Go
  modules by ``tests/controlplane/build.sh node``;
* containerd + runc from Debian (``tests/node/setup.sh``), a private instance with its own root, state,
  socket and CNI config; the operator image and the pause image come from ``tests/node/build_image.sh``.

Networking stays inside this run: Pods live in network namespaces containerd creates, on a bridge of the
run's own (``nfllm0``, CNI ``bridge`` + ``host-local``) with Pod and Service ranges nothing else uses. The
Pods get no default route (only the Pod subnet and the Service range); forwarding is on for the bridge
alone (the machine-wide switch is left as it is) and an iptables rule of ours drops anything forwarded
off the bridge, so no Pod packet can leave for an address outside the run; the apiserver, CoreDNS and
the kubelet listen on the bridge address only.

``stop()`` tears everything down -- processes, mounts, network namespaces, the bridge, the iptables chains,
the pod cgroups and the kernel settings kubelet changes -- and so does the next ``start()`` for a run that
was killed before it could clean up. One node per machine (a lock), since kube-proxy's iptables chains are
machine-wide.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from tests.controlplane.controlplane import ControlPlane, ControlPlaneError, _free_ports, _tail

log = logging.getLogger("node")

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent.parent
BUILD_TOOLS: Final = HERE.parent / "controlplane" / "build.sh"
BUILD_IMAGE: Final = HERE / "build_image.sh"
SETUP: Final = HERE / "setup.sh"

# Root-owned, on disk (containerd's overlay snapshots live here), one per machine.
NODE_DIR: Final = Path(os.environ.get("NFLLM_NODE_DIR", "/var/lib/northflank-llm-operator/node"))
NODE_NAME: Final = "nfllm-node"
BRIDGE: Final = "nfllm0"
GUARD_CHAIN: Final = "NFLLM-FORWARD"
# Ranges picked to be unused here (checked at start): the Pod subnet on the bridge, and the Services.
NODE_ADDRESS: Final = "10.213.0.1"
POD_CIDR: Final = "10.213.0.0/24"
SERVICE_CIDR: Final = "10.213.128.0/24"
CLUSTER_DOMAIN: Final = "cluster.local"
CNI_BIN_DIR: Final = "/usr/lib/cni"
# What kubelet sets when protectKernelDefaults is off; restored on stop().
KUBELET_SYSCTLS: Final = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
OUR_SYSCTLS: Final = ("net/bridge/bridge-nf-call-iptables",)
PACKAGES_BINARIES: Final = ("containerd", "runc", "ctr", "iptables", "ip6tables", "conntrack", "buildah", "mmdebstrap")
NODE_BINARIES: Final = ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns")

DEFAULT_TIMEOUT: Final = 240.0
_POLL: Final = 0.5


class NodeError(RuntimeError):
    """The node could not be built, started or stopped; the message says which part."""


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def unavailable_reason() -> str | None:
    """Why a node cannot start on this machine (None: it can). Cheap: no build, no apt."""
    if os.geteuid() != 0:
        return "the node tests need root (containerd, runc, kubelet and a network bridge)"
    if not Path("/proc/self/ns/net").exists():
        return "no network namespaces on this machine"
    probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot create namespaces (unshare: {probe.stderr.decode(errors='replace').strip()})"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem"
    return None


def missing_packages() -> list[str]:
    return [name for name in PACKAGES_BINARIES if shutil.which(name) is None] + [
        f"CNI plugins in {CNI_BIN_DIR}" for _ in [0] if not (Path(CNI_BIN_DIR) / "bridge").exists()
    ]


def node_bin_dir() -> Path:
    """Build (once; cached) and locate kubelet & co. and CoreDNS."""
    proc = subprocess.run(["bash", str(BUILD_TOOLS), "node"], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise NodeError(f"{BUILD_TOOLS} node failed with exit code {proc.returncode}; see its output above")
    return Path(proc.stdout.strip().splitlines()[-1])


def build_image(which: str = "") -> tuple[str, Path]:
    """(image name, docker-archive path) of the operator image (or ``which="pause"``), built if needed."""
    proc = subprocess.run(
        ["bash", str(BUILD_IMAGE), *([which] if which else [])], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise NodeError(f"{BUILD_IMAGE} {which} failed with exit code {proc.returncode}; see its output above")
    name, archive = proc.stdout.strip().splitlines()[-1].split()
    return name, Path(archive)


class Node:
    """kubelet & co. + containerd against a node-mode control plane, all state under ``NODE_DIR``."""

    def __init__(self, directory: Path = NODE_DIR, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.dir = directory.resolve()
        self.timeout = timeout
        self.plane = ControlPlane(self.dir / "control-plane", node_address=NODE_ADDRESS, service_cidr=SERVICE_CIDR)
        self.image = ""
        self.timings: dict[str, float] = {}
        #: Machine-wide IP forwarding as found before the start; the node never changes it (tests check it).
        self.ip_forward_before = ""
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock_fd: int | None = None
        self._atexit = False

    # ---- paths -------------------------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def _log_path(self, component: str) -> Path:
        return self.dir / f"{component}.log"

    @property
    def _state_file(self) -> Path:
        return self.dir / "node-state.json"

    # ---- start -------------------------------------------------------------------------------------

    def start(self) -> Node:
        reason = unavailable_reason()
        if reason is not None:
            raise NodeError(reason)
        missing = missing_packages()
        if missing:
            raise NodeError(f"missing {', '.join(missing)}: run tests/node/setup.sh (make test does)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_machine_lock()
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        try:
            self._cleanup_leftovers()
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_machine_lock(self) -> None:
        fd = os.open(self.dir.parent / f".{self.dir.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise NodeError(f"another node on this machine holds {self.dir} for more than 600 s") from None
                time.sleep(1)
        self._lock_fd = fd

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)
        log.info("node: %s took %.1f s", name, self.timings[name])

    def _start(self) -> None:
        t = time.monotonic()
        bins = node_bin_dir()
        self._timed("node binaries", t)
        t = time.monotonic()
        self.image, app_archive = build_image()
        pause_image, pause_archive = build_image("pause")
        self._timed("images", t)

        t0 = time.monotonic()
        for sub in ("containerd", "kubelet", "cni", "netns", "pod-logs", "coredns"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True)
        self.ip_forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self._save_state({"sysctls": self._read_sysctls(), "started": time.time()})
        self._setup_bridge()

        self.plane.start()
        kubeconfig = self.plane.kubeconfig
        self._spawn_containerd(pause_image)
        self._wait("containerd", lambda: self._ctr("version", check=False).returncode == 0)
        for archive in (pause_archive, app_archive):
            self._ctr("images", "import", str(archive), timeout=300)
        self._timed("containerd + image import", t0)

        healthz_kubelet, kubelet_port, healthz_proxy, metrics_proxy, cm_port, sched_port = _free_ports(6)
        self._spawn_kubelet(bins, kubeconfig, pause_image, kubelet_port, healthz_kubelet)
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--service-account-private-key-file={self.plane.dir / 'sa.key'}",
                f"--root-ca-file={self.plane.ca_file}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
            ],
        )
        self._spawn_kube_proxy(bins, kubeconfig, healthz_proxy, metrics_proxy)
        self._spawn_coredns(bins, kubeconfig)
        self._wait("node Ready", self._node_ready)
        self._wait("the default ServiceAccount", self._default_service_account)
        self._timed("node start", t0)

    def _save_state(self, state: dict[str, Any]) -> None:
        self._state_file.write_text(json.dumps(state))

    # ---- networking ----------------------------------------------------------------------------------

    def _setup_bridge(self) -> None:
        routes = _run(["ip", "-4", "route", "show", "table", "all"]).stdout
        for cidr in (POD_CIDR, SERVICE_CIDR):
            prefix = cidr.rsplit(".", 2)[0]
            if prefix + "." in routes:
                raise NodeError(f"{cidr} is already routed on this machine: {routes}")
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_ADDRESS}/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        # Service traffic between Pods on the bridge goes through kube-proxy's iptables rules only when
        # bridged packets pass iptables.
        self._write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
        # A Service's DNAT to a Pod on the same bridge is a forwarding decision: forwarding is turned on
        # for packets that arrive on this bridge only (the machine-wide switch stays as it is), and a
        # rule of ours drops whatever would be forwarded from the bridge anywhere but back onto it.
        self._write_sysctl(f"net/ipv4/conf/{BRIDGE}/forwarding", "1")
        _run(["iptables", "-w", "-N", GUARD_CHAIN])
        _run(["iptables", "-w", "-A", GUARD_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"])
        _run(["iptables", "-w", "-A", GUARD_CHAIN, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"])
        _run(["iptables", "-w", "-I", "FORWARD", "1", "-j", GUARD_CHAIN])
        conf = {
            "cniVersion": "1.0.0",
            "name": "nfllm",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    # Not a gateway: the plugin would turn IP forwarding on. The bridge address is ours.
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "rangeStart": "10.213.0.10", "gateway": NODE_ADDRESS}]],
                        # The Pod subnet is on the bridge; Services go through the node. Nothing else.
                        "routes": [{"dst": SERVICE_CIDR, "gw": NODE_ADDRESS}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (self.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "net.d" / "10-nfllm.conflist").write_text(json.dumps(conf, indent=2))

    @staticmethod
    def _sysctl_path(name: str) -> Path:
        return Path("/proc/sys") / name

    def _read_sysctls(self) -> dict[str, str]:
        values = {}
        for name in (*KUBELET_SYSCTLS, *OUR_SYSCTLS):
            with contextlib.suppress(OSError):
                values[name] = self._sysctl_path(name).read_text().strip()
        return values

    def _write_sysctl(self, name: str, value: str) -> None:
        try:
            self._sysctl_path(name).write_text(value)
        except OSError as exc:
            raise NodeError(f"cannot set {name.replace('/', '.')}={value}: {exc}") from exc

    # ---- processes ---------------------------------------------------------------------------------

    def _spawn(self, component: str, argv: Sequence[str]) -> None:
        use_pdeathsig = threading.current_thread() is threading.main_thread() and shutil.which("setpriv")
        command = ["setpriv", "--pdeathsig", "KILL", "--", *argv] if use_pdeathsig else list(argv)
        with self._log_path(component).open("wb") as fh:
            self._procs[component] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        (self.dir / f"{component}.pid").write_text(f"{self._procs[component].pid}\n")

    def _spawn_containerd(self, pause_image: str) -> None:
        d = self.dir / "containerd"
        config = f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{d / "ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # Lowering oom_score_adj is refused here even for root; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  netns_mounts_under = "{self.dir / "netns"}"
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.dir / "cni" / "net.d"}"
"""
        (d / "config.toml").write_text(config)
        self._spawn("containerd", [shutil.which("containerd") or "containerd", "--config", str(d / "config.toml")])

    def _ctr(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return _run(["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
                    check=check, timeout=timeout)  # fmt: skip

    def _spawn_kubelet(self, bins: Path, kubeconfig: Path, pause_image: str, port: int, healthz_port: int) -> None:
        d = self.dir / "kubelet"
        (self.dir / "resolv.conf").write_text("")  # Pods resolve through CoreDNS only, never the host's DNS.
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_ADDRESS,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            # Serves only on the run's bridge; the apiserver reaches it for `kubectl logs`.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            # Mounted Secrets reach Pods within seconds (default: a minute), so rotation tests stay short.
            "syncFrequency": "5s",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [NODE_ADDRESS],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(self.dir / "resolv.conf"),
            "podLogsDir": str(self.dir / "pod-logs"),
            "failSwapOn": False,
            "failCgroupV1": False,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "maxPods": 30,
            "staticPodPath": "",
            "rotateCertificates": False,
        }  # fmt: skip
        (d / "config.json").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(bins / "kubelet"),
                f"--config={d / 'config.json'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={d}",
                f"--cert-dir={d / 'pki'}",
                f"--node-ip={NODE_ADDRESS}",
                f"--hostname-override={NODE_NAME}",
                f"--pod-infra-container-image={pause_image}",
                "--v=1",
            ],
        )

    def _spawn_kube_proxy(self, bins: Path, kubeconfig: Path, healthz_port: int, metrics_port: int) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "bindAddress": NODE_ADDRESS,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "nodePortAddresses": [f"{NODE_ADDRESS}/32"],
            # 0 = leave the machine's conntrack settings alone; no route_localnet for localhost NodePorts.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
        }
        path = self.dir / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(bins / "kube-proxy"), f"--config={path}"])

    def _spawn_coredns(self, bins: Path, kubeconfig: Path) -> None:
        # Cluster names only, no forwarding: nothing resolves to (or asks) anything outside the run.
        corefile = f""".:53 {{
    bind {NODE_ADDRESS}
    errors
    health 127.0.0.1:{_free_ports(1)[0]}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} admin
        pods insecure
    }}
    cache 5
}}
"""
        path = self.dir / "coredns" / "Corefile"
        path.write_text(corefile)
        self._spawn("coredns", [str(bins / "coredns"), "-conf", str(path)])

    # ---- readiness ----------------------------------------------------------------------------------

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise NodeError(f"{name} exited with {proc.returncode} while waiting for {what}\n"
                                    f"{_tail(self._log_path(name))}")  # fmt: skip
            if ready():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(_tail(self._log_path(name), 15) for name in self._procs)
                raise NodeError(f"{what} not reached within {self.timeout:.0f} s\n{tails}")
            time.sleep(_POLL)

    def _node_ready(self) -> bool:
        proc = self.plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        return self.plane.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def logs(self) -> str:
        """The last lines of every component's log (for failure messages)."""
        return "\n".join(_tail(self._log_path(name), 20) for name in (*self._procs, "containerd"))

    # ---- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Tear down everything this node started. Safe to call twice, and on a half-started node."""
        if not self.dir.is_dir():
            return
        problems: list[str] = []
        for component in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "coredns"):
            self._stop_component(component, problems)
        self._kill_containers(problems)
        self._stop_component("containerd", problems)
        self._kill_shims(problems)
        self._unmount_all(problems)
        self._cleanup_network(problems)
        self._remove_cgroups(problems)
        self._restore_sysctls(problems)
        with contextlib.suppress(ControlPlaneError):
            # In node mode kube-apiserver drains for a long while after SIGTERM; nothing is left to drain.
            self.plane.stop(timeout=5)
        self._state_file.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if problems:
            log.warning("node cleanup left problems: %s", "; ".join(problems))

    def _cleanup_leftovers(self) -> None:
        """A run killed before its cleanup (SIGKILL, power) left processes, mounts or rules: remove them."""
        if self._state_file.exists() or any(self._pids_from_files()) or _link_exists(BRIDGE):
            log.warning("cleaning up what an earlier node run in %s left behind", self.dir)
            self.stop()
            self._take_machine_lock()

    def _pids_from_files(self) -> Iterator[tuple[str, int]]:
        for pid_file in self.dir.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                yield pid_file.stem, int(pid_file.read_text().strip())

    def _stop_component(self, component: str, problems: list[str]) -> None:
        proc = self._procs.pop(component, None)
        pid = proc.pid if proc is not None else None
        pid_file = self.dir / f"{component}.pid"
        if pid is None:
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text().strip())
        if pid is not None and _is_ours(pid, str(self.dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, proc, 20.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pid, proc, 10.0):
                    problems.append(f"{component} (pid {pid}) survived SIGKILL")
        pid_file.unlink(missing_ok=True)

    def _kill_containers(self, problems: list[str]) -> None:
        """Every process in the Pods' cgroups (the containers and the pause processes)."""
        for _ in range(3):
            pids = _cgroup_pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        if _cgroup_pids():
            problems.append(f"Pod processes survived SIGKILL: {sorted(_cgroup_pids())}")

    def _kill_shims(self, problems: list[str]) -> None:
        """containerd-shim-runc-v2 processes of this containerd (they outlive containerd by design)."""
        marker = str(self.containerd_socket)
        for pid in _all_pids():
            argv = _cmdline(pid)
            if argv and Path(argv[0]).name.startswith("containerd-shim") and marker in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pid, None, 10.0):
                    problems.append(f"shim {pid} survived SIGKILL")

    def _unmount_all(self, problems: list[str]) -> None:
        """Every mount under the node dir (rootfs overlays, shm, volumes, network namespaces), deepest first."""
        prefix = str(self.dir) + "/"
        for _ in range(3):
            mounts = sorted(
                (m for m in _mountpoints() if m.startswith(prefix)),
                key=len,
                reverse=True,
            )
            if not mounts:
                return
            for mount in mounts:
                if subprocess.run(["umount", mount], capture_output=True, check=False).returncode != 0:
                    subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        left = [m for m in _mountpoints() if m.startswith(prefix)]
        if left:
            problems.append(f"mounts left: {left}")

    def _cleanup_network(self, problems: list[str]) -> None:
        bins = None
        with contextlib.suppress(NodeError):
            proc = subprocess.run(["bash", str(BUILD_TOOLS), "node-path"], capture_output=True, text=True, check=False)
            bins = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
        if bins is not None and (bins / "kube-proxy").exists():
            subprocess.run([str(bins / "kube-proxy"), "--cleanup"], capture_output=True, check=False, timeout=60)
        for tool in ("iptables", "ip6tables"):
            _remove_chains(tool, ("KUBE-", "CNI-", "NFLLM-"), problems)
        if _link_exists(BRIDGE):
            for veth in _bridge_ports(BRIDGE):
                subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
            if subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False).returncode != 0:
                problems.append(f"bridge {BRIDGE} could not be deleted")
        for link in Path("/var/log/containers").glob("*.log"):
            with contextlib.suppress(OSError):
                if str(self.dir) in os.readlink(link):
                    link.unlink()

    def _remove_cgroups(self, problems: list[str]) -> None:
        for root in Path("/sys/fs/cgroup").iterdir():
            top = root / "kubepods"
            if not top.is_dir():
                continue
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            try:
                top.rmdir()
            except OSError as exc:
                problems.append(f"{top}: {exc}")

    def _restore_sysctls(self, problems: list[str]) -> None:
        try:
            saved: dict[str, str] = json.loads(self._state_file.read_text()).get("sysctls", {})
        except (OSError, ValueError):
            return
        for name, value in saved.items():
            try:
                if self._sysctl_path(name).read_text().strip() != value:
                    self._sysctl_path(name).write_text(value)
            except OSError as exc:
                problems.append(f"sysctl {name}: {exc}")


# ---- process and kernel helpers --------------------------------------------------------------------


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, marker: str) -> bool:
    """Guard against pid reuse: the process still mentions the node dir in its command line."""
    return any(marker in arg for arg in _cmdline(pid))


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                return True
            if state in {"Z", "X"}:
                return True
        time.sleep(0.1)
    return False


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for procs in Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in procs.read_text().split())
    return pids


def _mountpoints() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        points.append(point)
    return points


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _bridge_ports(bridge: str) -> list[str]:
    brif = Path("/sys/class/net", bridge, "brif")
    return [p.name for p in brif.iterdir()] if brif.is_dir() else []


def _remove_chains(tool: str, prefixes: tuple[str, ...], problems: list[str]) -> None:
    """Delete every rule that jumps to a chain with one of ``prefixes``, then those chains, in all tables."""
    if shutil.which(tool) is None:
        return
    for table in ("filter", "nat", "mangle", "raw"):
        proc = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            continue
        chains = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("-N ")]
        ours = [c for c in chains if c.startswith(prefixes)]
        if not ours:
            continue
        for line in proc.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["-A"] and not parts[1].startswith(prefixes) and any(c in parts for c in ours):
                subprocess.run([tool, "-w", "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
        for chain in ours:
            subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
        for chain in ours:
            if subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True, check=False).returncode:
                problems.append(f"{tool} -t {table}: chain {chain} could not be deleted")


@contextlib.contextmanager
def running_node(directory: Path = NODE_DIR) -> Iterator[Node]:
    node = Node(directory).start()
    try:
        yield node
    finally:
        node.stop()
