"""The bounded queue: a host that does not read makes the probe drop (and count) STEP frames
instead of blocking training; seq numbers show the gaps; a `dropped` EVENT reports them."""
import os
import socket
import threading
import time
import unittest

from gradscope_probe import wire
from gradscope_probe.channel import Channel


def read_to_end(sock) -> bytes:
    """Everything the socket receives until the other end shuts down its writing."""
    chunks = []
    while True:
        d = sock.recv(1 << 16)
        if not d:
            return b"".join(chunks)
        chunks.append(d)


def step(i):
    return {"type": "step", "step": i, "loss": 0.0, "wallMs": 0.0, "stats": list(wire.STAT_NAMES),
            "columns": [[0.0] * 50 for _ in wire.STAT_NAMES], "nTensors": 50}


class ChannelTest(unittest.TestCase):
    def test_drops_when_the_host_does_not_read(self):
        host, child = socket.socketpair()
        gone = []
        ch = Channel(os.dup(child.fileno()), on_host_gone=gone.append, max_queued_bytes=64 * 1024, watch=False)
        t0 = time.monotonic()
        n = 3000  # ~2.5 KB each: far more than the socket buffer plus the queue bound
        for i in range(n):
            ch.send(step(i))
        self.assertLess(time.monotonic() - t0, 5, "send never blocks")
        self.assertGreater(ch.dropped_total, 0)
        chunks = []

        def read():
            chunks.append(read_to_end(host))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        self.assertTrue(ch.flush(10))
        ch.send({"type": "end", "reason": "completed", "steps": n})
        self.assertTrue(ch.flush(10))
        child.shutdown(socket.SHUT_WR)
        t.join(10)
        frames, err = wire.decode_all(b"".join(chunks))
        self.assertIsNone(err)
        steps = [s for s, m in frames if m["type"] == "step"]
        dropped = [m for _, m in frames if m["type"] == "event" and m["kind"] == "dropped"]
        self.assertEqual(len(steps) + ch.dropped_total, n)
        self.assertEqual(sum(m["count"] for m in dropped), ch.dropped_total)
        self.assertEqual(frames[-1][1]["type"], "end")
        seqs = [s for s, _ in frames]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs))
        self.assertEqual(seqs[-1] + 1, len(frames) + ch.dropped_total)  # the gaps are the drops
        self.assertEqual(gone, [])
        host.close()
        child.close()

    def test_two_senders_frames_written_in_sequence_order(self):
        # The training thread and the probe's detail thread both send: numbers stay in write order.
        host, child = socket.socketpair()
        ch = Channel(os.dup(child.fileno()), max_queued_bytes=1 << 30, watch=False)
        chunks = []

        def read():
            chunks.append(read_to_end(host))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def detail_sender():
            for i in range(400):
                ch.send({"type": "detail", "step": i, "tensorId": 0, "mean": 0.0, "std": 0.0, "zeroFrac": 0.0,
                         "histLo": -20.0, "histHi": 12.0, "hist": [1] * 32, "thumbRows": 4, "thumbCols": 4,
                         "thumb": [0.5] * 16})

        other = threading.Thread(target=detail_sender)
        other.start()
        for i in range(400):
            ch.send(step(i))
        other.join()
        self.assertTrue(ch.flush(10))
        child.shutdown(socket.SHUT_WR)
        reader.join(10)
        frames, err = wire.decode_all(b"".join(chunks))
        self.assertIsNone(err)
        self.assertEqual([s for s, _ in frames], list(range(800)))
        host.close()
        child.close()

    def test_held_step_frames_reach_the_host_without_a_later_send(self):
        # STEP frames sent close together are held for one write (HOLD_STEP_FRAMES_S); the writer
        # thread writes them when the window ends even when the script sends nothing more.
        host, child = socket.socketpair()
        ch = Channel(os.dup(child.fileno()), watch=False)
        ch.hold_s = 0.05
        for i in range(6):
            ch.send(step(i))
        self.assertGreater(ch.pending_bytes, 0, "the later frames are held")
        host.settimeout(2.0)
        data = b""
        t0 = time.monotonic()
        while True:
            frames, err = wire.decode_all(data)
            if len(frames) == 6 or time.monotonic() - t0 > 2:
                break
            data += host.recv(1 << 16)
        self.assertIsNone(err)
        self.assertEqual([m["step"] for _, m in frames], list(range(6)))
        self.assertEqual([s for s, _ in frames], list(range(6)))
        self.assertLess(time.monotonic() - t0, 1.0)
        # A frame of another type goes out at once, after the held ones.
        ch.send(step(6))
        ch.send(step(7))
        ch.send({"type": "end", "reason": "completed", "steps": 8})
        data = b""
        while True:
            frames, err = wire.decode_all(data)
            if len(frames) == 3:
                break
            data += host.recv(1 << 16)
        self.assertEqual([m["type"] for _, m in frames], ["step", "step", "end"])
        self.assertEqual([s for s, _ in frames], [6, 7, 8])
        host.close()
        child.close()

    def test_steady_steps_wake_the_writer_by_its_timer_and_a_pause_lets_it_sleep(self):
        # While STEP frames keep coming, send() never wakes the writer (its timer does: waking it from
        # the training thread cost ~1 % of a 19 ms step); after WRITER_TIMER_S without one it sleeps,
        # and the next STEP wakes it. Every frame still reaches the host within about a window.
        from gradscope_probe import channel as channel_mod

        saved = channel_mod.WRITER_TIMER_S
        channel_mod.WRITER_TIMER_S = 0.3
        host, child = socket.socketpair()
        ch = Channel(os.dup(child.fileno()), watch=False)
        ch.hold_s = 0.04
        woken = []
        notify = ch._cv.notify
        main = threading.current_thread()  # (the writer's notify_all after a write calls notify too)
        ch._cv.notify = lambda n=1: (threading.current_thread() is main and woken.append(n), notify(n))
        host.settimeout(2.0)
        buf = [b""]

        def arrive(i):
            t0 = time.monotonic()
            while True:
                frames, err = wire.decode_all(buf[0])
                self.assertIsNone(err)
                if frames and frames[-1][1]["step"] == i:
                    buf[0] = b""
                    return time.monotonic() - t0
                buf[0] += host.recv(1 << 16)

        try:
            late = []
            for i in range(8):
                ch.send(step(i))
                late.append(arrive(i))
                time.sleep(0.01)
            self.assertEqual(len(woken), 1, "only the first STEP wakes the sleeping writer")
            self.assertLess(max(late), 0.5)
            deadline = time.monotonic() + 3
            while not ch._sleeping and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(ch._sleeping, "no STEP for WRITER_TIMER_S: the writer sleeps")
            ch.send(step(8))
            self.assertLess(arrive(8), 0.5)
            self.assertEqual(len(woken), 2)
        finally:
            channel_mod.WRITER_TIMER_S = saved
            host.close()
            child.close()

    def test_step_frames_encoded_by_the_writer_are_the_bytes_of_wire_encode(self):
        # STEP frames are encoded on the writer thread: the bytes on the wire are exactly those of
        # wire.encode with the numbers the frames got when they were sent, in order, with the frames
        # of other types (encoded by the sender) between them; flush delivers all; a STEP whose
        # columns do not match nTensors is refused by send itself (the caller's warning), not lost.
        host, child = socket.socketpair()
        ch = Channel(os.dup(child.fileno()), watch=False)
        msgs = []
        for i in range(40):
            m = step(i)
            m["loss"] = 1.0 / (i + 1)
            m["wallMs"] = 3.25 * i
            m["optimizer"] = i % 3
            m["columns"] = [[float(i * 1000 + j * 7 + c) if (i + j) % 11 else float("nan") for j in range(50)]
                            for c in range(len(wire.STAT_NAMES))]
            msgs.append(m)
            if i % 9 == 4:
                msgs.append({"type": "event", "kind": "info", "message": "between steps %d" % i})
        for m in msgs:
            self.assertTrue(ch.send(m))
            if m["type"] == "event":
                time.sleep(0.03)  # past the hold window: the next STEP starts a new one
        bad = step(99)
        bad["columns"][2] = [0.0] * 49
        with self.assertRaises(ValueError):
            ch.send(bad)
        self.assertTrue(ch.flush(10))
        child.shutdown(socket.SHUT_WR)
        data = read_to_end(host)
        self.assertEqual(data, b"".join(wire.encode(m, i) for i, m in enumerate(msgs)))
        self.assertEqual(ch.dropped_total, 0)
        host.close()
        child.close()

    def test_a_detail_steps_frames_join_the_window_and_go_out_in_one_write(self):
        # A detail step sends one DETAIL frame per tensor right after its STEP. They are held with the
        # STEP (written per frame, or queued per frame for the writer, they cost the training thread
        # 4.2 ms per detail step of a 100-tensor model): nothing reaches the host before the window
        # ends, the sender does not wake the writer for them, and then all arrive in sequence order,
        # the bytes of wire.encode. A frame of another type sends them at once, ahead of it.
        host, child = socket.socketpair()
        ch = Channel(os.dup(child.fileno()), watch=False)
        ch.hold_s = 0.3
        woken = []
        notify = ch._cv.notify
        main = threading.current_thread()
        ch._cv.notify = lambda n=1: (threading.current_thread() is main and woken.append(n), notify(n))

        def detail(s, t):
            return {"type": "detail", "step": s, "tensorId": t, "mean": 0.5 * t, "std": 1.0, "zeroFrac": 0.0,
                    "histLo": -30, "histHi": 2, "hist": [t + b for b in range(32)], "thumbRows": 32,
                    "thumbCols": 32, "thumb": [float(t * 1024 + c) for c in range(1024)]}

        msgs = [step(0)] + [detail(0, t) for t in range(100)]  # ~420 KB: more than the socket buffer
        t0 = time.monotonic()
        for m in msgs:
            self.assertTrue(ch.send(m))
        sent_in = time.monotonic() - t0
        host.setblocking(False)
        early = b""
        try:
            early = host.recv(1 << 16)
        except BlockingIOError:
            pass
        if sent_in < 0.2:  # (a machine this slow cannot tell held from written)
            self.assertEqual(early, b"", "held until the window ends")
            self.assertGreater(ch.pending_bytes, 400 * 1024)
        self.assertLessEqual(len(woken), 1, "the sender does not wake the writer per frame (the first STEP "
                                            "wakes it from its sleep)")
        host.setblocking(True)
        got = []
        reader = threading.Thread(target=lambda: got.append(read_to_end(host)))
        reader.start()
        msgs.append({"type": "event", "kind": "info", "message": "after the detail step"})
        self.assertTrue(ch.send(msgs[-1]))
        self.assertTrue(ch.flush(10))
        child.shutdown(socket.SHUT_WR)
        reader.join(10)
        data = early + got[0]
        self.assertEqual(data, b"".join(wire.encode(m, i) for i, m in enumerate(msgs)))
        self.assertEqual(ch.dropped_total, 0)
        host.close()
        child.close()

    def test_write_error_means_the_host_is_gone(self):
        host, child = socket.socketpair()
        gone = []
        ch = Channel(os.dup(child.fileno()), on_host_gone=gone.append, watch=True)
        host.close()
        deadline = time.monotonic() + 5
        while not gone and time.monotonic() < deadline:
            ch.send(step(0))
            time.sleep(0.01)
        self.assertTrue(gone)
        self.assertFalse(ch.send(step(1)))
        child.close()


class PrivateDescriptorTest(unittest.TestCase):
    def test_the_channel_moves_off_the_number_it_was_given(self):
        """The channel writes to a private close-on-exec copy at or above PRIVATE_FD_MIN; the number
        it was given is closed (free for the script's own files)."""
        import fcntl

        from gradscope_probe.channel import PRIVATE_FD_MIN

        host, child = socket.socketpair()
        given = os.dup(child.fileno())
        ch = Channel(given, watch=False)
        self.assertGreaterEqual(ch.fd, PRIVATE_FD_MIN)
        self.assertTrue(fcntl.fcntl(ch.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        with self.assertRaises(OSError):
            os.fstat(given)
        ch.send(step(0))
        self.assertTrue(ch.flush(5))
        child.shutdown(socket.SHUT_WR)
        data = read_to_end(host)
        frames, err = wire.decode_all(data)
        self.assertIsNone(err)
        self.assertEqual([m["type"] for _, m in frames], ["step"])
        host.close()
        child.close()


if __name__ == "__main__":
    unittest.main()
