// A Sluice records connector in JavaScript: generated greetings, no I/O.
//
// It exports `sluice:connector/records@0.3.0` (world `records-connector`) and
// shows the whole contract: `spec`, `check`, `discover`, `read` with
// resumable state, a `Reader` resource whose `next` returns newline-delimited
// JSON, an error returned as the WIT `error` variant, and a call to the
// host's `log`.
//
// How componentize-js maps the WIT:
// - the exported interface `records` is an exported object `records` with
//   one method per function and the resource as a class (`records.Reader`);
// - names turn camelCase (`config-schema` -> `configSchema`), enums are their
//   case names as strings (`'full-refresh'`), `option<T>` is a value or
//   `undefined`/`null`;
// - a function returning `result<T, error>` returns T, and reports the error
//   by throwing the variant itself, `{ tag: 'config', val: 'what to fix' }`.
//   Throwing an `Error` (a bug, or JSON.parse failing) traps the component
//   instead, so every expected failure throws a variant.

import { log } from 'sluice:connector/host@0.1.0';

const STREAM = 'greetings';

const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  properties: {
    rows: { type: 'integer', minimum: 0, description: 'Records to generate.' },
    batch_rows: { type: 'integer', minimum: 1, default: 1000, description: 'Records per batch.' },
    greeting: { type: 'string', default: 'hello', description: 'Message prefix.' },
  },
  required: ['rows'],
  additionalProperties: false,
};

// One record: the host makes these properties the stream's columns, in order.
const RECORD_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    message: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
    score: { type: 'number' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'message', 'at', 'score', 'tags'],
};

// Record `id` happens `id` seconds after this instant.
const BASE_TIME_MS = Date.UTC(2026, 0, 1);

/** The WIT `error.config` case, ready to throw. */
function configError(message) {
  return { tag: 'config', val: message };
}

/** The config with defaults filled in; throws `error.config`. */
function parseConfig(text) {
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw configError(`config is not JSON: ${e.message}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw configError('config must be a JSON object');
  }
  const { rows, batch_rows = 1000, greeting = 'hello' } = config;
  if (!Number.isSafeInteger(rows) || rows < 0) {
    throw configError('give "rows", the number of records: an integer >= 0');
  }
  if (!Number.isSafeInteger(batch_rows) || batch_rows < 1) {
    throw configError('"batch_rows" must be an integer >= 1');
  }
  if (typeof greeting !== 'string') {
    throw configError('"greeting" must be a string');
  }
  return { rows, batchRows: batch_rows, greeting };
}

/** The first id to read: 0, or the `next` of a checkpoint. */
function parseState(state) {
  if (state == null) return 0;
  let next;
  try {
    next = JSON.parse(state).next;
  } catch {
    // not JSON: reported below
  }
  if (!Number.isSafeInteger(next) || next < 0) {
    throw configError(`state must be a checkpoint like {"next": 42}, not ${JSON.stringify(state)}`);
  }
  return next;
}

/** Record `id`: every field derives from it, so reads are repeatable. */
function record(greeting, id) {
  return {
    id,
    message: `${greeting} #${id}`,
    // RFC 3339 in UTC, whole seconds: 2026-01-01T00:00:03Z
    at: new Date(BASE_TIME_MS + id * 1000).toISOString().replace('.000Z', 'Z'),
    score: id * 0.5,
    tags: [id % 2 === 0 ? 'even' : 'odd'],
  };
}

/** An open read of `greetings`: ids from `start` up to `rows`, in batches. */
class Reader {
  constructor(config, start) {
    this.config = config;
    this.nextId = start;
  }

  next() {
    const { rows, batchRows, greeting } = this.config;
    if (this.nextId >= rows) return undefined; // exhausted
    const end = Math.min(this.nextId + batchRows, rows);
    const lines = [];
    for (let id = this.nextId; id < end; id++) {
      lines.push(JSON.stringify(record(greeting, id)));
    }
    this.nextId = end;
    return {
      records: lines.join('\n'),
      // Handing this back to `read` resumes with the following record.
      checkpoint: JSON.stringify({ next: end }),
    };
  }
}

export const records = {
  Reader,

  spec() {
    return {
      name: 'js-hello',
      version: '0.1.0',
      description: 'Generates numbered greetings: an example connector in JavaScript',
      configSchema: JSON.stringify(CONFIG_SCHEMA),
      modes: ['full-refresh', 'incremental'],
    };
  },

  check(config) {
    parseConfig(config);
  },

  discover(config) {
    parseConfig(config);
    return [
      {
        name: STREAM,
        jsonSchema: JSON.stringify(RECORD_SCHEMA),
        cursorFields: ['id'],
        primaryKey: ['id'],
      },
    ];
  },

  read(config, streamName, state) {
    const parsed = parseConfig(config);
    if (streamName !== STREAM) {
      throw configError(`no stream "${streamName}": this connector has only "${STREAM}"`);
    }
    const start = parseState(state);
    log('info', `${STREAM}: reading ids ${start} to ${parsed.rows} (exclusive)`);
    return new Reader(parsed, start);
  },
};
