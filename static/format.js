// Pure formatters for the viewer. They never touch the DOM, so they can run under
// Node as well as in the browser.

// Numbers use one fixed locale so that "$" and the "," thousands separator always
// match. Times still use the browser's time zone.
const NUMBER_LOCALE = 'en-US';

// Costs below one dollar keep this many significant digits, e.g. $0.00041.
const COST_SIGNIFICANT_DIGITS = 2;
const MAX_COST_DECIMALS = 8;
const MIN_VISIBLE_COST = 10 ** -MAX_COST_DECIMALS;

const countFormat = new Intl.NumberFormat(NUMBER_LOCALE, { maximumFractionDigits: 0 });
const dollarFormat = new Intl.NumberFormat(NUMBER_LOCALE, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const secondsFormat = new Intl.NumberFormat(NUMBER_LOCALE, {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});
const percentFormat = new Intl.NumberFormat(NUMBER_LOCALE, {
  style: 'percent',
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

function isFiniteNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * Formats a cost in US dollars: "$0" for zero, cents for one dollar or more
 * ("$1,234.50"), and two significant digits below one dollar ("$0.50", "$0.00041").
 * Nonzero costs below $0.00000001 become "<$0.00000001".
 * Returns "" for null, undefined and non-numbers.
 */
export function formatCost(usd) {
  if (!isFiniteNumber(usd)) {
    return '';
  }
  if (usd === 0) {
    return '$0';
  }

  const sign = usd < 0 ? '-' : '';
  // Rounding first makes 0.0999 come out as "$0.10" and 0.99999 as "$1.00", not "$0.100".
  const rounded = Number(Math.abs(usd).toPrecision(COST_SIGNIFICANT_DIGITS));

  if (rounded >= 1) {
    return `${sign}$${dollarFormat.format(Math.abs(usd))}`;
  }
  if (rounded < MIN_VISIBLE_COST) {
    return `${sign}<$${MIN_VISIBLE_COST.toFixed(MAX_COST_DECIMALS)}`;
  }

  const leadingZeros = -Math.floor(Math.log10(rounded)) - 1;
  const decimals = Math.min(MAX_COST_DECIMALS, Math.max(2, leadingZeros + COST_SIGNIFICANT_DIGITS));
  return `${sign}$${rounded.toFixed(decimals)}`;
}

/**
 * Formats a count such as a token total with thousands separators ("12,345").
 * Returns "" for null, undefined and non-numbers.
 */
export function formatCount(value) {
  return isFiniteNumber(value) ? countFormat.format(value) : '';
}

/**
 * Formats a duration in milliseconds: whole milliseconds below one second ("412 ms"),
 * otherwise seconds with one decimal ("1.2 s").
 * Returns "" for null, undefined and non-numbers.
 */
export function formatDuration(milliseconds) {
  if (!isFiniteNumber(milliseconds)) {
    return '';
  }
  const wholeMilliseconds = Math.round(milliseconds);
  if (Math.abs(wholeMilliseconds) < 1000) {
    return `${wholeMilliseconds} ms`;
  }
  return `${secondsFormat.format(milliseconds / 1000)} s`;
}

function padTwo(value) {
  return String(value).padStart(2, '0');
}

/**
 * Formats an ISO 8601 timestamp as "YYYY-MM-DD HH:MM:SS" in the browser's time zone.
 * Returns the input unchanged when it does not parse, and "" for null or undefined.
 */
export function formatLocalTime(isoTime) {
  if (isoTime === null || isoTime === undefined) {
    return '';
  }
  const date = new Date(isoTime);
  if (Number.isNaN(date.getTime())) {
    return String(isoTime);
  }
  const day = `${date.getFullYear()}-${padTwo(date.getMonth() + 1)}-${padTwo(date.getDate())}`;
  const time = `${padTwo(date.getHours())}:${padTwo(date.getMinutes())}:${padTwo(date.getSeconds())}`;
  return `${day} ${time}`;
}

/**
 * Formats an ISO 8601 timestamp in UTC with milliseconds: "2026-12-04 20:15:03.123 UTC".
 * Returns the input unchanged when it does not parse, and "" for null or undefined.
 */
export function formatUtcTime(isoTime) {
  if (isoTime === null || isoTime === undefined) {
    return '';
  }
  const date = new Date(isoTime);
  if (Number.isNaN(date.getTime())) {
    return String(isoTime);
  }
  return `${date.toISOString().replace('T', ' ').replace('Z', '')} UTC`;
}

/**
 * Formats a ratio from 0 to 1 as a percentage with one decimal ("3.2%").
 * Returns "" for null, undefined and non-numbers.
 */
export function formatPercent(ratio) {
  return isFiniteNumber(ratio) ? percentFormat.format(ratio) : '';
}

/** Formats a row count: "1 row", "0 rows", "12,345 rows". */
export function formatRowCount(count) {
  return count === 1 ? '1 row' : `${formatCount(count)} rows`;
}
