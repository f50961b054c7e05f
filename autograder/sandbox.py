"""A kernel manager that runs each grading kernel in a sandbox.

What nbgrader lacks: its kernels run as the grader, in the grader's network, able to read the
course's solutions and write to its gradebook. :class:`SandboxKernelManager` (set up by
:class:`autograder.execute.GradingExecute`) starts every kernel

* in a fresh working folder outside the course (a copy of the assignment's data files only),
  with HOME, MPLCONFIGDIR and IPYTHONDIR inside it;
* under resource limits (``prlimit``: address space, CPU time, processes, file size);
* when running as root with ``unshare`` and ``setpriv`` available: as an unprivileged user
  (one per grading worker, created with ``useradd`` when missing), in private network, PID and
  mount namespaces, with the course's private folders (``solutions/``, the gradebook, the
  submissions, the output folder...) covered by empty tmpfs mounts.

The kernel talks to the grader over ZeroMQ ``ipc`` sockets at an absolute path in its own
folder (TCP on the host's loopback is unreachable from a private network namespace).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, DottedObjectName, Integer, List, Type, Unicode, default

from autograder import REPO

#: Folders of the repository a student's kernel never needs (everything but .venv, emlib, data).
PRIVATE_REPO_FOLDERS = ("solutions", "autograder", "tests", "benchmarks", ".git", "course")
#: Where isolated kernels get their folders (outside /tmp, which they see as a private tmpfs).
KERNELS = Path("/run/autograder-kernels")
#: Shared scratch folders replaced by a private, writable tmpfs in an isolated kernel.
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
#: The script that sets up an isolated kernel's mounts and drops privileges.
ISOLATE_SCRIPT = Path(__file__).with_name("isolate.sh")
#: Files every kernel imports from its own lib/ folder: the grading runtime, the wire format
#: and the stand-in for emlib (with the real emlib.stopping).
KERNEL_LIB = Path(__file__).with_name("kernel_lib")
_slot: tuple[int, int, object] | None = None  # (pid, slot, lock file held until exit)
#: The kernels this process has started and not yet cleaned up (see :func:`kill_kernels`).
_LIVE: dict[int, SandboxKernelManager] = {}
#: Set by the grader (its run's scratch folder): every kernel folder is recorded in its
#: ``kernels/`` subfolder, so that the run can remove them even if a worker is killed.
SCRATCH_ENV = "AUTOGRADER_SCRATCH"


def kill_kernels() -> None:
    """End every kernel this process started, at once, and remove their folders.

    For a grading worker told to stop (SIGTERM): no message to a kernel, no waiting. Each
    kernel runs in its own session (jupyter_client), so killing its process group ends it and
    anything it started; an isolated kernel's ``unshare --kill-child`` takes its whole PID
    namespace with it.
    """
    import signal

    for km in list(_LIVE.values()):
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is not None:
            for kill in (os.killpg, os.kill):
                try:
                    kill(process.pid, signal.SIGKILL)
                except OSError:
                    pass
        km._forget_box()


def remove_recorded_kernels(scratch: Path) -> None:
    """Remove the kernel folders recorded in ``scratch`` (a grading run's scratch folder)."""
    roots = {KERNELS.resolve(), Path(tempfile.gettempdir()).resolve()}
    for mark in sorted((Path(scratch) / "kernels").glob("kernel-*")):
        try:
            box = Path(mark.read_text().strip())
        except OSError:
            continue
        if box.name == mark.name and box.parent.resolve() in roots:
            shutil.rmtree(box, ignore_errors=True)


#: Kernel folders in KERNELS without an owner lock (left by an older grader) count as stale
#: after this many seconds.
UNOWNED_BOX_AGE = 3600


def _try_lock(path: Path):
    """``path`` opened and locked (exclusive ``flock``) for this process, or None if another
    process holds it. The lock lasts while the returned file stays open."""
    import fcntl

    lock = open(path, "a")  # the caller keeps it open: the lock lasts as long
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def hold_box(box: Path):
    """Lock ``KERNELS/<box name>.lock`` for this process: the box is in use while it lives.

    The lock sits beside the box, in the root-owned ``KERNELS``, where no kernel can touch it;
    a grader killed with SIGKILL (no clean-up code runs) releases it with its file
    descriptors, so :func:`sweep_stale_boxes` can tell its folders from live ones.
    """
    lock = _try_lock(box.parent / f"{box.name}.lock")
    if lock is None:
        raise BlockingIOError(f"{box} is already held by another process")
    return lock


def sweep_stale_boxes(min_age: float = 60.0) -> list[str]:
    """Remove the kernel folders in ``KERNELS`` that no living process holds; return them.

    A grading run calls this when it starts: folders of runs killed outright would otherwise
    pile up in ``/run`` (a tmpfs, so in memory). A box is made a moment before its lock is
    taken, so boxes younger than ``min_age`` seconds are left alone.
    """
    import time

    removed = []
    if not KERNELS.is_dir():
        return removed
    for box in sorted(KERNELS.glob("kernel-*")):
        if not box.is_dir() or time.time() - box.stat().st_mtime < min_age:
            continue
        lock_path = KERNELS / f"{box.name}.lock"
        if lock_path.exists():
            lock = _try_lock(lock_path)
            if lock is None:
                continue  # in use
            with lock:
                shutil.rmtree(box, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
        elif time.time() - box.stat().st_mtime > UNOWNED_BOX_AGE:
            shutil.rmtree(box, ignore_errors=True)
        else:
            continue
        removed.append(str(box))
    for lock_path in KERNELS.glob("kernel-*.lock"):  # a lock whose box is already gone
        if not lock_path.with_suffix("").exists() and (lock := _try_lock(lock_path)):
            with lock:
                lock_path.unlink(missing_ok=True)
    return removed


def claim_slot() -> int:
    """This process's sandbox slot: the lowest one no other process on the machine holds.

    Kernels of one sandbox user (``autograder-sb<slot>``) would share its process limit and
    could signal each other, so every grading process (a worker of a run, or a test) takes a
    slot of its own, with an exclusive ``flock`` on ``KERNELS/slot-<n>.lock`` that it holds
    until it exits: concurrent grading runs never share a user, and a killed process frees its
    slot with its file descriptors.
    """
    global _slot
    if _slot is not None and _slot[0] == os.getpid():  # a forked child must take its own
        return _slot[1]
    KERNELS.mkdir(mode=0o711, exist_ok=True)
    slot = 0
    while (lock := _try_lock(KERNELS / f"slot-{slot}.lock")) is None:
        slot += 1
    _slot = (os.getpid(), slot, lock)
    return slot


def isolation_available() -> tuple[bool, str]:
    """Whether kernels can run as another user in private namespaces; if not, why."""
    if os.geteuid() != 0:
        return False, "not running as root: kernels run with resource limits only"
    missing = [t for t in ("unshare", "setpriv", "useradd", "mount") if not shutil.which(t)]
    if missing:
        return False, f"missing {', '.join(missing)}: kernels run with resource limits only"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return False, f"unshare failed ({probe.stderr.strip()}): resource limits only"
    return True, "unprivileged user, private network/PID/mount namespaces, resource limits"


def ensure_user(name: str) -> tuple[int, int]:
    """The uid and gid of ``name``, creating it as a system user without a home if needed."""
    for attempt in range(20):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            pass
        nologin = shutil.which("nologin") or "/bin/false"
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", "--shell", nologin, name],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 9):  # 9: created meanwhile by another worker
            time.sleep(0.1 * (attempt + 1))  # /etc/passwd is locked by another useradd
    raise RuntimeError(f"could not create the sandbox user {name}")


def _private_tmp() -> list[str]:
    """The shared scratch folders to replace with a private tmpfs in a kernel.

    A folder that holds the repository or the interpreter (a checkout under /tmp, say) is
    left as it is: covering it would hide the Python the kernel runs. The course's private
    folders are covered one by one in any case.
    """
    needed = [REPO, Path(sys.prefix).resolve(), Path(sys.executable).resolve()]
    return [
        p
        for p in PRIVATE_TMP
        if not any(path.is_relative_to(Path(p).resolve()) for path in needed)
    ]


def _kernel_lib(dest: Path) -> None:
    """Fill a kernel's lib/ folder (see :data:`KERNEL_LIB`)."""
    import emlib.stopping

    shutil.copytree(KERNEL_LIB, dest, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(Path(__file__).with_name("wire.py"), dest / "_emgrader_wire.py")
    shutil.copy(emlib.stopping.__file__, dest / "emlib" / "stopping.py")


#: Largest ZeroMQ message frame the grader accepts from a kernel. A bigger one closes the
#: connection before it is read, so a kernel cannot make the grader hold gigabytes; the cell
#: or call then usually runs into its time limit. Large enough for a print loop's flood that
#: the kernel sends in one piece (the grader truncates that output when it arrives).
MAX_MESSAGE_BYTES = 256 * 1024**2


class CappedKernelClient(AsyncKernelClient):
    """A kernel client whose sockets refuse frames above :data:`MAX_MESSAGE_BYTES`."""

    @default("context")
    def _capped_context(self) -> zmq.asyncio.Context:
        # Options set on a pyzmq context apply to every socket it creates afterwards, hence
        # before jupyter_client connects them (the option has no effect once connected).
        self._created_context = True  # so the client terminates it, as its own default does
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        return context


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels run sandboxed (see the module docstring)."""

    client_class = DottedObjectName("autograder.sandbox.CappedKernelClient")
    client_factory = Type(CappedKernelClient, klass=AsyncKernelClient)

    memory_limit = Integer(
        4 * 1024**3, help="address-space limit of a kernel, bytes (0: none)"
    ).tag(config=True)
    cpu_limit = Integer(
        900, help="CPU-time limit of a kernel, seconds: a backstop for lost kernels"
    ).tag(config=True)
    process_limit = Integer(512, help="processes and threads the sandbox user may run").tag(
        config=True
    )
    file_size_limit = Integer(64 * 1024**2, help="largest file a kernel may write").tag(
        config=True
    )
    isolate = Bool(True, help="use a separate user and namespaces when possible").tag(config=True)
    require_isolation = Bool(
        False,
        help="isolate every kernel without probing again: the grading run found isolation "
        "available when it started, and a kernel must never fall back to running unisolated",
    ).tag(config=True)
    user_prefix = Unicode("autograder-sb", help="sandbox users are <prefix><slot>").tag(
        config=True
    )
    hide = List(Unicode(), help="further paths to cover with empty tmpfs mounts").tag(config=True)
    disk_limit = Integer(
        256 * 1024**2, help="bytes a kernel may write to its working and home folders"
    ).tag(config=True)

    _sandbox_dir: Path | None = None
    _box_lock = None  # the open lock file that says this process owns _sandbox_dir

    async def _async_pre_start_kernel(self, **kw):
        # A probe per kernel could fail once (a busy machine) and silently run a student's
        # code unisolated; the run's own decision holds for all its kernels instead.
        isolated = self.require_isolation or (self.isolate and isolation_available()[0])
        uid = gid = None
        if isolated:
            uid, gid = ensure_user(f"{self.user_prefix}{claim_slot()}")
        base = KERNELS if isolated else None
        if base is not None:
            base.mkdir(mode=0o711, exist_ok=True)
        box = Path(tempfile.mkdtemp(prefix="kernel-", dir=base))
        self._sandbox_dir = box
        if base is not None:
            self._box_lock = hold_box(box)
        _LIVE[id(self)] = self
        scratch = os.environ.get(SCRATCH_ENV)
        if scratch and Path(scratch).is_dir():
            (Path(scratch) / "kernels").mkdir(exist_ok=True)
            (Path(scratch) / "kernels" / box.name).write_text(str(box))
        data = box / "data"
        origin = kw.get("cwd")
        if origin and Path(origin).is_dir():  # the assignment's data files, not notebooks
            shutil.copytree(origin, data, ignore=shutil.ignore_patterns("*.ipynb", ".*"))
        _kernel_lib(box / "lib")
        if isolated:  # work/ and home/ live on the kernel's own size-limited tmpfs
            (box / "private").mkdir()
            work, home = box / "private" / "work", box / "private" / "home"
            shutil.copy(ISOLATE_SCRIPT, box / "isolate.sh")
        else:
            work, home = box / "work", box / "home"
            shutil.copytree(data, work) if data.is_dir() else work.mkdir()
            home.mkdir()
        self.transport = "ipc"
        self.ip = str(box / "kernel-ipc")
        self.connection_file = str(box / "kernel.json")

        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)

        if uid is not None:
            for path in [box, *box.rglob("*")]:
                os.chown(path, uid, gid, follow_symlinks=False)
        box.chmod(0o700)
        env = {
            key: os.environ[key]
            for key in ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONDONTWRITEBYTECODE")
            if key in os.environ
        }
        env.update(
            {
                "HOME": str(home),
                "MPLCONFIGDIR": str(home / ".matplotlib"),
                "IPYTHONDIR": str(home / ".ipython"),
                "MPLBACKEND": "Agg",
                "TMPDIR": str(home),
                "PYTHONPATH": str(box / "lib"),
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "JPY_PARENT_PID": str(os.getpid()),
                "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
            }
        )
        kw["env"] = env
        if uid is None:
            kw["cwd"] = str(work)
            return [*self._limits(), *kernel_cmd], kw
        kw["cwd"] = str(box)
        return self._wrap(kernel_cmd, uid, gid, box), kw

    def _limits(self) -> list[str]:
        limits = [f"--nproc={self.process_limit}", f"--fsize={self.file_size_limit}"]
        if self.memory_limit:
            limits.append(f"--as={self.memory_limit}")
        if self.cpu_limit:
            limits.append(f"--cpu={self.cpu_limit}")
        return ["prlimit", *limits, "--"] if shutil.which("prlimit") else []

    def _hidden(self) -> list[str]:
        """Folders a kernel must not see: the course's private ones and the real emlib."""
        import emlib

        hidden = [str(REPO / name) for name in PRIVATE_REPO_FOLDERS]
        hidden.append(str(Path(emlib.__file__).resolve().parent))
        hidden += list(self.hide)
        hidden = [Path(p).resolve() for p in dict.fromkeys(hidden) if os.path.isdir(p)]
        # A folder inside another hidden one is hidden with it (and no longer a mount point).
        return [str(p) for p in hidden if not any(p != q and p.is_relative_to(q) for q in hidden)]

    def _wrap(self, cmd: list[str], uid, gid, box: Path) -> list[str]:
        """The kernel command inside fresh namespaces, through ``isolate.sh`` (which see)."""
        return [
            # If the grader dies, so does unshare, and with it (pdeathsig) the kernel: no
            # kernel outlives the run that started it.
            "setpriv",
            "--pdeathsig=KILL",
            "--",
            "unshare",
            "--mount",
            "--propagation=private",
            "--net",
            "--pid",
            "--ipc",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "/bin/sh",
            str(box / "isolate.sh"),
            str(uid),
            str(gid),
            str(self.disk_limit),
            str(box),
            *self._hidden(),
            "--",
            *_private_tmp(),
            "--",
            *self._limits(),
            *cmd,
        ]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self._forget_box()

    def _forget_box(self) -> None:
        """Remove this kernel's folder and its record."""
        _LIVE.pop(id(self), None)
        box, self._sandbox_dir = self._sandbox_dir, None
        if box is None:
            return
        shutil.rmtree(box, ignore_errors=True)
        lock, self._box_lock = self._box_lock, None
        if lock is not None:
            Path(lock.name).unlink(missing_ok=True)
            lock.close()
        scratch = os.environ.get(SCRATCH_ENV)
        if scratch:
            (Path(scratch) / "kernels" / box.name).unlink(missing_ok=True)
