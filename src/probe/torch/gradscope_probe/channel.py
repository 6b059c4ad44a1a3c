"""The probe's end of fd 3: frames out through a bounded queue and a writer thread, hang-up in.

The training thread (and the probe's detail thread) only encode and enqueue (never block on the
pipe); a frame gets its sequence number as it is queued, so the frames of several senders are
written in sequence order. STEP frames are not even encoded on the training thread: send() checks
the message and queues it with its number, and the writer thread encodes it (the same bytes as
wire.encode) while the next step's torch kernels run, which release the GIL (measured on a 100-tensor
model, torch 2.13 CPU: the probe's send went from 62 to 17 us per step). A daemon writer thread
writes the frames; while more than `max_queued_bytes` wait, droppable frames (STEP, DETAIL) are
dropped and counted (their sequence numbers leave gaps), and a `dropped` EVENT reports the count
once there is room again. A daemon watchdog thread reads fd 3: end-of-file or an error means the
host is gone, and `on_host_gone` runs (the probe exits the process).

Only the process that created the channel writes: in a forked child (DataLoader workers) `send`
does nothing and the child closes its inherited copy of the fd, so it neither writes nor keeps the
host's end open.

The channel never writes to the descriptor number the host gave (3): at start-up it is duplicated to
a private, close-on-exec number at or above PRIVATE_FD_MIN and the original is closed, so a script
that closes fd 3 and opens a file that gets that number is never written to. The private descriptor
is also checked to still be the host's pipe (same device and inode) before each write: a script that
closes every descriptor and opens a file under that number loses the channel (the host sees the run
end without its END frame), never its file.
"""
from __future__ import annotations

import collections
import errno
import os
import select
import threading
import time

from . import forks, wire

DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024
# STEP frames (and DETAIL frames, see send) are held and written together by the writer thread at
# most this often (STEPs encoded then): one write per step cost 40-50 us of a 4 ms step on a
# 100-tensor model (the system call and waking the host), and waking the writer per step more. Each
# window costs a wake-up of the writer, which takes the GIL from the training thread: on that model
# (torch 2.13 CPU, every-step tier, in-process ab, 60 rounds, two runs each) a 20 ms window read
# x1.084-1.096 of the plain step, 50 ms x1.065-1.066, 100 ms x1.061-1.073, 1 s x1.072-1.075, and no
# STEP frames at all x1.056-1.060; on the 2M-parameter MLP (19 ms steps) 20 ms read x1.030, 50 ms
# x1.026-1.028. A STEP reaches the host at most this late: the host flushes its views every 50 ms, so
# the panel is at most one flush later. What a window holds is lost only if the process dies without
# Python's exit (SIGKILL, a crash in C, the default SIGTERM); a Python exception, exit or Ctrl-C
# writes it (Probe.finish).
HOLD_STEP_FRAMES_S = 0.05
# While STEP frames came within this long, the writer thread wakes by itself at the end of each window
# (a timed wait), so send() never has to wake it. Waking it from the training thread (torch 2.13 CPU,
# 2M-parameter MLP, 19 ms steps, every-step tier, in-process ab of 30 rounds) cost x1.039-1.043 of the
# plain step against x1.031-1.032 with the timer: the wake-up's system calls and GIL handoff landed on
# the training thread. Past this, the writer sleeps until the next STEP wakes it (a paused or finished
# run costs no wake-ups). Writing a window's frames on the training thread instead, at its first STEP
# after the window, cost more still: 96 against 35 us per step in send (encoding and the write, cold).
WRITER_TIMER_S = 1.0
# The writer joins what is queued into one write of up to this many bytes.
WRITE_MAX_BYTES = 1 << 20
# The channel's own descriptor is the lowest free one from here: far above what a script's files get.
PRIVATE_FD_MIN = 500


def private_fd(fd: int) -> int:
    """A close-on-exec duplicate of fd at or above PRIVATE_FD_MIN (lower when the limit is lower), the
    original closed. The same fd when it cannot be duplicated (then made non-inheritable)."""
    import fcntl

    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):
        soft = 1024
    low = PRIVATE_FD_MIN if soft > PRIVATE_FD_MIN + 16 else max(fd + 1, soft // 2)
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    except OSError:
        try:
            os.set_inheritable(fd, False)  # exec'd children (subprocess) do not get it
        except OSError:
            pass
        return fd
    os.close(fd)
    return new
_DROPPABLE = ("step", "detail")


def _wait_for(fd: int, event: int) -> None:
    """Waits (up to a second, then the caller retries) until fd is ready for `event` or has an error
    or a hang-up (which the caller's next read or write then reports)."""
    p = select.poll()
    p.register(fd, event)
    try:
        p.poll(1000)
    except InterruptedError:
        pass


class Channel:
    def __init__(self, fd: int, on_host_gone=None, max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES, watch: bool = True):
        self.fd = private_fd(fd)
        try:
            st = os.fstat(self.fd)
            self._identity = (st.st_dev, st.st_ino)
        except OSError:
            self._identity = None
        self.pid = os.getpid()
        self.max_queued_bytes = max_queued_bytes
        self.on_host_gone = on_host_gone
        self.host_gone = False
        self.closed = False
        self.dropped_total = 0
        self._dropped_since_report = 0
        self._seq = 0
        self._queue = collections.deque()
        self._queued_bytes = 0
        self._writing = False  # the writer holds a frame it has not finished writing
        # STEP and DETAIL frames held back for one write (see HOLD_STEP_FRAMES_S); always ahead of the
        # queue in sequence order, so whatever is sent next goes out after them.
        self._held: list = []
        self._held_bytes = 0
        self._last_write = 0.0
        self._last_held = -1e9  # when a window last began (send), for the writer's timer
        self._sleeping = False  # the writer waits without a timeout: the next STEP wakes it
        self.hold_s = HOLD_STEP_FRAMES_S
        self._released = False  # release(): the writer thread ends and the descriptor is not ours any more
        self._cv = threading.Condition()
        # Non-blocking descriptor: send() writes a frame itself when nothing is queued and it fits
        # (one system call; waking the writer thread for each frame cost the training thread about
        # 0.25 ms per step, measured on a 100-tensor model: the thread switch and the GIL handoff).
        # The writer thread and the watchdog wait with poll() instead of blocking calls.
        try:
            os.set_blocking(self.fd, False)
            self._direct = True
        except (OSError, AttributeError):
            self._direct = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)
        self._writer = threading.Thread(target=self._write_loop, name="gradscope-writer", daemon=True)
        self._writer.start()
        if watch:
            threading.Thread(target=self._watch_loop, name="gradscope-watchdog", daemon=True).start()

    # -- training thread ---------------------------------------------------------------------

    def send(self, msg: dict) -> bool:
        """Queues one message (a STEP to be encoded by the writer thread, anything else encoded here).
        False when dropped, the host is gone, or in a fork."""
        if self.host_gone or self.closed or forks.pid != self.pid:
            return False
        kind = msg["type"]
        droppable = kind in _DROPPABLE
        if droppable and self._queued_bytes + self._held_bytes > self.max_queued_bytes:  # held: not encoded yet
            with self._cv:
                self._seq += 1  # a dropped frame leaves a gap
                self._dropped_since_report += 1
                self.dropped_total += 1
            return False
        if kind == "step":
            # Checked here (a malformed STEP raises to the caller, no number taken), encoded by the
            # writer thread: the caller must not change msg (nor its lists) afterwards.
            size = wire.HEADER_BYTES + wire.step_payload_size(msg)
            with self._cv:
                part = (self._seq, msg)
                self._seq += 1
                if self._direct and not self._queue and not self._writing:
                    self._hold(part, size)
                    return True
                self._queue_held()
                self._enqueue([part], size)
                self._cv.notify()
            return True
        code, payload = wire.encode_payload(msg)  # outside the lock: the costly part
        with self._cv:
            data = wire.frame(code, payload, self._seq)
            self._seq += 1
            if droppable and self._direct and not self._queue and not self._writing:
                # A DETAIL frame joins the window too: a detail step sends one per tensor, and
                # writing each at once (or queueing each for the writer, woken each time) cost the
                # training thread 4.2 ms per detail step of a 100-tensor model (4 ms steps; the
                # GIL handed back and forth with the writer at every frame, most of it during the
                # next step), held 0.9 ms.
                self._hold(data, len(data))
                return True
            if self._direct and not self._queue and not self._writing and not self._held:
                # Nothing ahead of it: written here when the pipe takes it now. What it does not take
                # (full, partly written, an error) goes to the writer thread, which handles errors.
                self._last_write = time.monotonic()
                try:
                    self._check_identity()
                    n = os.write(self.fd, data)
                except OSError:
                    n = 0
                if n >= len(data):
                    return True
                data = data[n:]
            # Held STEP frames (not encoded yet) go out first, then this one: both by the writer.
            self._queue_held()
            self._enqueue(data, len(data))
            self._cv.notify()
        return True

    def _hold(self, part, size: int) -> None:
        """Holds a frame for the window's one write (under the lock): a STEP not encoded yet,
        (seq, msg), or a DETAIL frame's bytes."""
        self._held.append(part)
        self._held_bytes += size
        if len(self._held) == 1:
            # The window starts with the first frame held (at most hold_s late); the writer encodes
            # and writes them all when it ends, woken by its own timer unless it sleeps
            # (WRITER_TIMER_S).
            now = time.monotonic()
            if now - self._last_write >= self.hold_s:
                self._last_write = now
            self._last_held = now
            if self._sleeping:
                self._cv.notify()

    def _enqueue(self, item, size: int) -> None:
        """Queues bytes, or a list of parts (bytes, or a STEP not encoded yet: (seq, msg)), with its
        size in bytes once encoded (under the lock)."""
        self._queue.append((item, size))
        self._queued_bytes += size

    def _drop_held(self) -> None:
        self._held = []
        self._held_bytes = 0

    def _queue_held(self) -> None:
        """Moves the held frames onto the writer's queue, ahead of anything queued later (under
        the lock)."""
        if self._held:
            self._enqueue(self._held, self._held_bytes)
            self._drop_held()

    def _encode(self, item) -> bytes:
        """A queued item's bytes (on the writer thread). A STEP that cannot be encoded (a bug) is
        left out and counted as dropped: its sequence number leaves a gap."""
        if isinstance(item, (bytes, bytearray, memoryview)):
            return item
        out = []
        for part in item:
            if isinstance(part, tuple):
                seq, msg = part
                try:
                    code, payload = wire.encode_payload(msg)
                    part = wire.frame(code, payload, seq)
                except Exception:  # noqa: BLE001
                    self.note_dropped(1)
                    continue
            out.append(part)
        return b"".join(out)

    def note_dropped(self, n: int) -> None:
        with self._cv:
            self._dropped_since_report += n
            self.dropped_total += n

    @property
    def pending_bytes(self) -> int:
        return self._queued_bytes + self._held_bytes

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until everything queued is written (or the host is gone, or the timeout passes)."""
        if forks.pid != self.pid:
            return False
        deadline = time.monotonic() + timeout
        with self._cv:
            if self._held:
                self._queue_held()
                self._cv.notify()
            while (self._queue or self._writing) and not self.host_gone:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return not self._queue

    def close(self) -> None:
        """Stops accepting frames (what is queued still goes out). The fd stays open: the process
        is about to exit, and closing it under the watchdog's read is not safe."""
        self.closed = True

    def release(self, timeout: float = 5.0) -> None:
        """Ends the channel in a process that goes on (a notebook run ends, the kernel stays): writes
        what is queued, stops the writer thread, and gives the descriptor up: the caller may write
        after the frames (a run file's trailer) and close it, and a later fork no longer closes it."""
        self.flush(timeout)
        with self._cv:
            self.closed = True
            self._released = True
            self._cv.notify_all()

    # -- threads -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    now = time.monotonic()
                    if self._held:
                        # Held STEP frames go out when their window ends, unless the training
                        # thread writes them first with a later frame.
                        left = self._last_write + self.hold_s - now
                        if left <= 0:
                            self._last_write = now
                            self._queue_held()
                            break
                        self._cv.wait(left)
                    elif self._released:
                        return
                    elif now - self._last_held < WRITER_TIMER_S:
                        # Steps are coming: wake when a window that starts now would end (the
                        # next one runs from the last write, see send).
                        left = self._last_write + self.hold_s - now
                        self._cv.wait(left if left > 0.001 else self.hold_s)
                    else:
                        self._sleeping = True
                        self._cv.wait()
                        self._sleeping = False
                # Everything queued by now, up to WRITE_MAX_BYTES, in one write (frames queued one
                # by one behind a full pipe would cost a wake-up and a GIL handoff each).
                item, size = self._queue.popleft()
                items = [item]
                while self._queue and size < WRITE_MAX_BYTES:
                    item, n = self._queue.popleft()
                    items.append(item)
                    size += n
                self._writing = True
            try:
                # outside the lock: STEP frames are encoded here
                data = b"".join(map(self._encode, items))
                self._check_identity()
                view = memoryview(data)
                while view:
                    try:
                        n = os.write(self.fd, view)
                    except BlockingIOError:
                        _wait_for(self.fd, select.POLLOUT)
                        continue
                    view = view[n:]
            except OSError as e:
                with self._cv:
                    self._writing = False
                    self._queue.clear()
                    self._queued_bytes = 0
                    self._cv.notify_all()
                if e.errno == errno.EBADF:
                    # The script closed the descriptor (and maybe reused it): the host is still there,
                    # only the channel is lost. The script goes on, uninstrumented; the host sees the
                    # channel end without END.
                    self._lost("the script closed the channel's descriptor (%s)" % (e.strerror or "EBADF"))
                else:
                    self._gone("write failed: %s" % (errno.errorcode.get(e.errno, e),))
                return
            with self._cv:
                self._writing = False
                self._queued_bytes -= size
                report = None
                if self._dropped_since_report and self._queued_bytes < self.max_queued_bytes // 2:
                    count = self._dropped_since_report
                    self._dropped_since_report = 0
                    report = {"type": "event", "kind": "dropped", "count": count,
                              "message": "%d frame(s) dropped: the host did not keep up" % count}
                    seq = self._seq
                    self._seq += 1
                    enc = wire.encode(report, seq)
                    self._enqueue(enc, len(enc))
                self._cv.notify_all()

    def _check_identity(self) -> None:
        """Raises EBADF when the descriptor is no longer the host's pipe (closed, or reused by the
        script for a file of its own): nothing is written to it then."""
        if self._identity is None:
            return
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != self._identity:
            raise OSError(errno.EBADF, "the channel's descriptor was closed and reused by the script")

    def _watch_loop(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (InterruptedError, BlockingIOError):
                _wait_for(self.fd, select.POLLIN)
                continue
            except OSError as e:
                if e.errno in (errno.EBADF, errno.EINVAL) and not self.closed:
                    return  # not readable (a plain pipe's write end in a test): rely on EPIPE on write
                self._gone("channel error: %s" % (errno.errorcode.get(e.errno, e),))
                return
            if not data:
                self._gone("the host closed the channel")
                return

    def _lost(self, why: str) -> None:
        if self.host_gone or forks.pid != self.pid:
            return
        self.host_gone = True  # nothing more is sent
        try:
            import sys

            sys.stderr.write("[gradscope] warning: %s; the script goes on without inspection\n" % why)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass

    def _gone(self, why: str) -> None:
        if self.host_gone or forks.pid != self.pid:
            return
        self.host_gone = True
        cb = self.on_host_gone
        if cb is not None:
            cb(why)

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork; the fd does. The child must never write to it and should not
        # keep the host's end open after the parent is gone.
        self.closed = True
        if self._released:
            return  # the descriptor was given up: its number may be another file's now
        try:
            os.close(self.fd)
        except OSError:
            pass
