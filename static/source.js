// Opens one EventSource and routes its named events, with JSON data, to handlers.
// The EventSource is created by an injectable connect(url) factory so that tests can
// pass a fake. Reconnecting is the job of connection.js.

// Lifecycle events of EventSource itself. A server event with one of these names
// would be indistinguishable from them, so handlers may not use them.
const LIFECYCLE_EVENTS = ['open', 'error'];

/** EventSource.readyState values, copied so that fakes need not define them. */
export const READY_STATE = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSED: 2 });

/** Opens a real EventSource. This is the default connect(url) factory. */
export function connectEventSource(url) {
  return new EventSource(url);
}

function dispatchJson(eventName, event, handler, onInvalidData) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (error) {
    onInvalidData(eventName, error, event.data);
    return;
  }
  handler(data, event);
}

function reportInvalidData(eventName, error, rawData) {
  console.warn(`Ignored "${eventName}" event: its data is not valid JSON.`, error, rawData);
}

/**
 * Opens the stream at `url` and routes each named server event to its handler.
 *
 * `handlers` maps an event name to a function that receives the parsed JSON data and
 * the MessageEvent. Events without a handler are ignored, so the server can add new
 * ones without breaking older pages. An event whose data is not JSON goes to
 * `onInvalidData(eventName, error, rawData)` instead. `onOpen()` runs on every
 * (re)connection, and `onConnectionError(readyState)` runs when the connection fails:
 * readyState is CONNECTING while EventSource retries and CLOSED once it gave up.
 *
 * Returns an object with close() and a readyState getter.
 */
export function openStream(
  url,
  {
    handlers = {},
    onOpen = () => {},
    onConnectionError = () => {},
    onInvalidData = reportInvalidData,
    connect = connectEventSource,
  } = {},
) {
  for (const name of Object.keys(handlers)) {
    if (LIFECYCLE_EVENTS.includes(name)) {
      throw new Error(
        `Invalid handler name "${name}": use onOpen or onConnectionError for EventSource lifecycle events.`,
      );
    }
  }

  const source = connect(url);
  source.addEventListener('open', () => onOpen());
  source.addEventListener('error', () => onConnectionError(source.readyState));
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => dispatchJson(name, event, handler, onInvalidData));
  }

  return {
    close: () => source.close(),
    get readyState() {
      return source.readyState;
    },
  };
}
