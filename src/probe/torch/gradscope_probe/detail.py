"""The detail tier (mean, std, zero fraction, histogram, thumbnail): when it is due, and computing
it off the training thread.

The detail tier of CPU gradients is computed off the training thread: on a detail step the training
thread copies the gradients into buffers kept for that purpose and hands them to one background
thread, which sends the DETAIL frames when done (its kernels run in TorchScript, without the GIL: see
stats.py). One job at a time, nothing queues: with a fixed interval a detail step that comes while
the previous job still runs is skipped and counted (an ``info`` EVENT before END); with the automatic
one it is put off to the next step. END waits (bounded) for the job in flight; an anomaly's detail
waits for it too (a tensor's frames stay in step order). Small steps (DETAIL_INLINE_MAX_ELEMENTS
gradient entries or fewer), gradients elsewhere (CUDA), sparse ones, or more than
GRADSCOPE_DETAIL_COPY_MAX_BYTES of them: the detail tier runs on the training thread, as before (on
CUDA, in the step's one device→host copy).
"""
from __future__ import annotations

import math
import os
import threading
import time

import torch

from . import omp, stats

AUTO_DETAIL_START = 10
# Fraction of the step interval the detail tier may cost on average in automatic mode: its time on
# the training thread plus the background job's CPU time (a free CPU for that job is not assumed:
# other work, or torch's own threads, may be using them all).
DETAIL_BUDGET = 0.015
# A step with at most this many gradient entries computes its detail tier on the training thread:
# that costs less than handing it over (the background thread needs the GIL for its Python parts,
# which a Python-bound training loop seldom leaves it), and its frames come out with the step.
DETAIL_INLINE_MAX_ELEMENTS = 1 << 16
# Copies of the gradients kept for the background detail job (CPU gradients only).
DETAIL_COPY_MAX_BYTES = int(os.environ.get("GRADSCOPE_DETAIL_COPY_MAX_BYTES", str(256 * 1024 * 1024)) or 0)
# How long END waits for a detail job still running (then its remaining frames are not sent), and
# how long an anomaly's detail waits for the job before it, so the frames of a tensor stay in order.
DETAIL_DRAIN_S = 10.0
# A norm jump gets a detail tier only this many of its optimizer's steps after the previous one, or more.
JUMP_DETAIL_GAP = 10
# Where a scheduled detail step runs (_scheduled_detail_way).
BACKGROUND = "background"
HERE = "here"


class _DetailWorker:
    """The background thread of the detail tier: runs one job at a time. submit() refuses a job
    while one is running (the caller skips that step's detail): nothing queues up."""

    def __init__(self, run):
        self._run = run
        self._cv = threading.Condition()
        self._job = None  # the job submitted or running; None when idle
        self.last_cpu_ms = 0.0  # CPU time of the last job, on this thread
        self.jobs_done = 0
        self._stopped = False
        self.thread = threading.Thread(target=self._loop, name="gradscope-detail", daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self._job is not None

    def submit(self, job) -> bool:
        with self._cv:
            if self._job is not None:
                return False
            self._job = job
            self._cv.notify_all()
            return True

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._job is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def stop(self) -> None:
        """Ends the thread once idle (a notebook run ends while the kernel goes on)."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def _loop(self) -> None:
        # Its torch ops on this thread alone: an OpenMP team of its own would slow the training
        # thread's every parallel op for the rest of the run (omp.py).
        omp.single_threaded_here()
        while True:
            with self._cv:
                while self._job is None:
                    if self._stopped:
                        return
                    self._cv.wait()
                job = self._job
            t0 = time.thread_time()
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - the runner reports its own errors
                pass
            finally:
                with self._cv:
                    self.last_cpu_ms = (time.thread_time() - t0) * 1e3
                    self.jobs_done += 1
                    self._job = None
                    self._cv.notify_all()


class DetailTier:
    """Probe mixin: the detail tier's schedule (per optimizer, fixed or automatic interval) and its
    background job."""

    def _init_detail(self, detail_every) -> None:
        self.auto_detail = not detail_every or detail_every <= 0
        self.detail_every = AUTO_DETAIL_START if self.auto_detail else int(detail_every)
        # The automatic interval (see _tune).
        self._last_step_end = None
        self._interval_ms = 0.0
        self._plain_cost_ms = 0.0
        # Off the training thread (see the module's docstring).
        self._worker = None
        self._worker_failed = False
        self._detail_lock = threading.Lock()  # the background thread sends under it; END closes it
        self._detail_closed = False
        self._detail_bytes = 0  # bytes held in _Known.detail_buf
        self._detail_skipped = 0  # scheduled detail steps skipped: the previous job was still running
        self._detail_job_step = None
        self._detail_fg_ms = 0.0  # the detail tier's cost on the training thread, last detail step
        self._detail_jobs_seen = 0
        self._detail_bg_ms = 0.0  # the background job's CPU time, smoothed (automatic interval)

    def _detail_due(self, rec) -> bool:
        """Whether this step of `rec` gets the detail tier: counted in its own steps, so that several
        optimizers taking turns all get it."""
        if self.auto_detail:
            return rec.last_detail is None or rec.steps - rec.last_detail >= self.detail_every
        return rec.steps % self.detail_every == 0

    def _jump_detail_due(self, rec) -> bool:
        """Whether a norm jump (a tensor's norm over 10× its previous step's) gets this step's detail
        tier: only JUMP_DETAIL_GAP steps or more after the optimizer's previous detail tier, and in the
        automatic schedule its interval when that is longer. In a model of a hundred small tensors some
        norm jumps 10× on a third of the steps (measured: 100 tensors of 32×32, batch 8), which made
        the detail tier run that often; an explosion still gets its first jump's detail, then the
        schedule's. (rec.steps counts this step already.)"""
        gap = max(JUMP_DETAIL_GAP, self.detail_every if self.auto_detail else 0)
        return rec.last_detail is None or rec.steps - 1 - rec.last_detail >= gap

    def _can_defer(self, items) -> bool:
        """Whether this step's detail tier can go to the background thread (started here, once).
        items: (param, the gradient to describe)."""
        if self._worker_failed:
            return False
        need = 0
        total = 0
        for p, g in items:
            g = stats.local(g) if g is not None else None
            if g is None or g.device.type != "cpu" or g.layout != torch.strided:
                return False
            total += g.numel()
            k = self._known.get(id(p))
            buf = k.detail_buf if k is not None else None
            if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
                need += g.numel() * g.element_size()
        if total <= DETAIL_INLINE_MAX_ELEMENTS or self._detail_bytes + need > DETAIL_COPY_MAX_BYTES:
            return False
        if self._worker is None:
            try:
                self._worker = _DetailWorker(self._run_detail_job)
            except Exception as e:  # noqa: BLE001 - e.g. no threads: the training thread does it
                self._worker_failed = True
                self.warn("starting the detail thread", e)
                return False
        return True

    def _scheduled_detail_way(self, items):
        """How a scheduled detail step runs: BACKGROUND (from copies, where _can_defer says so), HERE
        (on the training thread), or None while the previous job still runs: put off to the next step
        (automatic interval) or skipped and counted (fixed interval). items: (param, the gradient to
        describe). The general path and the lean one both ask here."""
        if not self._can_defer(items):
            return HERE
        if self._worker.busy:
            if not self.auto_detail:
                self._detail_skipped += 1
            return None
        return BACKGROUND

    def _detail_copy(self, k, g):
        """Copies a CPU gradient into the tensor's own buffer (kept: no allocation per step)."""
        buf = k.detail_buf
        if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
            if buf is not None:
                self._detail_bytes -= buf.numel() * buf.element_size()
            buf = torch.empty(g.shape, dtype=g.dtype)
            self._detail_bytes += buf.numel() * buf.element_size()
            k.detail_buf = buf
        buf.copy_(g.detach())
        return buf

    def _submit_detail(self, step, items) -> None:
        self._detail_job_step = step
        if not self._worker.submit((step, items)):
            self._detail_skipped += 1  # not reached: callers check that the worker is idle

    def _run_detail_job(self, job) -> None:
        """On the detail thread: the DETAIL frames of one step, from the copies."""
        step, items = job
        with torch.no_grad():
            # Small tensors all at once, then the large ones one by one (each sent when done).
            small = [it for it in items if it[1].numel() < stats.BATCH_TENSOR_MAX]
            large = [it for it in items if it[1].numel() >= stats.BATCH_TENSOR_MAX]
            for part in ([small] if small else []) + [[it] for it in large]:
                if self._detail_closed:
                    return
                try:
                    values = stats.detail_stats_many([(buf, shape) for _k, buf, shape in part])
                except Exception as e:  # noqa: BLE001
                    with self._detail_lock:
                        if not self._detail_closed:
                            self.warn("computing the detail tier", e)
                    continue
                with self._detail_lock:
                    if self._detail_closed:
                        return
                    for (k, _buf, _shape), (v, tr, tc) in zip(part, values):
                        self._send_detail(step, k, v, 0, tr, tc)

    def _anomaly_detail(self, step, items) -> None:
        """The detail tier of a step with an anomaly, after the job in flight (a tensor's DETAIL frames
        stay in step order), in the background when it can be. items: (param, its gradient)."""
        live = [(p, g) for p, g in items if g is not None]
        if self._can_defer(live) and self._worker.wait_idle(DETAIL_DRAIN_S):
            self._detail_in_background(step, live)
        else:
            self._detail_here(step, live)  # off the CPU: a second device→host copy, on anomalies only

    def _detail_in_background(self, step, items) -> None:
        """Hands a step's detail tier to the idle background thread, from copies of its gradients
        (_can_defer said it can). items: (param, its gradient)."""
        known = self._known
        with torch.no_grad():
            self._submit_detail(step, [(known[id(p)], self._detail_copy(known[id(p)], stats.local(g)),
                                        tuple(stats.local(p).shape)) for p, g in items])

    def _detail_here(self, step, items) -> None:
        """A step's detail tier on this thread (small CPU tensors together), its DETAIL frames sent.
        items: (param, its gradient)."""
        values = stats.detail_stats_many([(g, tuple(stats.local(p).shape)) for p, g in items])
        known = self._known
        for (p, _g), (v, tr, tc) in zip(items, values):
            self._send_detail(step, known[id(p)], v, 0, tr, tc)

    def _drop_detail_buf(self, k) -> None:
        """Frees a tensor's detail buffer (a job in flight keeps its own reference)."""
        if k.detail_buf is not None:
            self._detail_bytes -= k.detail_buf.numel() * k.detail_buf.element_size()
            k.detail_buf = None

    def _close_detail(self) -> None:
        """Before END: waits (bounded) for the job in flight; later frames of it are not sent."""
        done = True
        if self._worker is not None:
            done = self._worker.wait_idle(DETAIL_DRAIN_S)
        with self._detail_lock:
            self._detail_closed = True
        if not done:
            self.send({"type": "event", "kind": "warning", "message":
                       "the detail tier of step %s was still being computed when the run ended: "
                       "its remaining DETAIL frames were not sent" % self._detail_job_step})
        if self._detail_skipped:
            self.send({"type": "event", "kind": "info", "count": self._detail_skipped, "message":
                       "detail tier skipped on %d step(s): the histograms and thumbnails of an earlier step "
                       "were still being computed in the background (GRADSCOPE_DETAIL_EVERY=%d)" % (
                           self._detail_skipped, self.detail_every)})

    def _send_detail(self, step, k, v, off, tr, tc) -> None:
        hist = [int(x) for x in v[off + 3: off + 3 + stats.HIST_BINS]]
        thumb = v[off + 3 + stats.HIST_BINS: off + 3 + stats.HIST_BINS + tr * tc]
        self.send({"type": "detail", "step": step, "tensorId": k.id, "mean": v[off], "std": v[off + 1],
                   "zeroFrac": v[off + 2], "histLo": stats.HIST_LO, "histHi": stats.HIST_HI, "hist": hist,
                   "thumbRows": tr, "thumbCols": tc, "thumb": thumb})

    def _tune(self, ctx, t_after, end, detail) -> None:
        """Automatic detail interval: keep the detail tier's cost (on the training thread, plus the
        background job's CPU time) under DETAIL_BUDGET of the step interval on average."""
        # (the sampled tier's own time is left out: it has its own schedule, see sampled.py)
        cost_ms = ctx["probe_ms"] + (end - t_after) * 1e3 - ctx.get("sampled_ms", 0.0)
        if self._last_step_end is not None:
            dt = (end - self._last_step_end) * 1e3
            if not self._interval_ms:
                self._interval_ms = dt
            elif not (detail or ctx.get("sampled")):
                # The interval of the script's own steps: a step that ran the detail or the sampled
                # tier is longer by what the budget is for, and a pause (validation, a checkpoint)
                # moves the estimate by at most 20 % a step. Counting them made the detail tier of a
                # 100-tensor model of 4 ms steps run every ~60 steps, 2.7 % of the step, not 2 %.
                self._interval_ms = 0.8 * self._interval_ms + 0.2 * min(dt, 2.0 * self._interval_ms)
        self._last_step_end = end
        if not detail:
            self._plain_cost_ms = cost_ms if not self._plain_cost_ms else 0.8 * self._plain_cost_ms + 0.2 * cost_ms
        elif self.steps > 1:
            self._detail_fg_ms = max(0.0, cost_ms - self._plain_cost_ms)
        w = self._worker
        fresh_job = w is not None and w.jobs_done != self._detail_jobs_seen
        if not (self.auto_detail and self._interval_ms > 0 and self.steps > 1 and (detail or fresh_job)):
            return
        if w is not None and w.jobs_done:
            if w.jobs_done > 1 and w.jobs_done != self._detail_jobs_seen:
                # (not the first job: it also compiled the kernels, as step 0 is not counted)
                bg = w.last_cpu_ms
                self._detail_bg_ms = bg if not self._detail_bg_ms else 0.5 * self._detail_bg_ms + 0.5 * bg
            self._detail_jobs_seen = w.jobs_done
        every = math.ceil((self._detail_fg_ms + self._detail_bg_ms) / (DETAIL_BUDGET * self._interval_ms))
        self.detail_every = int(min(1000, max(AUTO_DETAIL_START, every)))
