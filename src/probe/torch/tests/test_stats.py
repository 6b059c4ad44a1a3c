"""Statistics against values computed by hand (plain Python over the same numbers)."""
import math
import unittest

import torch

from gradscope_probe import stats


def naive_hist(values):
    h = [0] * 32
    for v in values:
        a = abs(v)
        if math.isfinite(a) and a > 0:
            k = math.floor(math.log10(a))
            h[min(31, max(0, k + 20))] += 1
    return h


class GradStatsTest(unittest.TestCase):
    def test_hand_computed_gradient(self):
        g = torch.tensor([[3.0, -4.0], [0.0, 12.0]])
        norm, max_abs, nan, inf = stats.grad_stats(g).tolist()
        self.assertAlmostEqual(norm, 13.0, places=5)  # sqrt(9 + 16 + 144)
        self.assertEqual(max_abs, 12.0)
        self.assertEqual((nan, inf), (0.0, 0.0))

    def test_nan_and_inf_are_counted_and_excluded(self):
        g = torch.tensor([3.0, float("nan"), -4.0, float("inf"), float("-inf"), float("nan"), 0.0])
        norm, max_abs, nan, inf = stats.grad_stats(g).tolist()
        self.assertAlmostEqual(norm, 5.0, places=5)
        self.assertEqual(max_abs, 4.0)
        self.assertEqual((nan, inf), (2.0, 2.0))

    def test_all_non_finite(self):
        g = torch.tensor([float("nan"), float("inf")])
        self.assertEqual(stats.grad_stats(g).tolist(), [0.0, 0.0, 1.0, 1.0])

    def test_overflow_safe(self):
        g = torch.tensor([3e30, 4e30], dtype=torch.float32)  # squares overflow float32
        norm, max_abs, _, _ = stats.grad_stats(g).tolist()
        self.assertAlmostEqual(norm / 5e30, 1.0, places=5)
        self.assertAlmostEqual(max_abs / 4e30, 1.0, places=5)
        g = torch.tensor([3e30, float("nan"), 4e30], dtype=torch.float32)
        self.assertAlmostEqual(stats.grad_stats(g).tolist()[0] / 5e30, 1.0, places=5)

    def test_tiny_values_do_not_underflow(self):
        g = torch.tensor([3e-30, 4e-30], dtype=torch.float32)  # squares underflow float32
        self.assertAlmostEqual(stats.grad_stats(g).tolist()[0] / 5e-30, 1.0, places=5)

    def test_half_and_empty(self):
        self.assertAlmostEqual(stats.grad_stats(torch.tensor([3.0, 4.0], dtype=torch.float16)).tolist()[0], 5.0, places=3)
        self.assertEqual(stats.grad_stats(torch.zeros(0)).tolist(), [0.0, 0.0, 0.0, 0.0])

    def test_detail_of_an_empty_gradient_counts_nothing(self):
        # An FSDP2 rank's empty block of a [1] bias: the histogram counts nothing (integers, sendable),
        # mean, std and the zero fraction are undefined.
        for v, tr, tc in [stats.detail_stats(torch.zeros(0), [0]), *stats.detail_stats_many([(torch.zeros(0, 8), [0, 8])])]:
            v = v.tolist() if hasattr(v, "tolist") else v
            self.assertTrue(all(math.isnan(x) for x in v[:3]))
            self.assertEqual(v[3:3 + stats.HIST_BINS], [0.0] * stats.HIST_BINS)
            self.assertEqual((tr, tc), (0, 0))

    def test_param_norm_propagates_nan(self):
        self.assertAlmostEqual(float(stats.norm(torch.tensor([6.0, 8.0]))), 10.0, places=5)
        self.assertTrue(math.isnan(float(stats.norm(torch.tensor([1.0, float("nan")])))))
        self.assertAlmostEqual(float(stats.norm(torch.tensor([3e30, 4e30]))) / 5e30, 1.0, places=5)

    def test_random_against_float64(self):
        torch.manual_seed(0)
        g = torch.randn(1000, 37)
        norm, max_abs, _, _ = stats.grad_stats(g).tolist()
        self.assertAlmostEqual(norm / float(g.double().norm()), 1.0, places=5)
        self.assertEqual(max_abs, float(g.abs().max()))


class ManyAtOnceTest(unittest.TestCase):
    """grad_stats_many / norms_many (the multi-tensor fast paths) equal the one-tensor functions on
    every kind of gradient, the hard ones included, and say which rows a device must check later."""

    CASES = [
        torch.tensor([[3.0, -4.0], [0.0, 12.0]]),
        torch.tensor([3.0, float("nan"), -4.0, float("inf"), float("-inf"), 0.0]),
        torch.tensor([float("nan"), float("inf")]),
        torch.tensor([3e30, 4e30]),  # squares overflow float32
        torch.tensor([3e-30, 4e-30]),  # squares underflow
        torch.tensor([3e-21, 4e-21]),  # squares subnormal: precision lost
        torch.tensor([3.0, 4.0], dtype=torch.float16),
        torch.zeros(0),
        torch.zeros(5),
        torch.randn(300, 7, dtype=torch.float64),
        torch.randn(64, 33).t(),  # not contiguous
    ]

    def test_equal_to_one_by_one(self):
        rows, unchecked = stats.grad_stats_many(self.CASES)
        self.assertEqual(unchecked, [])
        for g, row in zip(self.CASES, rows):
            want = stats.grad_stats(g).tolist()
            self.assertIsInstance(row, list)  # CPU rows are read at once: plain floats
            got = row
            for a, b in zip(got, want):
                if math.isnan(b):
                    self.assertTrue(math.isnan(a))
                else:
                    self.assertAlmostEqual(a, b, delta=1e-6 * max(1.0, abs(b)), msg=str(g))

    def test_values_later_are_the_values_now(self):
        """plain_values_later (the lean step off the CPU: read after the step) gives plain_values'
        norms, and the extra value (the loss) after them; None where the multi-tensor call refuses."""
        gs = [torch.randn(3, 4), torch.randn(7), torch.randn(2, 2) * 1e3]
        loss = torch.tensor(0.25)
        later = stats.plain_values_later(gs, loss)
        norms, extra = later.read()
        want, _ = stats.plain_values(gs, False)
        self.assertEqual(len(norms), 3)
        for a, b in zip(norms, want):
            self.assertAlmostEqual(a, b, delta=1e-6 * b)
        self.assertEqual(extra, 0.25)
        norms2, none = stats.plain_values_later(gs).read()
        self.assertEqual(norms2, norms)
        self.assertIsNone(none)
        self.assertIsNone(stats.plain_values_later([torch.randn(2), None]))

    def test_other_devices_defer_the_check(self):
        """Off the CPU (taken here on the CPU) the fast rows come back unchecked with zero counts, and
        needs_exact picks exactly the gradients whose fast row may be wrong."""
        saved = stats._cheap_to_read
        stats._cheap_to_read = lambda device: False
        try:
            rows, unchecked = stats.grad_stats_many(self.CASES, defer=True)
            rows_now, unchecked_now = stats.grad_stats_many(self.CASES, defer=False)
        finally:
            stats._cheap_to_read = saved
        self.assertEqual(unchecked_now, [])
        fast = [i for i, g in enumerate(self.CASES) if g.dtype in (torch.float32, torch.float64) and g.numel()]
        self.assertEqual(sorted(unchecked), fast)
        flagged = [i for i in unchecked if stats.needs_exact(rows[i].tolist()[0])]
        # NaN/Inf, overflow, underflow, subnormal squares, all zeros
        self.assertEqual(flagged, [1, 2, 3, 4, 5, 8])
        for i in unchecked:
            if i not in flagged:
                self.assertEqual(rows[i].tolist(), stats.grad_stats(self.CASES[i]).tolist())
        for g, row in zip(self.CASES, rows_now):  # not deferred: the branch-free path, exact at once
            self.assertEqual(row.tolist()[2:], stats.grad_stats(g).tolist()[2:])

    def test_without_max(self):
        """with_max=False: maxAbs is NaN ("not measured") on the fast rows only; every other value, the
        counts included, is grad_stats'; a gradient that takes the exact path keeps its maxAbs."""
        rows, _ = stats.grad_stats_many(self.CASES, with_max=False)
        for i, (g, row) in enumerate(zip(self.CASES, rows)):
            want = stats.grad_stats(g).tolist()
            got = row
            exact = g.dtype not in (torch.float32, torch.float64) or g.numel() == 0 or i in (1, 2, 3, 4, 5, 8)
            if exact:
                self.assertEqual(got[1], want[1], msg=str(g))
            else:
                self.assertTrue(math.isnan(got[1]), msg=str(g))
            self.assertEqual(got[2:], want[2:])
            self.assertAlmostEqual(got[0], want[0], delta=1e-6 * max(1.0, abs(want[0])))

    def test_norms_many(self):
        ts = [torch.tensor([6.0, 8.0]), torch.tensor([1.0, float("nan")]), torch.tensor([3e30, 4e30]), torch.tensor([3e-30, 4e-30]),
              torch.zeros(3), torch.randn(10, 10, dtype=torch.float64)]
        got, unchecked = stats.norms_many(ts)
        self.assertEqual(unchecked, [])
        for t, v in zip(ts, got):
            self.assertIsInstance(v, float)
            want = float(stats.norm(t))
            if math.isnan(want):
                self.assertTrue(math.isnan(float(v)))
            else:
                self.assertAlmostEqual(float(v), want, delta=1e-6 * max(1.0, want))

    def test_copy_and_sub_many(self):
        a = [torch.randn(4, 3), torch.randn(5)]
        b = [torch.empty(4, 3), torch.empty(5)]
        stats.copy_many(b, a)
        self.assertTrue(all(torch.equal(x, y) for x, y in zip(a, b)))
        c = [x + 1 for x in a]
        stats.sub_many(b, c)
        self.assertTrue(all(torch.allclose(x, -torch.ones_like(x)) for x in b))


class StackedPlanTest(unittest.TestCase):
    """plain_rows with a NormPlan (small tensors of one shape and dtype stacked, one reduction per
    group) gives grad_stats' rows in the caller's order, the hard cases on the exact path, and builds
    the plan again when a parameter's shape changes."""

    @staticmethod
    def grads():
        g = torch.Generator().manual_seed(3)
        return [
            torch.randn(32, 32, generator=g),  # 0: weights of one shape (stacked)
            torch.randn(32, generator=g),  # 1: biases (stacked)
            torch.randn(32, 32, generator=g),  # 2
            torch.randn(32, generator=g) * float("nan"),  # 3: NaN: the exact path
            torch.randn(90, 90, generator=g),  # 4: over STACK_MAX_NUMEL: the multi-tensor norm
            torch.randn(32, 32, dtype=torch.float64, generator=g),  # 5: float64: its own group key
            torch.randn(7, generator=g),  # 6: alone in its shape: the multi-tensor norm
            torch.full((32, 32), 1e30),  # 7: squares overflow float32: the exact path
            torch.zeros(32),  # 8: a zero gradient: the exact path (its maxAbs too)
            torch.randn(64, 32, generator=g)[:, :32:2].t(),  # 9: not contiguous, 16x64 ...
            torch.randn(16, 64, generator=g),  # 10: ... and a contiguous one of its shape
            torch.randn(32, 32, dtype=torch.float64, generator=g),  # 11
        ]

    def assertRowsEqual(self, rows, gs, with_max):
        for i, (g, row) in enumerate(zip(gs, rows)):
            want = stats.grad_stats(g).tolist()
            self.assertIsInstance(row, list)
            self.assertEqual(row[2:], want[2:], msg=i)
            for k in (0, 1):
                if k == 1 and not with_max and i not in (3, 7, 8):
                    self.assertTrue(math.isnan(row[1]), msg=i)  # not measured on this step
                elif math.isnan(want[k]):
                    self.assertTrue(math.isnan(row[k]), msg=i)
                else:
                    self.assertAlmostEqual(row[k], want[k], delta=1e-6 * max(1.0, want[k]), msg=i)

    def test_groups(self):
        plan = stats.NormPlan(self.grads())
        self.assertEqual(sorted(map(sorted, plan.stacked)), [[0, 2, 7], [1, 3, 8], [5, 11], [9, 10]])
        self.assertEqual(plan.rest, [4, 6])
        self.assertEqual(sorted(plan.order), list(range(12)))

    def test_rows_equal_grad_stats(self):
        gs = self.grads()
        plan = stats.NormPlan(gs)
        for with_max in (True, False):
            self.assertRowsEqual(stats.plain_rows(gs, with_max, plan), gs, with_max)
        # Bit for bit the multi-tensor norm's rows, but for the strided view (9), which the stack
        # copies flat as grad_stats does: another order of summation.
        stacked, each = stats.plain_rows(gs, True, plan), stats.plain_rows(gs, True, None)
        self.assertEqual(stacked[:9] + stacked[10:], each[:9] + each[10:])

    def test_a_new_shape_builds_the_plan_again(self):
        gs = self.grads()
        plan = stats.NormPlan(gs)
        gs[2] = torch.randn(8, 8)  # a parameter given new data of another shape
        rows = stats.plain_rows(gs, True, plan)
        self.assertRowsEqual(rows, gs, True)
        self.assertEqual(sorted(map(sorted, plan.stacked)), [[0, 7], [1, 3, 8], [5, 11], [9, 10]])
        self.assertEqual(plan.rest, [2, 4, 6])

    def test_a_sparse_gradient_is_refused(self):
        gs = self.grads()[:3] + [torch.eye(3).to_sparse()]
        self.assertIsNone(stats.plain_rows(gs, True, stats.NormPlan(self.grads()[:3] + [torch.eye(3)])))

    def test_grad_mode_is_off_while_measuring_and_restored_after(self):
        # plain_values switches grad mode itself (not torch.no_grad(): see stats._set_grad_enabled):
        # gradients that require grad (backward(create_graph=True)) record nothing, and the caller's
        # mode comes back after a result, a refusal and with grad mode already off.
        w = torch.randn(5, 4, requires_grad=True)
        b = torch.randn(4, requires_grad=True)
        ((torch.randn(3, 5) @ w + b) ** 3).sum().backward(create_graph=True)
        gs = [w.grad, b.grad]
        self.assertTrue(all(g.requires_grad for g in gs))
        for plan in (None, stats.NormPlan([w, b, w.detach().clone()])):
            args = gs + [w.grad * 2] if plan is not None else gs
            norms, maxs = stats.plain_values(args, True, plan)
            self.assertTrue(torch.is_grad_enabled())
            self.assertTrue(all(type(v) is float for v in norms + maxs))
            for v, g in zip(norms, args):
                self.assertAlmostEqual(v, g.detach().norm().item(), delta=1e-5 * v)
        self.assertIsNone(stats.plain_values(gs + [torch.eye(3).to_sparse()], False))
        self.assertTrue(torch.is_grad_enabled(), "restored after a refusal")
        seen = []
        real = stats._foreach_norm
        stats._foreach_norm = lambda xs: (seen.append(torch.is_grad_enabled()), real(xs))[1]
        try:
            stats.plain_values(gs, False)
            with torch.no_grad():
                stats.plain_values(gs, False)
                self.assertFalse(torch.is_grad_enabled(), "left off")
        finally:
            stats._foreach_norm = real
        self.assertEqual(seen, [False, False])
        self.assertTrue(torch.is_grad_enabled())


class LongNormTest(unittest.TestCase):
    """Long CPU gradients are measured by rows (stats.LONG_MIN_NUMEL: the norms of rows of LONG_ROW
    elements, then theirs in float64): the same rows as grad_stats', in the caller's order, whichever
    way each tensor goes, and within 1e-7 of the float64 norm on a long sum where torch's float32
    norm kernel is not."""

    @staticmethod
    def grads():
        g = torch.Generator().manual_seed(7)
        big = stats.LONG_MIN_NUMEL
        return [
            torch.randn(32, generator=g),  # 0: small: the multi-tensor norm
            torch.randn(big // 64 + 3, 64, generator=g),  # 1: long, contiguous, a partial last row
            torch.randn(800, 700, generator=g)[:, ::2].t(),  # 2: long, a slice with a step: copied
            torch.randn(big + 5, dtype=torch.float64, generator=g),  # 3: float64
            torch.randn(big, generator=g) * float("nan"),  # 4: NaN: the exact path
            torch.full((big,), 1e30),  # 5: squares overflow float32: the exact path
            torch.zeros(big),  # 6: zero: the exact path
            torch.randn(7, generator=g),  # 7
            torch.randn(8, 64, 23, 23, generator=g).to(memory_format=torch.channels_last),  # 8: in memory order
            torch.randn(600, 500, generator=g).t(),  # 9: a transpose: in memory order
            torch.randn(big - 1, generator=g),  # 10: just short: the multi-tensor norm
        ]

    def test_plan(self):
        plan = stats.NormPlan(self.grads())
        self.assertEqual(plan.long, [1, 2, 3, 4, 5, 6, 8, 9])
        self.assertEqual(plan.rest, [0, 7, 10])
        self.assertTrue(plan.fused())
        self.assertFalse(stats.NormPlan([torch.zeros(40), torch.zeros(5000)]).fused())
        gs = self.grads()
        for i in (8, 9):  # a view, not a copy
            self.assertEqual(stats._flat(gs[i]).data_ptr(), gs[i].data_ptr())
        self.assertNotEqual(stats._flat(gs[2]).data_ptr(), gs[2].data_ptr())

    def test_rows_equal_grad_stats_in_order(self):
        gs = self.grads()
        for plan in (stats.NormPlan(gs), None):
            rows = stats.plain_rows(gs, True, plan)
            for i, (g, row) in enumerate(zip(gs, rows)):
                want = stats.grad_stats(g).tolist()
                self.assertEqual(row[1:], want[1:], msg=i)  # maxAbs, NaN and Inf counts: exact
                if i in (4, 5, 6):
                    self.assertEqual(row[0], want[0], msg=i)  # (the exact path's own row)
                else:
                    self.assertAlmostEqual(row[0], g.double().norm().item(), delta=2e-6 * want[0], msg=i)
        # The other fast paths take the same measure: grad_stats_many (a clip's, backward's marks)
        # and norms_many (parameters, updates) give what the plan gives, bit for bit (but for the
        # dense ones not contiguous, which they copy flat in logical order, another order of summation).
        finite = [g for i, g in enumerate(gs) if i not in (4, 5, 6, 8, 9)]
        by_plan = stats.plain_values(finite, False, stats.NormPlan(finite))[0]
        self.assertEqual([r[0] for r in stats.grad_stats_many(finite, with_max=False)[0]], by_plan)
        self.assertEqual(stats.norms_many(finite)[0], by_plan)

    def test_within_1e_7_of_float64_where_the_norm_kernel_is_not(self):
        # 4M positive squares: torch's norm kernel, one float32 sum, drifts (rel. 3.4e-5 on torch 2.13
        # and 1.13; a BLAS dot product 8e-7); by rows the error stays near float32's rounding.
        x = torch.rand(4_000_000, generator=torch.Generator().manual_seed(5)) * 1e-2 + 1e-3
        exact = x.double().norm().item()
        self.assertGreater(abs(x.norm().item() - exact) / exact, 1e-6)  # (the case is a hard one)
        got = stats.plain_values([x], False, stats.NormPlan([x]))[0][0]
        self.assertLess(abs(got - exact) / exact, 1e-7)


class DetailStatsTest(unittest.TestCase):
    def test_moments_zero_fraction_and_histogram(self):
        vals = [0.5, -0.25, 0.0, 2e-3, float("nan"), 7.0, -1e-25, 1e15, 0.0]
        g = torch.tensor(vals, dtype=torch.float64)
        v, tr, tc = stats.detail_stats(g, [9])
        v = v.tolist()
        finite = [x for x in vals if math.isfinite(x)]
        mean = sum(finite) / len(finite)
        std = math.sqrt(sum((x - mean) ** 2 for x in finite) / len(finite))
        self.assertAlmostEqual(v[0] / mean, 1.0, places=9)
        self.assertAlmostEqual(v[1] / std, 1.0, places=6)
        self.assertAlmostEqual(v[2], 2 / 9)
        self.assertEqual([int(x) for x in v[3:35]], naive_hist(vals))
        self.assertEqual((tr, tc), (0, 0))
        self.assertEqual(len(v), 35)

    def test_histogram_at_powers_of_ten(self):
        vals = [1.0, 10.0, 100.0, 0.1, 0.01, 1e-3]
        v, _, _ = stats.detail_stats(torch.tensor(vals), [6])
        self.assertEqual([int(x) for x in v.tolist()[3:35]], naive_hist(torch.tensor(vals).tolist()))

    def test_thumbnail_even_cells(self):
        g = torch.arange(64 * 64, dtype=torch.float32).reshape(64, 64) - 2000
        v, tr, tc = stats.detail_stats(g, [64, 64])
        self.assertEqual((tr, tc), (32, 32))
        thumb = v.tolist()[35:]
        a = g.abs()
        want = a.reshape(32, 2, 32, 2).mean(dim=(1, 3)).reshape(-1).tolist()
        for x, y in zip(thumb, want):
            self.assertAlmostEqual(x, y, places=3)

    def test_thumbnail_uneven_grid_matches_a_naive_mean(self):
        torch.manual_seed(2)
        g = torch.randn(70, 45) * 3
        g[3, 4] = float("nan")
        v, tr, tc = stats.detail_stats(g, [70, 45])
        self.assertEqual((tr, tc), (32, 32))
        thumb = v.tolist()[35:]
        rows, cols = g.shape
        for i in range(tr):
            for j in range(tc):
                cell = [abs(float(g[r, c])) for r in range(rows) for c in range(cols)
                        if r * tr // rows == i and c * tc // cols == j and math.isfinite(float(g[r, c]))]
                want = sum(cell) / len(cell) if cell else float("nan")
                got = thumb[i * tc + j]
                if math.isnan(want):
                    self.assertTrue(math.isnan(got))
                else:
                    self.assertAlmostEqual(got, want, places=4)
        # And with every entry finite (the counts come from the cell sizes then).
        v2, _, _ = stats.detail_stats(torch.nan_to_num(g), [70, 45])
        cell00 = [abs(float(torch.nan_to_num(g)[r, c])) for r in range(rows) for c in range(cols) if r * tr // rows == 0 and c * tc // cols == 0]
        self.assertAlmostEqual(v2.tolist()[35], sum(cell00) / len(cell00), places=4)

    def test_thumbnail_uneven_cells_and_conv_view(self):
        torch.manual_seed(1)
        g = torch.randn(5, 3, 3, 3)  # conv weight: view [5, 27] → thumbnail 5 × 27
        g[0, 0, 0, 0] = float("nan")
        v, tr, tc = stats.detail_stats(g, list(g.shape))
        self.assertEqual((tr, tc), (5, 27))
        thumb = v.tolist()[35:]
        a = g.reshape(5, 27).abs()
        self.assertAlmostEqual(thumb[1], float(a[0, 1]), places=5)
        self.assertTrue(math.isnan(thumb[0]))  # a cell with no finite entry
        g = torch.randn(70, 45)
        v, tr, tc = stats.detail_stats(g, [70, 45])
        self.assertEqual((tr, tc), (32, 32))
        thumb = v.tolist()[35:]
        # naive: row r in cell floor(r·32/70), column c in cell floor(c·32/45)
        sums = [[0.0] * 32 for _ in range(32)]
        cnt = [[0] * 32 for _ in range(32)]
        for r in range(70):
            for c in range(45):
                sums[r * 32 // 70][c * 32 // 45] += abs(float(g[r, c]))
                cnt[r * 32 // 70][c * 32 // 45] += 1
        for i in range(32):
            for j in range(32):
                self.assertAlmostEqual(thumb[i * 32 + j], sums[i][j] / cnt[i][j], places=5)


def exact_bin(v):
    """floor(log10 |v|) − HIST_LO clamped to [0, 31], with exact rational comparisons."""
    from fractions import Fraction
    a = Fraction(abs(v))
    k = math.floor(math.log10(abs(v)))
    while a < Fraction(10) ** k:
        k -= 1
    while a >= Fraction(10) ** (k + 1):
        k += 1
    return min(31, max(0, k + 20))


def general(g, shape):
    """The general (masking, bucketize) path on the same values: the reference of the fast path."""
    x = stats._work(g)
    (R, C), (tr, tc) = stats.thumb_shape(list(shape))
    if R * C != x.numel():
        tr = tc = 0
    return stats._detail_general(x, R, C, tr, tc), tr, tc


class DetailFastPathTest(unittest.TestCase):
    """The all-finite CPU path (decade bins from the bits, chunks, index_add_ cells) against the
    general path and against exact arithmetic."""

    def edge_values(self, dtype):
        vals = [0.0, -0.0]
        inf = torch.tensor(float("inf"), dtype=dtype)
        zero = torch.tensor(0.0, dtype=dtype)
        for e in stats._decade_edges(dtype, "cpu"):
            vals += [float(torch.nextafter(e, zero)), float(e), float(torch.nextafter(e, inf))]
        for k in range(-150, 128, 7):  # powers of two (octave boundaries), both sides
            p = torch.tensor(2.0 ** k, dtype=dtype)
            vals += [float(p), float(torch.nextafter(p, zero))]
        tiny = torch.finfo(dtype).tiny
        vals += [tiny, tiny / 4, float(torch.nextafter(zero, inf)), torch.finfo(dtype).max, 1e-30, 3e15, 0.123]
        vals = [v for v in vals if v == 0 or abs(v) <= torch.finfo(dtype).max]
        return vals + [-v for v in vals]

    def test_bins_equal_exact_decades_at_every_edge(self):
        for dtype in (torch.float32, torch.float64):
            vals = self.edge_values(dtype)
            g = torch.tensor(vals, dtype=dtype)
            v, _, _ = stats.detail_stats(g, [len(vals)])
            want = [0] * 32
            for x in g.tolist():
                if x != 0:
                    want[exact_bin(x)] += 1
            self.assertEqual([int(x) for x in v.tolist()[3:35]], want, dtype)
            ref, _, _ = general(g, [len(vals)])
            self.assertEqual(v.tolist()[:35], ref.tolist()[:35], dtype)
            self.assertEqual(v.tolist()[2], sum(1 for x in vals if x == 0) / len(vals))

    def test_many_chunks_match_the_general_path(self):
        torch.manual_seed(3)
        for shape in ([400, 200], [3, 40000], [100003], [64, 3, 5, 5], [2, stats.CHUNK + 5]):
            for dtype in (torch.float32, torch.float64, torch.float16):
                g = torch.randn(*shape).to(dtype) * torch.logspace(-12, 3, shape[-1]).to(dtype)
                g.view(-1)[::7] = 0.0
                v, tr, tc = stats.detail_stats(g, shape)
                ref, rtr, rtc = general(g, shape)
                self.assertEqual((tr, tc), (rtr, rtc))
                v, ref = v.tolist(), ref.tolist()
                self.assertEqual(len(v), len(ref))
                self.assertAlmostEqual(v[0], ref[0], delta=1e-12 * max(1.0, abs(ref[0])) + 1e-9 * ref[1])
                self.assertAlmostEqual(v[1] / ref[1], 1.0, places=9)
                self.assertEqual(v[2:35], ref[2:35], (shape, dtype))  # zero fraction and histogram: exact
                for x, y in zip(v[35:], ref[35:]):
                    self.assertAlmostEqual(x, y, delta=1e-5 * abs(y))

    def test_non_finite_in_a_later_chunk_takes_the_general_path(self):
        g = torch.randn(5, stats.CHUNK)
        g[4, -1] = float("inf")
        g[3, 7] = float("nan")
        v, tr, tc = stats.detail_stats(g, list(g.shape))
        ref, _, _ = general(g, list(g.shape))
        self.assertEqual(v.tolist()[2:35], ref.tolist()[2:35])
        self.assertEqual(sum(v.tolist()[3:35]), g.numel() - 2 - int((g == 0).sum()))
        x = g[torch.isfinite(g)].double()
        self.assertAlmostEqual(v.tolist()[0], float(x.mean()), places=9)

    def test_many_at_once_equal_one_by_one(self):
        torch.manual_seed(4)
        shapes = [[16, 1, 3, 3], [16], [32, 16, 3, 3], [32], [10, 800], [10], [300, 200], [7, 3], [1], [40, 40]]
        items = [(torch.randn(*s) * 10.0 ** (i - 5), s) for i, s in enumerate(shapes)]
        items[3][0][5] = 0.0
        items.append((torch.randn(50, 9, dtype=torch.float64), [50, 9]))  # another dtype: its own batch
        items.append((torch.randn(6, 6).half(), [6, 6]))
        for nan_at in (None, 1, 6):
            batch = [(g.clone(), s) for g, s in items]
            if nan_at is not None:
                batch[nan_at][0].view(-1)[2] = float("nan")
            many = stats.detail_stats_many(batch)
            self.assertEqual(len(many), len(batch))
            for (g, s), (v, tr, tc) in zip(batch, many):
                ref, rtr, rtc = stats.detail_stats(g, s)
                ref = ref.tolist()
                self.assertEqual((tr, tc), (rtr, rtc))
                self.assertEqual(len(v), len(ref))
                self.assertEqual(v[2:35], ref[2:35], s)  # zero fraction and histogram: exact
                self.assertAlmostEqual(v[0], ref[0], delta=1e-12 * abs(ref[0]) + 1e-15 * ref[1])
                self.assertAlmostEqual(v[1], ref[1], delta=1e-9 * ref[1])
                for x, y in zip(v[35:], ref[35:]):
                    self.assertAlmostEqual(x, y, delta=1e-6 * abs(y))
        # More small tensors than one batch holds: split over several calls.
        old = stats.BATCH_MAX
        try:
            stats.BATCH_MAX = 100
            many = stats.detail_stats_many(items)
            for (g, s), (v, tr, tc) in zip(items, many):
                self.assertEqual(v[3:35], stats.detail_stats(g, s)[0].tolist()[3:35])
        finally:
            stats.BATCH_MAX = old

    def test_does_not_touch_its_input(self):
        for dtype in (torch.float32, torch.float64):
            for shape in ([300, 200], [20, 7], [5]):
                g = torch.randn(*shape, dtype=dtype)
                g.view(-1)[0] = 0.0
                before = g.clone()
                stats.detail_stats(g, shape)
                stats.detail_stats_many([(g, shape), (g[:1], shape[:1])])
                self.assertTrue(torch.equal(g, before), (dtype, shape))


if __name__ == "__main__":
    unittest.main()
