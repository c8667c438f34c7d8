// Running totals of the rows in view, updated one row at a time as rows join or leave,
// so the summary never walks the whole view. Pure: no DOM.

// Spend is summed in whole nano-dollars, so adding and later removing a row gives back
// exactly the previous total (floating point sums would drift).
const NANO_DOLLARS = 1e9;

// Durations are counted in buckets: exact milliseconds below 100 ms, then buckets 2%
// wide, so p50 and p95 are exact below 100 ms and within 1% above.
const EXACT_BUCKET_LIMIT = 100;
const BUCKET_GROWTH = 1.02;
const LOG_GROWTH = Math.log(BUCKET_GROWTH);

const RATE_LIMIT_CODE = '429';
const CONNECTION_ERROR_CLASS = /connection|timeout/i;

/** Returns true for a failure that LiteLLM recorded as rate limited (HTTP 429). */
export function isRateLimited(entry) {
  return (
    entry.status === 'failure' &&
    (entry.error_code === RATE_LIMIT_CODE || entry.error_class === 'RateLimitError')
  );
}

/** Returns true for a failure to reach the model provider (connection refused, time-out). */
export function isConnectionError(entry) {
  return entry.status === 'failure' && CONNECTION_ERROR_CLASS.test(entry.error_class ?? '');
}

/** Returns the histogram bucket of a duration in milliseconds. */
export function durationBucket(milliseconds) {
  const value = Math.max(0, milliseconds);
  if (value < EXACT_BUCKET_LIMIT) {
    return Math.floor(value);
  }
  return EXACT_BUCKET_LIMIT + Math.floor(Math.log(value / EXACT_BUCKET_LIMIT) / LOG_GROWTH);
}

/** Returns the duration a bucket stands for: its value below 100 ms, else its geometric middle. */
export function bucketDuration(bucket) {
  if (bucket < EXACT_BUCKET_LIMIT) {
    return bucket;
  }
  return EXACT_BUCKET_LIMIT * BUCKET_GROWTH ** (bucket - EXACT_BUCKET_LIMIT + 0.5);
}

function spendUnits(entry) {
  return typeof entry.spend === 'number' && Number.isFinite(entry.spend)
    ? Math.round(entry.spend * NANO_DOLLARS)
    : 0;
}

function tokensOf(entry) {
  return Number.isFinite(entry.total_tokens) ? entry.total_tokens : 0;
}

function hasDuration(entry) {
  return typeof entry.duration_ms === 'number' && Number.isFinite(entry.duration_ms);
}

function emptyTotals() {
  return { requests: 0, failures: 0, rateLimited: 0, connectionErrors: 0, spendUnits: 0, tokens: 0 };
}

function applyTotals(totals, entry, sign) {
  totals.requests += sign;
  totals.spendUnits += sign * spendUnits(entry);
  totals.tokens += sign * tokensOf(entry);
  if (entry.status === 'failure') {
    totals.failures += sign;
  }
  if (isRateLimited(entry)) {
    totals.rateLimited += sign;
  }
  if (isConnectionError(entry)) {
    totals.connectionErrors += sign;
  }
}

/**
 * Returns the nearest-rank percentile (0-100) of a bucket histogram holding `count`
 * values, or null when it is empty.
 */
export function histogramPercentile(histogram, count, percent) {
  if (count === 0) {
    return null;
  }
  const rank = Math.max(1, Math.ceil((percent / 100) * count));
  const buckets = [...histogram.keys()].sort((a, b) => a - b);
  let seen = 0;
  for (const bucket of buckets) {
    seen += histogram.get(bucket);
    if (seen >= rank) {
      return bucketDuration(bucket);
    }
  }
  return bucketDuration(buckets[buckets.length - 1]);
}

/** Returns the name a row is grouped under in the per-model table. */
export function modelKey(entry) {
  return entry.model_group || entry.model || '(no model)';
}

// Most requests first. Ties go by code point order, which does not depend on the locale.
function compareModelLines(a, b) {
  if (a.requests !== b.requests) {
    return b.requests - a.requests;
  }
  if (a.model === b.model) {
    return 0;
  }
  return a.model < b.model ? -1 : 1;
}

/** Creates empty running totals; add() and remove() take lite entries. */
export function createStats() {
  const totals = emptyTotals();
  const models = new Map();

  function modelStats(name) {
    let stats = models.get(name);
    if (stats === undefined) {
      stats = { ...emptyTotals(), durations: new Map(), timed: 0 };
      models.set(name, stats);
    }
    return stats;
  }

  function update(entry, sign) {
    applyTotals(totals, entry, sign);
    const name = modelKey(entry);
    const stats = modelStats(name);
    applyTotals(stats, entry, sign);
    if (hasDuration(entry)) {
      const bucket = durationBucket(entry.duration_ms);
      const count = (stats.durations.get(bucket) ?? 0) + sign;
      if (count === 0) {
        stats.durations.delete(bucket);
      } else {
        stats.durations.set(bucket, count);
      }
      stats.timed += sign;
    }
    if (stats.requests === 0) {
      models.delete(name);
    }
  }

  function describe(values) {
    return {
      requests: values.requests,
      failures: values.failures,
      rateLimited: values.rateLimited,
      connectionErrors: values.connectionErrors,
      spend: values.spendUnits / NANO_DOLLARS,
      tokens: values.tokens,
      errorRate: values.requests === 0 ? null : values.failures / values.requests,
    };
  }

  /**
   * Returns the totals and one line per model, most requests first. Its cost grows
   * with the number of models and duration buckets, not with the rows counted.
   */
  function snapshot() {
    const perModel = [];
    for (const [name, stats] of models) {
      perModel.push({
        model: name,
        ...describe(stats),
        p50: histogramPercentile(stats.durations, stats.timed, 50),
        p95: histogramPercentile(stats.durations, stats.timed, 95),
      });
    }
    perModel.sort(compareModelLines);
    return { ...describe(totals), models: perModel };
  }

  return {
    add: (entry) => update(entry, 1),
    remove: (entry) => update(entry, -1),
    snapshot,
    get count() {
      return totals.requests;
    },
  };
}
