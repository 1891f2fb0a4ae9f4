"""The system calls a graded module never needs, refused by a seccomp filter.

Built with libseccomp (through `pyseccomp`) in the trusted parent: in namespace mode it is
compiled to BPF and loaded by bubblewrap (`--seccomp FD`) before the zygote starts; in
container mode the zygote loads it itself (after `no_new_privs`) before it forks any worker.
Every worker therefore runs under it, and so does everything a worker starts.

Refused (EPERM, so student code sees an ordinary "Operation not permitted"):
- memory outside every limit: `memfd_create`, `userfaultfd`;
- state that outlives a process: the kernel keyrings (`add_key`, `keyctl`, `request_key`),
  SysV shared memory, semaphores and message queues, POSIX message queues;
- other processes: `ptrace`, `process_vm_readv/writev`, `pidfd_getfd`;
- new namespaces (`unshare`, `setns`, `clone` with a namespace flag; `clone3` answers
  ENOSYS so the C library falls back to `clone`, whose flags can be checked), mounts,
  `bpf`, `perf_event_open`, `io_uring`, modules, `kexec`, handles to host files;
- every socket but AF_UNIX (container mode has no network namespace; namespace mode has
  only a loopback that is down, so nothing changes there).
"""
import errno
import functools
import socket

DENIED = [
    "memfd_create", "userfaultfd",
    "add_key", "keyctl", "request_key",
    "shmget", "semget", "msgget", "mq_open",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree",
    "move_mount", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "vhangup",
]
# clone(2) flags that create a namespace (CLONE_NEWNS ... CLONE_NEWNET).
NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000]


@functools.lru_cache(maxsize=None)
def missing() -> str | None:
    """None when a filter can be built here, else one line saying why not."""
    try:
        build()
    except (ImportError, OSError, RuntimeError) as exc:
        return (f"no seccomp filter ({type(exc).__name__}: {exc}; install libseccomp2 and "
                "pyseccomp): memfd_create, keyrings, ptrace and new namespaces are not refused")
    return None


def build():
    """The filter (a pyseccomp SyscallFilter, not loaded)."""
    import pyseccomp as sc
    refuse = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(refuse, name)
        except (OSError, ValueError):  # not a system call on this architecture
            continue
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(refuse, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    return rules


@functools.lru_cache(maxsize=None)
def compiled() -> bytes:
    """The filter as a BPF program (what bubblewrap's --seccomp reads)."""
    import tempfile
    with tempfile.TemporaryFile() as f:
        build().export_bpf(f)
        f.seek(0)
        return f.read()


def load() -> None:
    """Apply the filter to this process and everything it starts (needs no_new_privs
    unless the caller holds CAP_SYS_ADMIN)."""
    build().load()
