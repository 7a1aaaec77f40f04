"""The process that executes one run: book/run.ipynb through papermill, in a kernel of its own.

Most of a short run's cost used to be imports: papermill in this process, then torch,
torch._dynamo (which torch.optim imports on first use), lab2 and matplotlib again in a
fresh kernel. Here everything a run imports is imported once, when this module is: a sweep
preloads it into a fork server (lab2.runs.executors), whose forks start with it all loaded.
A CPU run's kernel is a fork too. It is forked first thing, while this process is still single
threaded (before papermill starts its event loop, sockets and threads), and waits; when
papermill asks for a kernel, `ForkedKernelProvisioner` hands it the connection file and it
becomes an ordinary IPython kernel. The kernel stays this process's child, in its process
group, so a run is still one process tree that stopping kills whole.
"""

import ctypes
import json
import os
import signal
import sys
import threading

import psutil

# nbformat's validation imports jsonschema, which imports rfc3987_syntax when it is installed
# and builds a URI grammar for a format no notebook uses: a second of every import. Without it,
# jsonschema skips that format check.
sys.modules.setdefault("rfc3987_syntax", None)

import ipykernel.ipkernel  # noqa: E402,F401 - preloaded: what the kernel runs
import matplotlib  # noqa: E402
import matplotlib.figure  # noqa: E402,F401 - preloaded: the run's figure
import papermill  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402,F401 - preloaded: torch.optim imports it on an optimizer's first use
from ipykernel.kernelapp import IPKernelApp  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from jupyter_client.provisioning import LocalProvisioner  # noqa: E402
from tqdm import tqdm  # noqa: E402

import lab2.core.train  # noqa: E402,F401 - preloaded: the run's code
from lab2 import PROJECT_ROOT  # noqa: E402
from lab2.runs import record  # noqa: E402,F401 - preloaded: save_run

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent thread dies
KERNEL_MODULE = "ipykernel_launcher"  # what a kernelspec's command runs; the fork runs IPKernelApp instead


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask Linux for `signum` when the thread that started us dies; exit if `parent` already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return  # not Linux: the sweep's own stop path still kills the tree
    if os.getppid() != parent:
        os._exit(1)


def _kill_children_and_exit(signum, frame) -> None:
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(128 + signum)


class ForkedKernel:
    """A fork of this process that waits to become the run's kernel; Popen's interface, for jupyter_client."""

    stdin = stdout = stderr = None

    def __init__(self, threads: int):
        self.returncode = None
        read_end, self._write_end = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._write_end)
            die_with_parent(parent, signal.SIGKILL)
            self._become_kernel(read_end, threads)
        os.close(read_end)

    @staticmethod
    def _become_kernel(read_end: int, threads: int) -> None:
        """In the fork: wait for the kernel's command, then serve as the kernel until shut down."""
        with os.fdopen(read_end, "rb") as pipe:
            request = pipe.read()
        if not request:  # the run ended before it asked for a kernel
            os._exit(0)
        launch = json.loads(request)
        os.environ.update(launch["env"])
        os.chdir(launch["cwd"])
        # torch read OMP_NUM_THREADS when the fork server imported it; the run's own count applies from here.
        torch.set_num_threads(threads)
        # tqdm guards its bars with a multiprocessing lock, registered with the sweep's resource tracker
        # (forks share it); a kernel that is killed never unregisters it and the sweep would warn at exit.
        # One kernel is one process: a thread lock is all its bars need.
        tqdm.set_lock(threading.RLock())
        kernel = IPKernelApp.instance(parent_handle=int(launch["env"]["JPY_PARENT_PID"]))
        kernel.initialize(launch["argv"])
        # matplotlib read MPLBACKEND when the fork server imported it; the kernel has just set it (inline).
        matplotlib.rcParams["backend"] = os.environ["MPLBACKEND"]
        kernel.start()
        os._exit(0)

    def start(self, argv: list[str], env: dict, cwd: str) -> None:
        """Make the waiting fork a kernel with these IPKernelApp arguments (the kernelspec's, after its module)."""
        with os.fdopen(self._write_end, "wb") as pipe:
            pipe.write(json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode())

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:  # jupyter_client waits only once poll() has seen the kernel end
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_WAITING_KERNEL: ForkedKernel | None = None  # this run's kernel-to-be, forked by main()


class ForkedKernelProvisioner(LocalProvisioner):
    """Launches the kernel by waking this process's waiting fork instead of starting a new Python."""

    async def launch_kernel(self, cmd: list[str], **kwargs) -> dict:
        if KERNEL_MODULE not in cmd:
            raise RuntimeError(f"the notebook's kernel runs {' '.join(cmd)}; a run needs the IPython kernel "
                               f"({KERNEL_MODULE})")
        # JPY_PARENT_PID, as jupyter_client's launcher sets it: the kernel watches this process and exits with it.
        environment = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
        _WAITING_KERNEL.start(cmd[cmd.index(KERNEL_MODULE) + 1:], environment, str(kwargs.get("cwd") or os.getcwd()))
        self.process = _WAITING_KERNEL
        self.pid, self.pgid = _WAITING_KERNEL.pid, None  # signals go to the kernel, not to this process's group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class ForkedKernelManager(AsyncKernelManager):
    """papermill's kernel manager, with the forked kernel's provisioner."""

    async def _async_pre_start_kernel(self, **kw):
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or os.urandom(16).hex()
            self.provisioner = ForkedKernelProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                       parent=self)
        return await super()._async_pre_start_kernel(**kw)


def main(notebook: str, output: str, parameters: dict, threads: int) -> None:
    """Execute `notebook` into `output` with papermill; a signal kills the kernel with this process.

    A CPU run's kernel is a fork of this process; a run that may use CUDA gets a fresh kernel
    from jupyter_client, so that CUDA starts in a process no import of ours has touched.
    """
    global _WAITING_KERNEL
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _kill_children_and_exit)
    kernel = {}
    if parameters["device"] == "cpu":
        _WAITING_KERNEL = ForkedKernel(threads)
        kernel["kernel_manager_class"] = ForkedKernelManager
    # The kernel is killed, not asked to stop, once the last cell has run: every file the run writes is
    # closed by then, and a polite shutdown waits most of a second for torch to tear itself down.
    papermill.execute_notebook(notebook, output, parameters=parameters, cwd=str(PROJECT_ROOT), progress_bar=False,
                               shutdown_kernel="immediate", **kernel)


if __name__ == "__main__":  # started as a process of its own, where a run cannot be forked (executors)
    die_with_parent(int(os.environ["LAB2_PARENT_PID"]))
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
