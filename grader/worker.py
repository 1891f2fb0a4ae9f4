"""The sandboxed worker: a child of a zygote (grader/zygote.py), forked by `forked`.

It tells the grader its pid (so the grader can move it into its cgroup), waits for the go,
then checks its isolation: switches to its own uid, closes every descriptor but its
channel, and checks what its mode promises (namespace mode: forbidden paths absent, its
own PID namespace, only `lo`; container mode: forbidden paths unreadable, network sockets
refused; both: no capabilities, the seccomp filter loaded, nothing of the grader's
environment). Only then does it apply its limits, compile the module (from bytes, as
Python reads source) and run its jobs, one frame per reply on the channel.
"""
import contextlib
import errno
import os
import resource
import signal
import socket
import struct
import sys
import traceback

ALLOWED_ENV = {"PATH", "HOME", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED", "TMPDIR", "CUDA_VISIBLE_DEVICES",
               "PWD"}
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
NAME_CAP = 100  # characters of a type name in a message (a type may be named by the megabyte)


def forked(config, fd: int) -> None:
    """In a fresh child of the zygote: say who we are, wait for the go, work, exit (never
    runs the zygote's code again, nor any exit hook a submission may register)."""
    try:
        os.setsid()  # nothing of the zygote's session or terminal
        channel = socket.socket(fileno=fd)
        if hasattr(socket, "SCM_CREDENTIALS"):  # Linux: the kernel vouches for our pid
            credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
            channel.sendmsg([b"H"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)])
        else:  # limits only elsewhere: the zygote's answer has our pid
            channel.send(b"H")
        if channel.recv(1) == b"G":  # the grader has moved us into our cgroup
            serve(dict(config, fd=fd), channel)
    finally:
        os._exit(0)


def serve(config, channel) -> None:
    """Check isolation, then run the job (`run`); every reply is one frame on `channel`."""
    import torch
    from grader import sandbox
    from grader.worker_protocol import encode

    cap = config["output_bytes"]

    def send(body) -> None:
        channel.sendall(encode(body, cap))

    problem = isolate(config)
    if problem:
        send({"status": "unavailable", "message": problem})
        return
    send({"status": "isolated"})
    try:
        run(config, send, sandbox, torch)
    except Exception as exc:  # noqa: BLE001 - a grader bug, said in one line
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{os.path.basename(where.filename)}:{where.lineno}"
        send({"status": "error", "message": f"grader worker error: {type(exc).__name__}: "
                                            f"{str(exc)[:200]} ({place})"})


def run(config, send, sandbox, torch) -> None:
    """Read the jobs, apply the limits, import the module, run the cases."""
    with open(f"{config['job']}/work.bin", "rb") as f:
        work = read_work(f.read())
    apply_limits(config, torch)
    if config["mode"] == "decode":
        from grader.worker_protocol import WireError
        try:
            send(decode_outputs(config, sandbox))
        except WireError as exc:
            send({"status": "error", "message": f"the outputs file cannot be read back ({exc})"})
        return
    from dlkit.utils import seed_everything
    from grader import callpath
    from grader.cases import input_tensors
    suite = load_suite(config)
    evaluate = config["mode"] == "evaluate"
    module_path = f"{config['job']}/{config['assignment']}.py"
    runs, pins, shortcuts, watch = call_paths(suite, [name for name, _, _ in work], evaluate,
                                              module_path)
    move, seed_all, replaced, tensors_of = to_device, seed_everything, callpath.replaced, \
        input_tensors
    try:
        module = import_module(config["assignment"], module_path)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, anything
        send({"status": "import_error", "message": import_message(exc, module_path)})
        return
    send({"status": "ready"})
    target = torch.device(config["device"])
    for name, inputs, seed in work:
        sandbox.start_progress(lambda body: send(dict(body, case=name)))
        try:
            changed = replaced(pins[name])
            if changed:
                raise CallPathChanged(changed)
            seed_all(seed)
            if watch:
                watch.begin(shortcuts[name])
            received = None
            with case_limits(config["cpu_limits"].get(name), torch):
                if evaluate:
                    outputs = runs[name](module, move(inputs["weights"], target),
                                         move(inputs["data"], target), target)
                else:
                    given = move(inputs, target)
                    received = [tensor for _, tensor in tensors_of(given)]  # as the code got them
                    outputs = runs[name](module, given, target)
            used = watch.used() if watch else None
            body = ({"case": name, "status": "error", "message": used} if used else
                    {"case": name, "status": "ok", "outputs": sandbox.plain(outputs),
                     "inputs": inputs_back(received, sandbox)})
        except CallPathChanged as exc:
            body = {"case": name, "status": "error", "message": str(exc)}
        except NotImplementedError as exc:
            body = {"case": name, "status": "todo",
                    "message": f"not implemented yet ({exc})" if str(exc) else "not implemented yet"}
        except BaseException as exc:  # noqa: BLE001 - the student's exception, reported
            body = {"case": name, "status": "error", "message": error_line(exc, module_path)}
        sandbox.start_progress(None)
        try:
            send(body)
        except Exception as exc:  # noqa: BLE001 - outputs that cannot travel
            send({"case": name, "status": "error",
                  "message": f"returned something that is not plain tensors ({exc})"[:300]})


INPUTS_BACK = 16 << 20  # bytes of input tensors sent back for the parent to compare


def inputs_back(received, sandbox):
    """The input tensors as the code left them, for the parent to compare with what it sent
    ("changes its input in place"); None (not compared) above INPUTS_BACK bytes: large
    training data."""
    if received is None or sum(t.numel() * t.element_size() for t in received) > INPUTS_BACK:
        return None
    return [sandbox.plain(t) for t in received]


@contextlib.contextmanager
def case_limits(seconds, torch):
    """Around one case with a CPU-time limit (training): torch on one thread, and the
    process's CPU rlimit lowered to what it has used plus `seconds` (SIGXCPU past it), so
    the case is judged by its work, never by how busy the machine is."""
    if not seconds:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU,
                       (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        torch.set_num_threads(threads)


def call_paths(suite, names, evaluate: bool, module_path: str):
    """Taken before the submission is imported, so that it cannot change them: what each
    case runs (its call, or evaluate), the pins of everything that reads, the banned
    library calls of each case's parts, and the watch on them (None when there are none)."""
    from dlkit.utils import seed_everything
    from grader import callpath
    runs = {name: suite[name].evaluate if evaluate else suite[name].call for name in names}
    pins = {name: callpath.pin(run, to_device, seed_everything, callpath.replaced,
                               case=suite[name]) for name, run in runs.items()}
    shortcuts = {name: [] if evaluate else suite.shortcuts_for(name) for name in names}
    watch = None
    if any(shortcuts.values()):  # banned library calls, watched while their part runs
        from grader.policy import Watch
        watch = Watch(module_path, [s for found in shortcuts.values() for s in found],
                      parts=[s.part for s in suite.shortcuts])
    return runs, pins, shortcuts, watch


class CallPathChanged(Exception):
    """The submission replaced part of the grader's code for this case: the case fails."""

    def __init__(self, what: str):
        super().__init__(f"the submission replaced grader code this case runs ({what}); "
                         f"a submission may not rebind grader or dlkit objects")


def load_suite(config):
    """The assignment's suite; a test-only suite file when the parent sent one."""
    if not config.get("suite_file"):
        from grader.suites import load_suite as by_name
        return by_name(config["assignment"])
    import importlib.util
    spec = importlib.util.spec_from_file_location("grader_test_suite", f"{config['job']}/suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.suite


def read_work(data: bytes):
    """The trusted job file written by the parent (same frame format)."""
    from grader.worker_protocol import FRAME, decode
    _, header_size, _ = FRAME.unpack(data[:FRAME.size])
    header = data[FRAME.size:FRAME.size + header_size]
    return decode(header, bytearray(data[FRAME.size + header_size:]))


def isolate(config) -> str | None:
    """Drop to the run's uid, close every other descriptor, check the sandbox holds.

    Returns why it does not hold (then no student code runs), or None."""
    keep = config["fd"]
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.environ.update(config["env"])
    os.chdir(config["cwd"])
    if not config["secure"]:
        quiet(null)
        return None
    problem = switch_uid(config.get("uid"))
    if problem:
        return problem
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    for cap in ("CapEff", "CapPrm", "CapAmb"):
        if int(status[cap].strip(), 16) != 0:
            return f"the worker still holds capabilities ({cap} {status[cap].strip()})"
    uid = config.get("uid")
    if uid is not None and int(status["Uid"].split()[0]) != uid:
        return "the worker did not get its own uid"
    if config["seccomp"] and status.get("Seccomp", "").strip() != "2":
        return "the seccomp filter is not loaded"
    problem = check_namespaces(config) if config["sandbox"] == "namespace" else \
        check_container(config)
    if problem:
        return problem
    leaked = set(os.environ) - ALLOWED_ENV
    if leaked:
        return f"the worker's environment holds {sorted(leaked)[0]}"
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if is_open(int(fd)))
    if [fd for fd in fds if fd > 2 and fd not in (keep, null)]:
        return f"the worker inherited descriptors {fds}"
    quiet(null)
    return None


def switch_uid(uid) -> str | None:
    """As root: become `uid` for good (every capability goes); then no new privileges."""
    try:
        if uid is not None and os.getuid() == 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        # Changing uid made us non-dumpable, which hides our own /proc/self files from us;
        # only our own uid (this run's alone) could trace us, and ptrace is refused anyway.
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    except OSError as exc:
        return f"could not switch to the sandbox uid ({exc.strerror})"
    return None


def check_namespaces(config) -> str | None:
    """Namespace mode: a PID namespace of our own, the forbidden paths absent, only `lo`."""
    if os.readlink("/proc/self/ns/pid") == config["grader_pid_namespace"]:
        return "no private PID namespace"
    visible = [p for p in config["forbidden"] if os.path.lexists(p)]
    if visible:
        return f"the worker can see {visible[0]}"
    with open("/proc/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    if interfaces != ["lo"]:
        return f"the worker has network interfaces {interfaces}"
    return None


def check_container(config) -> str | None:
    """Container mode: the forbidden paths unreadable, network sockets refused."""
    readable = [p for p in config["forbidden"] if os.access(p, os.R_OK)]
    if readable:
        return f"the worker can read {readable[0]}"
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except PermissionError:
        return None
    return "the worker can open network sockets"


def is_open(fd: int) -> bool:
    """False for the descriptor os.listdir used for the listing (closed by now)."""
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def quiet(null: int) -> None:
    """fd 1 and 2 go to /dev/null: printing costs nothing and reaches no one."""
    os.dup2(null, 1)
    os.dup2(null, 2)
    if null > 2:
        os.close(null)
    sys.stdout = open(1, "w", closefd=False)  # no extra descriptors of our own
    sys.stderr = open(2, "w", closefd=False)


def apply_limits(config, torch) -> None:
    """Threads sized by the grader, then rlimits just above what torch itself maps."""
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    a = torch.ones(256, 256)
    (a @ a).sum().item()  # start the thread pool before the limits
    if config["device"] != "cpu":
        # CUDA reserves a large address range when it starts: under the limit below it
        # could not start, so it starts first and the limit counts from what it mapped.
        torch.empty(1, device=config["device"])
    from tqdm.std import tqdm
    import threading
    tqdm.set_lock(threading.RLock())  # no multiprocessing lock in a worker
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail instead
    mapped = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + config["memory"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"],) * 2)
    if config["nproc"]:
        # Without a pids cgroup: counted per uid, and the uid is this run's alone.
        resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"],) * 2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def import_module(assignment: str, module_path: str):
    """Execute the module's source as `assignment`, compiled from bytes (BOM and PEP 263
    coding lines honoured, as Python itself reads a file)."""
    import types
    try:
        fd = os.open(module_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise FileNotFoundError(module_path) from None
    with open(fd, "rb") as f:
        source = f.read()
    module = types.ModuleType(assignment)
    module.__file__ = module_path
    sys.modules[assignment] = module
    exec(compile(source, module_path, "exec"), module.__dict__)  # noqa: S102 - sandboxed
    return module


def decode_outputs(config, sandbox) -> dict:
    """Outputs mode: load a submitted autograder.pt (weights_only, zip members checked
    first) and send it back as plain frames; this process runs no student code."""
    import torch
    import zipfile
    path = f"{config['job']}/outputs.pt"
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if len(members) > 100_000 or total > config["output_bytes"] * 4 or any(
                    m.compress_type != zipfile.ZIP_STORED for m in members):
                return {"status": "error", "message": "the outputs file is compressed or too large"}
        value = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a pickle payload or a corrupt file
        return {"status": "error",
                "message": f"the outputs file could not be read safely ({type(exc).__name__})"}
    if type(value) is not dict:
        return {"status": "error", "message": "the outputs file is not a dict"}
    value = value.get("outputs", value)
    if type(value) is not dict:
        return {"status": "error", "message": "the outputs file is not a dict"}
    return {"status": "ok", "outputs": {str(k): sandbox.plain(v)
                                        for k, v in value.items()}}


def to_device(value, device):
    import torch
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


def import_message(exc, module_path) -> str:
    name = os.path.basename(module_path)
    if isinstance(exc, FileNotFoundError):
        return f"missing file: {name} was not submitted (or is not a readable regular file)"
    if isinstance(exc, SyntaxError):
        return f"syntax error in {name} line {exc.lineno}: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"the module called sys.exit({exc.code}) while being imported"
    return f"importing the module failed: {error_line(exc, module_path)}"


def error_line(exc, module_path) -> str:
    """'ValueError at transformer.py:42: message': the student's innermost frame, one line."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code}) during the case"
    where = ""
    try:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == module_path:
                where = f" at {os.path.basename(module_path)}:{frame.lineno}"
        text = str(exc)
    except BaseException:  # noqa: BLE001 - an exception whose __str__ raises
        text = ""
    text = decisive_line(text)
    name = type(exc).__name__[:NAME_CAP]
    line = f"{name}{where}: {text}" if text else f"{name}{where}"
    return line + cause_of(exc, text)


def decisive_line(text: str) -> str:
    """The first line of a message, joined with the next one when it only announces it
    ("Error(s) in loading state_dict for Net:" is followed by the key and the shapes)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[1]}"
    return first[:300]


def cause_of(exc, text: str) -> str:
    """Which limit an exception most likely comes from, said plainly."""
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return " (out of memory: the sandbox's memory limit)"
    if (isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN) or \
            "can't start new thread" in text:
        return " (too many processes or threads: the sandbox's process limit)"
    return ""


