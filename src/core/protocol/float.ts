// One float codec and one number formatter, shared by the host, the webview (and so the HTML
// report), the CLI and the hover. Pure: no DOM, no Node, no vscode.
//
// JSON has no NaN or ±Infinity (JSON.stringify writes null for them), and "no gradient at this step"
// is its own state, not NaN (architecture: "Absent is a value"). Every float that crosses to the
// webview or into a finding's evidence is therefore encoded here, one way: a finite number as it is,
// the non-finite ones and absent as the names below, and null only where there is no value at all
// (a heatmap cell no tensor reached).

/** The non-finite values and absent, as they travel (and as formatNumber writes them). */
export const WIRE_NAN = 'NaN';
export const WIRE_POS_INF = 'Inf';
export const WIRE_NEG_INF = '-Inf';
export const WIRE_ABSENT = 'absent';
export const WIRE_NAMES = [WIRE_NAN, WIRE_POS_INF, WIRE_NEG_INF, WIRE_ABSENT] as const;
export type WireName = (typeof WIRE_NAMES)[number];

/** A non-finite value as it travels. */
export type WireNonFinite = typeof WIRE_NAN | typeof WIRE_POS_INF | typeof WIRE_NEG_INF;
/** A value of a curve, a heatmap cell, a thumbnail pixel or an evidence entry on the wire. */
export type WireFloat = number | WireName | null;

/** A number for JSON: finite as it is, NaN and ±Inf by name. */
export function encodeFloat(v: number): number | WireNonFinite {
  if (Number.isFinite(v)) return v;
  return v !== v ? WIRE_NAN : v > 0 ? WIRE_POS_INF : WIRE_NEG_INF;
}

/**
 * The number a wire value stands for: NaN and ±Inf restored; `absent` and null (no value) as the
 * caller's sentinels, since each chart marks them its own way (a gap, an empty cell).
 */
export function decodeFloat(w: WireFloat, absent: number, missing: number): number {
  if (typeof w === 'number') return w;
  switch (w) {
    case null:
      return missing;
    case WIRE_NAN:
      return NaN;
    case WIRE_POS_INF:
      return Infinity;
    case WIRE_NEG_INF:
      return -Infinity;
    case WIRE_ABSENT:
      return absent;
    default: {
      const never: never = w;
      return never;
    }
  }
}

/** Whether `x` is a wire value (finite number, one of the names, or null): the webview's validation. */
export function isWireFloat(x: unknown): x is WireFloat {
  return x === null || (typeof x === 'number' ? Number.isFinite(x) : (WIRE_NAMES as readonly unknown[]).includes(x));
}

/** Whether `x` names a non-finite value (an evidence string that is a number, written by encodeFloat). */
export function isWireNonFinite(x: unknown): x is WireNonFinite {
  return x === WIRE_NAN || x === WIRE_POS_INF || x === WIRE_NEG_INF;
}

/**
 * A number as a person reads it, the same in the CLI, the hover, the panel and the report:
 * `–` for none; NaN, Inf, -Inf by the names the wire uses; integers below 1e5 whole (steps, counts);
 * an exponent with 2 decimals outside [1e-3, 1e5); else 3 significant digits without trailing zeros.
 * (Chosen from the four formats this replaces: the hover's, which reads steps and counts exactly and
 * drops the CLI's padding zeros "1.00"; the panel's 4 digits were one more than the evidence holds
 * meaningfully; the wire's names for NaN/±Inf so a value reads as it travels.)
 */
export function formatNumber(v: number | string | null | undefined): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'string') return v; // an evidence string (a layer list, a direction), or a wire name
  if (v !== v) return WIRE_NAN;
  if (!Number.isFinite(v)) return v > 0 ? WIRE_POS_INF : WIRE_NEG_INF;
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e5) return String(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}
